"""The QAM study's per-domain hyperparameters: the paper's Table 4 cell by cell, the reference
script's alternative, the domain-wide settings, and run.py's use of them."""

import dataclasses

import pytest

from experiments import run
from interpolant_rl import agents


INF = float("inf")

# The QAM paper's Table 4 (as transcribed in the project's reference notes), one 10-tuple
# per row in the table's column order; independent of interpolant_rl.agents.PROTOCOL.
COLUMNS = (
    "scene",
    "puzzle-3x3",
    "puzzle-4x4-100M",
    "cube-double",
    "cube-triple",
    "cube-quadruple-100M",
    "antmaze-large",
    "antmaze-giant",
    "humanoidmaze-medium",
    "humanoidmaze-large",
)
# fmt: off
TABLE_4 = {
    "ReBRAC (α, σ)": ((0.03, 0), (0.1, 0), (0.01, 0.2), (0.01, 0), (0.01, 0.2), (0.01, 0.2), (0.01, 0), (0.01, 0), (0.01, 0), (0.01, 0.1)),  # noqa: E501
    "QSM (τ, η)": ((3, 30), (10, 30), (10, 1), (1, 10), (10, 10), (1, 10), (10, 10), (10, 10), (10, 30), (10, 30)),  # noqa: E501
    "DAC η": (1, 1, 1, 3, 0.3, 1, 0.3, 0.3, 1, 0.3),
    "FBRAC α": (100, 0.3, 0.3, 0.1, 0.03, 1, 0.1, 0.1, 30, 10),
    "FQL α": (300, 300, 1, 300, 30, 100, 3, 3, 30, 30),
    "DSRL σ_z": (0.4, 1, 1, 1, 1.4, 1.4, 0.8, 1.2, 0.6, 0.8),
    "FEdit σ_a": (0.2, 0.2, 0.8, 0.2, 0.3, 0.4, 0.2, 0.3, 0.5, 0.1),
    "IFQL τ (expectile)": (0.9, 0.95, 0.9, 0.9, 0.95, 0.95, 0.9, 0.8, 0.7, 0.8),
    "CGQL (ϑ, τ)": ((10, 0.1), (10, 0.1), (10, 0.1), (10, 0.01), (10, 0.1), (10, 0.1), (10, 0.1), (10, 0.1), (10, 0.01), (10, 0.01)),  # noqa: E501
    "CGQL-MSE (ϑ, ϱ, τ)": ((10, 0.1, 0.1), (10, 0.1, 0.1), (10, 0.001, 1), (10, 0.001, 0.01), (10, 0.001, 0.1), (10, 0.1, 0.01), (10, 0.1, 0.1), (10, 0.001, 0.1), (10, 0.1, 0.1), (10, 0.1, 0.1)),  # noqa: E501
    "CGQL-Linex (ϑ, ϱ, τ)": ((10, 0.1, 0.1), (10, 0.001, 0.1), (10, 0.001, 1), (10, 0.001, 0.01), (10, 0.001, 0.1), (10, 0.1, 0.01), (10, 0.001, 0.1), (10, 0.001, 0.1), (10, 0.1, 0.1), (10, 0.1, 0.1)),  # noqa: E501
    "QAM & BAM τ": (1, 3, 30, 1, 10, 1, 10, 3, 3, 3),
    "QAM-EDIT (τ, σ_a)": ((1, 0), (3, 0.1), (3, 0.9), (1, 0), (10, 0.1), (3, 0.5), (1, 0.1), (3, 0.1), (1, 0.1), (1, 0.1)),  # noqa: E501
    "QAM-FQL (τ, α)": ((1, INF), (3, INF), (1, 3), (1, 0), (10, 30), (1, 30), (3, 30), (3, 300), (3, INF), (1, 30)),  # noqa: E501
}
# fmt: on

# How the library reads each row: the agents (and CGQL variant) it configures, and the field of
# each value (None: ϱ, which no configuration field takes). CGQL's columns are read as the
# reference code reads them: first value tau, last value the guidance scale.
READING = {
    "ReBRAC (α, σ)": ([("rebrac", None)], ("alpha", "actor_noise")),
    "QSM (τ, η)": ([("qsm", None)], ("q_scale", "alpha")),
    "DAC η": ([("dac", None)], ("alpha",)),
    "FBRAC α": ([("fbrac", None)], ("alpha",)),
    "FQL α": ([("fql", None)], ("alpha",)),
    "DSRL σ_z": ([("dsrl", None)], ("noise_scale",)),
    "FEdit σ_a": ([("fedit", None)], ("edit_scale",)),
    "IFQL τ (expectile)": ([("ifql", None)], ("expectile",)),
    "CGQL (ϑ, τ)": ([("cgql", "simple")], ("tau", "guidance")),
    "CGQL-MSE (ϑ, ϱ, τ)": ([("cgql", "mse")], ("tau", None, "guidance")),
    "CGQL-Linex (ϑ, ϱ, τ)": ([("cgql", "linex")], ("tau", None, "guidance")),
    "QAM & BAM τ": ([("qam", None), ("bam", None)], ("tau",)),
    "QAM-EDIT (τ, σ_a)": ([("qam_edit", None)], ("tau", "edit_scale")),
    "QAM-FQL (τ, α)": ([("qam_fql", None)], ("tau", "alpha")),
}

# Where the public reference script differs (protocols.md), for its six domains.
REFERENCE_CELLS = {
    ("bam", "tau"): {
        "cube-double": 10,
        "cube-triple": 30,
        "scene": 10,
        "puzzle-3x3": 10,
        "antmaze-large": 30,
        "humanoidmaze-medium": 10,
    },
    ("qam", "tau"): {"cube-triple": 3},
    ("qam_edit", "tau"): {"cube-triple": 3, "puzzle-3x3": 1, "humanoidmaze-medium": 3},
    ("qam_edit", "edit_scale"): {"cube-triple": 0.1, "puzzle-3x3": 0.1, "humanoidmaze-medium": 0.1},
    ("qam_fql", "tau"): {"cube-triple": 10, "scene": 1, "puzzle-3x3": 3, "humanoidmaze-medium": 1},
    ("qam_fql", "alpha"): {
        "cube-triple": 300,
        "scene": 300,
        "puzzle-3x3": 0,
        "humanoidmaze-medium": 30,
    },
    ("fbrac", "alpha"): {"puzzle-3x3": 0.03},
}
# Not in Table 4: the reference script's values on its six domains (defaults elsewhere).
SCRIPT_ONLY = {
    ("fawac", "tau"): {
        "cube-double": 0.8,
        "cube-triple": 0.8,
        "scene": 6.4,
        "puzzle-3x3": 0.8,
        "antmaze-large": 6.4,
        "humanoidmaze-medium": 6.4,
    },
    ("rlpd", "bc_alpha"): {
        "cube-double": 0.1,
        "cube-triple": 0,
        "scene": 0.3,
        "puzzle-3x3": 0.01,
        "antmaze-large": 0,
        "humanoidmaze-medium": 0.03,
    },
}


def _find(config, name):
    """Every value of field `name` in a (nested) configuration."""
    found = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == name:
            found.append(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found += _find(value, name)
    return found


def _config(name, variant, domain, protocol="paper"):
    base = None if variant is None else agents.cgql.CGQLConfig(variant=variant)
    return agents.domain_config(name, domain, protocol, config=base)


def _paper_cells():
    """{(agent, variant, field): {domain: value}} from the transcribed Table 4."""
    cells = {}
    for row, columns in TABLE_4.items():
        targets, fields = READING[row]
        assert len(columns) == len(COLUMNS), row
        for domain, cell in zip(COLUMNS, columns, strict=True):
            cell = cell if isinstance(cell, tuple) else (cell,)
            for field, value in zip(fields, cell, strict=True):
                for name, variant in targets:
                    if field is not None:
                        cells.setdefault((name, variant, field), {})[domain] = value
    return cells


def test_domains_are_the_ten_columns_of_table_4():
    assert agents.DOMAINS == COLUMNS


def test_every_cell_of_table_4_reaches_its_field():
    for (name, variant, field), column in _paper_cells().items():
        for domain, value in column.items():
            config = _config(name, variant, domain)
            assert _find(config, field) == [value], (name, variant, domain, field)
    # the table's rows and the two script-only rows are all PROTOCOL holds
    rows = {name if v in (None, "simple") else f"cgql-{v}" for name, v, _ in _paper_cells()}
    assert set(agents.PROTOCOL) == rows | {"fawac", "rlpd"}
    assert agents.qam_fql.QAMFQLConfig(alpha=INF).alpha == INF


def test_cgql_variants_are_registered_and_read_their_own_rows():
    # the study's tables name CGQL-MSE and CGQL-Linex as methods: so does the registry
    cells = _paper_cells()
    for name, variant in (("cgql_mse", "mse"), ("cgql_linex", "linex")):
        assert agents.default_config(name).variant == variant
        for domain in COLUMNS:
            config = agents.domain_config(name, domain)
            for field in ("tau", "guidance"):
                assert _find(config, field) == [cells[("cgql", variant, field)][domain]]


def test_reference_protocol_replaces_the_scripts_cells():
    paper = _paper_cells()
    for (name, field), column in REFERENCE_CELLS.items():
        for domain in COLUMNS:
            expected = column.get(domain, paper[(name, None, field)][domain])
            config = _config(name, None, domain, "reference")
            assert _find(config, field) == [expected], (name, domain, field)
    # every other agent, and every agent on the four domains the script lacks: the paper's values
    for name in agents.available_agents():
        for domain in COLUMNS:
            touched = any(name == n and domain in c for (n, _), c in REFERENCE_CELLS.items())
            if not touched:
                reference = _elementwise(agents.domain_config(name, domain, "reference"))
                assert reference == agents.domain_config(name, domain), (name, domain)


CLIPPED = ("qam", "qam_fql", "qam_edit", "bam", "qsm", "dac")  # Table 3: "1 for QSM, DAC and QAM*"


def _elementwise(config):
    """`config` with the paper's behaviour where the reference protocol selects the code's:
    element-wise clipping wherever it has a `clip_mode`, ReBRAC acting deterministically."""
    config = agents._registry._replace_everywhere(config, "clip_mode", "elementwise")[0]
    return agents._registry._replace_everywhere(config, "act_with_noise", False)[0]


@pytest.mark.parametrize("domain", [None, "scene", "antmaze-giant"])
def test_reference_protocol_clips_the_global_norm_of_the_clipped_agents(domain):
    for name in agents.available_agents():
        paper = _find(agents.domain_config(name, domain), "clip_mode")
        reference = _find(agents.domain_config(name, domain, "reference"), "clip_mode")
        if name in CLIPPED:  # every optimiser of the agent, its critic's included
            assert len(paper) >= 2 and set(paper) == {"elementwise"}, name
            assert set(reference) == {"global_norm"}, name
        else:  # no clipping in either protocol, so the mode changes nothing
            for protocol in ("paper", "reference"):
                config = agents.domain_config(name, domain, protocol)
                assert set(_find(config, "grad_clip")) == {None}, name


@pytest.mark.parametrize("protocol", ["paper", "reference"])
def test_values_not_in_table_4_are_the_scripts_on_its_domains_only(protocol):
    for (name, field), column in SCRIPT_ONLY.items():
        default = _find(agents.default_config(name), field)
        for domain in COLUMNS:
            expected = [column[domain]] if domain in column else default
            assert _find(agents.domain_config(name, domain, protocol), field) == expected


@pytest.mark.parametrize(
    "domain, chunk, discount, rho, sparse",
    [
        ("scene", 5, 0.99, None, True),
        ("puzzle-3x3", 5, 0.99, None, True),
        ("puzzle-4x4-100M", 5, 0.99, None, True),
        ("cube-double", 5, 0.99, None, False),
        ("cube-triple", 5, 0.99, None, False),
        ("cube-quadruple-100M", 5, 0.99, None, False),
        ("antmaze-large", 1, 0.99, None, False),
        ("antmaze-giant", 1, 0.995, None, False),
        ("humanoidmaze-medium", 1, 0.995, 0.0, False),
        ("humanoidmaze-large", 1, 0.995, 0.0, False),
    ],
)
def test_domain_wide_settings_reach_every_agent(domain, chunk, discount, rho, sparse):
    settings = agents.domain_settings(domain)
    assert (settings.chunk, settings.discount, settings.rho, settings.sparse) == (
        chunk,
        discount,
        rho,
        sparse,
    )
    for name in agents.available_agents():
        config = agents.domain_config(name, domain)
        default_rho = _find(agents.default_config(name), "rho")
        assert _find(config, "horizon") == [chunk], name
        assert _find(config, "discount") == [discount], name
        # an agent without a learned critic (bc) has no rho for the domain to set
        expected_rho = default_rho if rho is None or not default_rho else [rho]
        assert _find(config, "rho") == expected_rho, name


def test_defaults_and_errors():
    for name in agents.available_agents():
        assert agents.domain_config(name, None) == agents.default_config(name)
        # the defaults are Table 4's cube-double column (with h = 5 there); the script agrees
        # but for BAM (tau: 1 in Table 4, 10 in the script) and its global-norm clipping
        expected = agents.override(agents.default_config(name), horizon=5)
        assert agents.domain_config(name, "cube-double") == expected, name
        reference = _elementwise(agents.domain_config(name, "cube-double", "reference"))
        assert (reference == expected) == (name != "bam"), name
    with pytest.raises(ValueError, match="unknown domain 'cube-nine'; available: scene, puzzle"):
        agents.domain_config("qam", "cube-nine")
    with pytest.raises(ValueError, match="unknown domain 'cube-nine'"):
        agents.domain_settings("cube-nine")
    with pytest.raises(ValueError, match="unknown agent"):
        agents.domain_config("qamm", "scene")
    with pytest.raises(
        ValueError, match=r"^unknown protocol 'table'; available: paper, reference$"
    ):
        agents.domain_config("qam", "scene", "table")


@pytest.mark.parametrize(
    "dataset, domain",
    [
        ("scene-play-singletask-task2-v0", "scene"),
        ("scene-play-v0", "scene"),
        ("puzzle-3x3-play-singletask-task4-v0", "puzzle-3x3"),
        ("puzzle-4x4-play-singletask-task1-v0", "puzzle-4x4-100M"),
        ("puzzle-4x4-play-100m-v0", "puzzle-4x4-100M"),
        ("cube-double-play-singletask-task2-v0", "cube-double"),
        ("cube-double-noisy-v0", "cube-double"),
        ("cube-double-v0", "cube-double"),
        ("cube-triple-play-singletask-task1-v0", "cube-triple"),
        ("cube-quadruple-play-singletask-task3-v0", "cube-quadruple-100M"),
        ("cube-quadruple-play-100m-v0", "cube-quadruple-100M"),
        ("antmaze-large-navigate-v0", "antmaze-large"),
        ("antmaze-large-stitch-singletask-task1-v0", "antmaze-large"),
        ("antmaze-giant-navigate-v0", "antmaze-giant"),
        ("humanoidmaze-medium-navigate-singletask-task1-v0", "humanoidmaze-medium"),
        ("humanoidmaze-large-navigate-v0", "humanoidmaze-large"),
        ("humanoidmaze-large", "humanoidmaze-large"),
        ("cube-quadruple-100M", "cube-quadruple-100M"),
        ("cube-single-play-v0", None),
        ("cube-double-xyz", None),
        ("cube-doubles-play-v0", None),
        ("puzzle-4x5-play-v0", None),
        ("antmaze-medium-navigate-v0", None),
        ("humanoidmaze-giant-navigate-v0", None),
        ("visual-cube-double-play-v0", None),
    ],
)
def test_domain_of_dataset_names(dataset, domain):
    assert agents.domain_of(dataset) == domain


def test_run_uses_the_domain_values_and_explicit_values_win():
    triple = run.RunConfig(env="cube-triple-play-singletask-task2-v0")
    assert run.agent_config(run.resolve(triple)).tau == 10.0
    assert run.agent_config(run.resolve(dataclasses.replace(triple, tau=5.0))).tau == 5.0
    fql = run.agent_config(run.resolve(dataclasses.replace(triple, agent="fql")))
    assert fql.alpha == 30.0
    assert run.resolve(triple).discount == 0.99
    assert run.resolve(dataclasses.replace(triple, discount=0.9)).discount == 0.9
    reference = dataclasses.replace(triple, agent="bam", protocol="reference")
    assert run.agent_config(run.resolve(reference)).tau == 30.0
    assert run.agent_config(run.resolve(dataclasses.replace(reference, protocol="paper"))).tau == 10


@pytest.mark.parametrize(
    "env, chunk, discount, sparse",
    [
        ("antmaze-large-navigate-singletask-task1-v0", 1, 0.99, False),
        ("cube-double-play-singletask-task2-v0", 5, 0.99, False),
        ("puzzle-3x3-play-singletask-task4-v0", 5, 0.99, True),
        ("humanoidmaze-large-navigate-singletask-task1-v0", 1, 0.995, False),
        ("cube-single-play-singletask-task1-v0", 5, 0.99, False),  # outside the ten domains
    ],
)
def test_run_takes_chunk_discount_and_sparse_from_the_domain(env, chunk, discount, sparse):
    config = run.resolve(run.RunConfig(env=env))
    assert (config.chunk, config.discount, config.sparse) == (chunk, discount, sparse)
    assert run.agent_config(config).critic.horizon == chunk
    explicit = run.resolve(run.RunConfig(env=env, chunk=3, discount=0.9, sparse=not sparse))
    assert (explicit.chunk, explicit.discount, explicit.sparse) == (3, 0.9, not sparse)
    assert run.agent_config(explicit).critic.horizon == 3
    humanoid = env.startswith("humanoidmaze")
    assert run.agent_config(config).critic.rho == (0.0 if humanoid else 0.5)


@pytest.mark.parametrize("name", agents.available_agents())
def test_every_agent_builds_from_the_command_line_configuration(name):
    """`run.py --agent NAME` (CPU and paper presets, a study domain): the configuration resolves
    and the agent builds for the chunked OGBench shapes (training itself: test_end_to_end)."""
    import jax

    for preset in ("cpu", "paper"):
        config = run.resolve(
            # narrow networks keep initialisation cheap; everything else is the preset's
            run.RunConfig(
                agent=name, preset=preset, env="cube-double-play-singletask-task2-v0", width=8
            )
        )
        agent_config = run.agent_config(config)
        agent = agents.make_agent(name, 37, 5 * config.chunk, jax.random.key(0), agent_config)
        assert agent.critic is not None
    if name == "rlpd":  # online only, after random actions (the protocol's RLPD)
        assert config.offline_steps == 0 and config.random_action_steps == 5000


# ReBRAC's (actor, critic) BC weights on Gym, transcribed again from its authors' per-dataset
# configuration files (tinkoff-ai/CORL, configs/offline/rebrac/{env}/{dataset}_v2.yaml)
REBRAC_GYM = {
    "halfcheetah-random": (0.001, 0.1),
    "halfcheetah-medium": (0.001, 0.01),
    "halfcheetah-medium-replay": (0.01, 0.001),
    "halfcheetah-medium-expert": (0.01, 0.1),
    "halfcheetah-expert": (0.01, 0.01),
    "halfcheetah-full-replay": (0.001, 0.1),
    "hopper-random": (0.001, 0.01),
    "hopper-medium": (0.01, 0.01),
    "hopper-medium-replay": (0.05, 0.5),
    "hopper-medium-expert": (0.1, 0.01),
    "hopper-expert": (0.1, 0.1),
    "hopper-full-replay": (0.01, 0.01),
    "walker2d-random": (0.01, 0.0),
    "walker2d-medium": (0.05, 0.1),
    "walker2d-medium-replay": (0.05, 0.01),
    "walker2d-medium-expert": (0.01, 0.01),
    "walker2d-expert": (0.01, 0.5),
    "walker2d-full-replay": (0.01, 0.01),
}


def test_rebrac_gym_values_are_its_authors_per_dataset_table():
    assert set(agents.LOCOMOTION_PROTOCOL["rebrac"]) == set(REBRAC_GYM)
    for task, (actor, critic) in REBRAC_GYM.items():
        config = agents.locomotion_config("rebrac", task)
        assert (config.alpha, config.critic_alpha) == (actor, critic), task
        assert (config.actor_noise, config.noise_clip, config.actor_delay) == (0.2, 0.5, 2)
        assert config.learning_rate == config.critic.learning_rate == 1e-3
        assert config.critic.rho == 1.0  # the minimum of two critics


@pytest.mark.parametrize(
    "name, task",
    [
        ("hopper-medium-v2", "hopper-medium"),
        ("hopper-medium-replay-v2", "hopper-medium-replay"),
        ("walker2d-full-replay-v0", "walker2d-full-replay"),
        ("Hopper-v5", None),
        ("ant-medium-v2", None),
        ("cube-double-play-singletask-task2-v0", None),
    ],
)
def test_locomotion_task_of_names(name, task):
    assert agents.locomotion_task(name) == task


def test_run_uses_the_locomotion_values_of_agents_that_have_them():
    hopper = run.RunConfig(env="hopper-medium-v2", agent="rebrac")
    config = run.agent_config(run.resolve(hopper))
    assert (config.alpha, config.critic_alpha, config.actor_noise) == (0.01, 0.01, 0.2)
    assert config.critic.num_critics == 2 and config.critic.horizon == 1  # the task settings
    online = dataclasses.replace(hopper, env="Hopper-v5", offline_steps=0, online_steps=10)
    assert (
        run.agent_config(run.resolve(online)).critic_alpha == 0.0
    )  # no dataset, no per-dataset values
    fql = run.agent_config(run.resolve(dataclasses.replace(hopper, agent="fql")))
    assert fql.alpha == agents.default_config("fql").alpha
    with pytest.raises(ValueError, match="unknown locomotion task 'hopper-bad'; available"):
        agents.locomotion_config("rebrac", "hopper-bad")
