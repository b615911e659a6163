"""The QAM study's per-domain hyperparameters, for every agent that has them."""

from typing import Any

from ._registry import _spec, override


DOMAINS: tuple[str, ...] = (
    "cube-double",
    "cube-triple",
    "scene",
    "puzzle-3x3",
    "antmaze-large",
    "humanoidmaze-medium",
)
"""The six OGBench domains of the QAM study, in the order of [`PROTOCOL`][interpolant_rl.agents.PROTOCOL]'s
value tuples (scene and puzzle-3x3 are trained with sparse rewards there)."""

# One value per domain, in DOMAINS order; field names are the agents' configuration fields
# (set wherever they occur, nested configurations included). Agents not listed (moma_ql, ofql)
# have no per-domain values in the study and keep their defaults everywhere.
PROTOCOL: dict[str, dict[str, tuple[float, ...]]] = {
    "qam": dict(tau=(1, 3, 1, 3, 10, 3)),
    "qam_edit": dict(tau=(1, 3, 1, 1, 1, 3), edit_scale=(0, 0.1, 0, 0.1, 0.1, 0.1)),
    "qam_fql": dict(tau=(1, 10, 1, 3, 3, 1), alpha=(0, 300, 300, 0, 30, 30)),
    "bam": dict(tau=(10, 30, 10, 10, 30, 10)),
    "fql": dict(alpha=(300, 30, 300, 300, 3, 30)),
    "fbrac": dict(alpha=(0.1, 0.03, 100, 0.03, 0.1, 30)),
    "ifql": dict(expectile=(0.9, 0.95, 0.9, 0.95, 0.9, 0.7)),
    "fawac": dict(tau=(0.8, 0.8, 6.4, 0.8, 6.4, 6.4)),
    "cgql": dict(tau=(10, 10, 10, 10, 10, 10), guidance=(0.01, 0.1, 0.1, 0.1, 0.1, 0.01)),
    "qsm": dict(q_scale=(1, 10, 3, 10, 10, 10), alpha=(10, 10, 30, 30, 10, 30)),
    "dac": dict(alpha=(3, 0.3, 1, 1, 0.3, 1)),
    "dsrl": dict(noise_scale=(1.0, 1.4, 0.4, 1.0, 0.8, 0.6)),
    "fedit": dict(edit_scale=(0.2, 0.3, 0.2, 0.2, 0.2, 0.5)),
    "rebrac": dict(alpha=(0.01, 0.01, 0.03, 0.1, 0.01, 0.01), actor_noise=(0, 0.2, 0, 0, 0, 0)),
    "rlpd": dict(bc_alpha=(0.1, 0, 0.3, 0.01, 0, 0.03)),
}
"""Per agent, per configuration field: its value on each of [`DOMAINS`][interpolant_rl.agents.DOMAINS]
(the QAM paper's hyperparameter table)."""


def domain_of(dataset_name: str) -> str | None:
    """The study domain of an OGBench dataset or environment name
    (`"cube-double-play-singletask-task2-v0"` → `"cube-double"`,
    `"humanoidmaze-medium-navigate-v0"` → `"humanoidmaze-medium"`), or `None` for any other."""
    for domain in DOMAINS:
        if dataset_name == domain or dataset_name.startswith(domain + "-"):
            return domain
    return None


def domain_config(name: str, domain: str | None) -> Any:
    r"""Agent `name`'s configuration for one domain of the QAM study: its defaults (the
    cube-double column) with that domain's values from [`PROTOCOL`][interpolant_rl.agents.PROTOCOL],
    and the protocol's domain-wide settings — discount $\gamma = 0.995$ and pessimism $\rho = 0$
    on humanoidmaze-medium. `domain=None` gives the defaults unchanged.

    Raises `ValueError` for an unknown agent or domain (naming the valid ones)."""
    config = _spec(name).default_config()
    if domain is None:
        return config
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; available: {', '.join(DOMAINS)}")
    index = DOMAINS.index(domain)
    values = {field: float(column[index]) for field, column in PROTOCOL.get(name, {}).items()}
    if domain == "humanoidmaze-medium":
        values.update(discount=0.995, rho=0.0)
    return override(config, **values) if values else config
