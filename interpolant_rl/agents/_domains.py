"""The QAM study's per-domain hyperparameters (the QAM paper's Table 4, and the public reference
script's differing cells as an alternative), and the settings the protocol applies to a whole
domain."""

import dataclasses
import re
from typing import Any

from ._registry import _replace_everywhere, _spec, override


DOMAINS: tuple[str, ...] = (
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
"""The ten OGBench domains of the QAM paper's Table 4, in the table's column order (which is
the order of [`PROTOCOL`][interpolant_rl.agents.PROTOCOL]'s value tuples). Scene and the
puzzles are trained with sparse rewards there, and the puzzle-4x4 and cube-quadruple
columns on the 100M-transition datasets; see
[`domain_settings`][interpolant_rl.agents.domain_settings]."""

# One value per domain, in DOMAINS order (the columns of the paper's Table 4); field names are
# the agents' configuration fields (set wherever they occur, nested configurations included);
# None keeps the agent's default. Agents not listed (moma_ql, ofql) are not in the study and
# keep their defaults everywhere (the domain-wide settings still apply to them).
PROTOCOL: dict[str, dict[str, tuple[float | None, ...]]] = {
    # ReBRAC (alpha, sigma): BC weight, target-policy noise
    "rebrac": dict(
        alpha=(0.03, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01),
        actor_noise=(0, 0, 0.2, 0, 0.2, 0.2, 0, 0, 0, 0.1),
    ),
    # QSM (tau, eta): the table's tau is the score scale `q_scale`, its eta the BC weight `alpha`
    "qsm": dict(
        q_scale=(3, 10, 10, 1, 10, 1, 10, 10, 10, 10),
        alpha=(30, 30, 1, 10, 10, 10, 10, 10, 30, 30),
    ),
    "dac": dict(alpha=(1, 1, 1, 3, 0.3, 1, 0.3, 0.3, 1, 0.3)),  # eta
    "fbrac": dict(alpha=(100, 0.3, 0.3, 0.1, 0.03, 1, 0.1, 0.1, 30, 10)),
    "fql": dict(alpha=(300, 300, 1, 300, 30, 100, 3, 3, 30, 30)),
    "dsrl": dict(noise_scale=(0.4, 1, 1, 1, 1.4, 1.4, 0.8, 1.2, 0.6, 0.8)),  # sigma_z
    "fedit": dict(edit_scale=(0.2, 0.2, 0.8, 0.2, 0.3, 0.4, 0.2, 0.3, 0.5, 0.1)),  # sigma_a
    "ifql": dict(expectile=(0.9, 0.95, 0.9, 0.9, 0.95, 0.95, 0.9, 0.8, 0.7, 0.8)),
    # CGQL: the table's first value is read as the inverse temperature `tau` (10) and its last
    # as the guidance scale `guidance`, as the reference code reads them (the table's header
    # names them the other way round). One row per variant: "cgql" is variant "simple", and
    # "cgql-mse" / "cgql-linex" apply to CGQLConfig(variant="mse" / "linex"). The middle value
    # of the MSE and Linex rows (varrho) has no configuration field and is not applied:
    #   mse   (0.1, 0.1, 0.001, 0.001, 0.001, 0.1, 0.1, 0.001, 0.1, 0.1)
    #   linex (0.1, 0.001, 0.001, 0.001, 0.001, 0.1, 0.001, 0.001, 0.1, 0.1)
    "cgql": dict(
        tau=(10,) * 10,
        guidance=(0.1, 0.1, 0.1, 0.01, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01),
    ),
    "cgql-mse": dict(
        tau=(10,) * 10,
        guidance=(0.1, 0.1, 1, 0.01, 0.1, 0.01, 0.1, 0.1, 0.1, 0.1),
    ),
    "cgql-linex": dict(
        tau=(10,) * 10,
        guidance=(0.1, 0.1, 1, 0.01, 0.1, 0.01, 0.1, 0.1, 0.1, 0.1),
    ),
    # QAM & BAM tau: one row of the table for both
    "qam": dict(tau=(1, 3, 30, 1, 10, 1, 10, 3, 3, 3)),
    "bam": dict(tau=(1, 3, 30, 1, 10, 1, 10, 3, 3, 3)),
    "qam_edit": dict(
        tau=(1, 3, 3, 1, 10, 3, 1, 3, 1, 1),
        edit_scale=(0, 0.1, 0.9, 0, 0.1, 0.5, 0.1, 0.1, 0.1, 0.1),
    ),
    # QAM-FQL (tau, alpha): alpha = inf (and 0) is QAM without the one-step policy
    "qam_fql": dict(
        tau=(1, 3, 1, 1, 10, 1, 3, 3, 3, 1),
        alpha=(float("inf"), float("inf"), 3, 0, 30, 30, 30, 300, float("inf"), 30),
    ),
    # Not in the paper's Table 4: FAWAC's tau and RLPD's BC weight are the public reference
    # script's values, for the six domains it covers; the other four keep the defaults.
    "fawac": dict(tau=(6.4, 0.8, None, 0.8, 0.8, None, 6.4, None, 6.4, None)),
    "rlpd": dict(bc_alpha=(0.3, 0.01, None, 0.1, 0, None, 0, None, 0.03, None)),
}
"""Per row of the QAM paper's Table 4 (an agent name, or `"cgql-mse"` / `"cgql-linex"` for
CGQL's variants), per configuration field: its value on each of
[`DOMAINS`][interpolant_rl.agents.DOMAINS] (`None`: the agent's default). `fawac` and `rlpd`
are not in the table: their values come from the public reference script, on the six domains it
covers."""

REFERENCE_PROTOCOL: dict[str, dict[str, dict[str, float]]] = {
    "bam": {
        "cube-double": dict(tau=10),
        "cube-triple": dict(tau=30),
        "scene": dict(tau=10),
        "puzzle-3x3": dict(tau=10),
        "antmaze-large": dict(tau=30),
        "humanoidmaze-medium": dict(tau=10),
    },
    "qam": {"cube-triple": dict(tau=3)},
    "qam_edit": {
        "cube-triple": dict(tau=3, edit_scale=0.1),
        "puzzle-3x3": dict(tau=1, edit_scale=0.1),
        "humanoidmaze-medium": dict(tau=3, edit_scale=0.1),
    },
    "qam_fql": {
        "cube-triple": dict(tau=10, alpha=300),
        "scene": dict(tau=1, alpha=300),
        "puzzle-3x3": dict(tau=3, alpha=0),
        "humanoidmaze-medium": dict(tau=1, alpha=30),
    },
    "fbrac": {"puzzle-3x3": dict(alpha=0.03)},
}
"""The cells where the QAM paper's public reference script (which covers cube-double,
cube-triple, scene, puzzle-3x3, antmaze-large and humanoidmaze-medium) differs from Table 4:
row -> domain -> field values. `domain_config(..., protocol="reference")` applies them over
[`PROTOCOL`][interpolant_rl.agents.PROTOCOL] (whose `fawac` and `rlpd` rows are already the
script's)."""

_PROTOCOLS = ("paper", "reference")


@dataclasses.dataclass(frozen=True)
class DomainSettings:
    """What the QAM protocol sets for a whole domain, for every agent.

    **Fields:**

    - `chunk`: the action-chunk length $h$ (the critic's `horizon`): 5 on cube, scene and
      puzzle, 1 on the mazes.
    - `discount`: $\\gamma$ per environment step: 0.995 on antmaze-giant and humanoidmaze,
      0.99 elsewhere.
    - `rho`: the critic target's pessimism $\\rho$: 0 on humanoidmaze, `None` elsewhere (the
      agent's own, 0.5 in the protocol).
    - `sparse`: train on sparse rewards (any non-zero reward becomes $-1$): scene and puzzle.
    """

    chunk: int
    discount: float
    rho: float | None
    sparse: bool


_SETTINGS = {
    "scene": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=True),
    "puzzle-3x3": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=True),
    "puzzle-4x4-100M": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=True),
    "cube-double": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=False),
    "cube-triple": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=False),
    "cube-quadruple-100M": DomainSettings(chunk=5, discount=0.99, rho=None, sparse=False),
    "antmaze-large": DomainSettings(chunk=1, discount=0.99, rho=None, sparse=False),
    "antmaze-giant": DomainSettings(chunk=1, discount=0.995, rho=None, sparse=False),
    "humanoidmaze-medium": DomainSettings(chunk=1, discount=0.995, rho=0.0, sparse=False),
    "humanoidmaze-large": DomainSettings(chunk=1, discount=0.995, rho=0.0, sparse=False),
}

# An OGBench environment ("cube-double-v0") or dataset name ("cube-double-play-v0",
# "puzzle-4x4-play-100m-v0", "antmaze-giant-navigate-singletask-task1-v0") of a study domain.
_NAME = re.compile(
    r"^(?P<env>scene|puzzle-3x3|puzzle-4x4|cube-double|cube-triple|cube-quadruple"
    r"|antmaze-large|antmaze-giant|humanoidmaze-medium|humanoidmaze-large)"
    r"-(?:(?:play|noisy|navigate|stitch|explore)(?:-[\w-]+)?|v\d+)$"
)
# puzzle-4x4 (any of its datasets) -> puzzle-4x4-100M, cube-quadruple -> cube-quadruple-100M
_ENV_DOMAIN = {domain.removesuffix("-100M"): domain for domain in DOMAINS}


def domain_of(dataset_name: str) -> str | None:
    """The study domain of an OGBench dataset or environment name, or `None` for any other:
    `"cube-double-play-singletask-task2-v0"` → `"cube-double"`,
    `"puzzle-4x4-play-100m-v0"` and `"puzzle-4x4-play-v0"` → `"puzzle-4x4-100M"`,
    `"humanoidmaze-large-navigate-v0"` → `"humanoidmaze-large"`, `"cube-single-play-v0"` →
    `None`. A domain's own name maps to itself."""
    if dataset_name in DOMAINS:
        return dataset_name
    match = _NAME.match(dataset_name)
    return None if match is None else _ENV_DOMAIN[match["env"]]


def domain_settings(domain: str) -> DomainSettings:
    """The [`DomainSettings`][interpolant_rl.agents.DomainSettings] (chunk length, discount,
    pessimism, sparse rewards) of one of [`DOMAINS`][interpolant_rl.agents.DOMAINS].

    Raises `ValueError` for an unknown domain (naming the valid ones)."""
    try:
        return _SETTINGS[domain]
    except KeyError:
        raise ValueError(f"unknown domain {domain!r}; available: {', '.join(DOMAINS)}") from None


# Behaviour of the public reference code that `protocol="reference"` selects for one agent (fields
# set wherever they occur), beside the global-norm clipping it selects for every agent.
_REFERENCE_BEHAVIOUR: dict[str, dict[str, Any]] = {"rebrac": dict(act_with_noise=True)}


def _row(name: str, config: Any) -> str:
    """The `PROTOCOL` row of agent `name` with `config`: CGQL has one per variant."""
    variant = getattr(config, "variant", "simple")
    if name.startswith("cgql"):  # cgql, cgql_mse, cgql_linex: the config's variant decides
        return "cgql" if variant == "simple" else f"cgql-{variant}"
    return name


def domain_config(
    name: str,
    domain: str | None,
    protocol: str = "paper",
    *,
    config: Any = None,
) -> Any:
    r"""Agent `name`'s configuration for one domain of the QAM study.

    **Arguments:**

    - `name`: a registered agent.
    - `domain`: one of [`DOMAINS`][interpolant_rl.agents.DOMAINS], or `None` for `config`
      unchanged.
    - `protocol`: `"paper"` (default) applies the QAM paper's Table 4
      ([`PROTOCOL`][interpolant_rl.agents.PROTOCOL]); `"reference"` the same with the public
      reference script's cells where they differ
      ([`REFERENCE_PROTOCOL`][interpolant_rl.agents.REFERENCE_PROTOCOL]) and the reference
      code's global-norm gradient clipping (`clip_mode="global_norm"`, for every domain,
      `domain=None` included) where the paper clips element-wise, and its ReBRAC acting with
      the target-policy noise added (`act_with_noise=True`).
    - `config`: the configuration the values are applied to (default: the agent's
      [`default_config`][interpolant_rl.agents.default_config]). For `cgql` its `variant`
      picks the table's row: CGQL, CGQL-MSE or CGQL-Linex.

    **Returns:** `config` with the domain's values, and the domain-wide settings of
    [`domain_settings`][interpolant_rl.agents.domain_settings] for every agent: the critic's
    `horizon` = the chunk length $h$, the discount $\gamma$, and the pessimism $\rho$ where
    the domain sets one.

    Raises `ValueError` for an unknown agent, domain or protocol (naming the valid ones).

    !!! example
        ```python
        cgql = agents.cgql.CGQLConfig(variant="mse")
        config = agents.domain_config("cgql", "puzzle-4x4-100M", config=cgql)
        assert config.guidance == 1.0 and config.critic.horizon == 5
        ```
    """
    if protocol not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(_PROTOCOLS)}")
    config = _spec(name).default_config() if config is None else config
    if protocol == "reference":
        # the reference code clips the global norm where the paper clips element-wise (Table 3,
        # §4); set on every optimiser (where grad_clip is None nothing is clipped either way)
        config, _ = _replace_everywhere(config, "clip_mode", "global_norm")
        # and ReBRAC's reference acts with its target-policy noise added (the paper's ReBRAC, as
        # TD3, evaluates the deterministic actor)
        config = override(config, **_REFERENCE_BEHAVIOUR.get(name, {}))
    if domain is None:
        return config
    settings = domain_settings(domain)
    row = _row(name, config)
    index = DOMAINS.index(domain)
    values = {
        field: float(column[index])
        for field, column in PROTOCOL.get(row, {}).items()
        if column[index] is not None
    }
    if protocol == "reference":
        cells = REFERENCE_PROTOCOL.get(row, {}).get(domain, {})
        values.update({field: float(value) for field, value in cells.items()})
    values.update(horizon=settings.chunk, discount=settings.discount)
    if settings.rho is not None and _replace_everywhere(config, "rho", settings.rho)[1]:
        values.update(rho=settings.rho)  # agents without a learned critic (bc) have no rho
    return override(config, **values)
