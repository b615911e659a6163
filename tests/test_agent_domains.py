"""The QAM study's per-domain hyperparameters: every value reaches its field, and run.py uses them."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from interpolant_rl import agents


ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run", ROOT / "experiments" / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


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


@pytest.mark.parametrize("name", sorted(agents.PROTOCOL))
def test_every_protocol_value_reaches_its_field(name):
    assert name in agents.available_agents()
    for index, domain in enumerate(agents.DOMAINS):
        config = agents.domain_config(name, domain)
        for field, column in agents.PROTOCOL[name].items():
            assert len(column) == len(agents.DOMAINS)
            assert _find(config, field) == [float(column[index])], (name, domain, field)
        critic = _find(config, "critic")[0]
        humanoid = domain == "humanoidmaze-medium"
        assert critic.discount == (0.995 if humanoid else 0.99)
        assert critic.rho == (
            0.0 if humanoid else _find(agents.default_config(name), "critic")[0].rho
        )


def test_cube_double_column_is_the_default_and_unknown_domains_fail():
    for name in agents.available_agents():
        assert agents.domain_config(name, "cube-double") == agents.default_config(name)
        assert agents.domain_config(name, None) == agents.default_config(name)
    with pytest.raises(ValueError, match="unknown domain 'cube-nine'; available: cube-double"):
        agents.domain_config("qam", "cube-nine")
    with pytest.raises(ValueError, match="unknown agent"):
        agents.domain_config("qamm", "scene")


@pytest.mark.parametrize(
    "dataset, domain",
    [
        ("cube-double-play-singletask-task2-v0", "cube-double"),
        ("cube-triple-noisy-v0", "cube-triple"),
        ("scene-play-singletask-task1-v0", "scene"),
        ("puzzle-3x3-play-singletask-v0", "puzzle-3x3"),
        ("puzzle-4x4-play-v0", None),
        ("antmaze-large-navigate-v0", "antmaze-large"),
        ("antmaze-giant-navigate-v0", None),
        ("humanoidmaze-medium-navigate-v0", "humanoidmaze-medium"),
        ("cube-single-play-v0", None),
    ],
)
def test_domain_of_dataset_names(dataset, domain):
    assert agents.domain_of(dataset) == domain


def test_run_uses_the_domain_values_and_explicit_values_win():
    triple = run.RunConfig(env="cube-triple-play-singletask-task2-v0")
    assert run.agent_config(run.resolve(triple)).tau == 3.0
    assert run.agent_config(run.resolve(dataclasses.replace(triple, tau=5.0))).tau == 5.0
    fql = run.agent_config(run.resolve(dataclasses.replace(triple, agent="fql")))
    assert fql.alpha == 30.0
    assert run.resolve(triple).discount == 0.99
    assert run.resolve(dataclasses.replace(triple, discount=0.9)).discount == 0.9


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
