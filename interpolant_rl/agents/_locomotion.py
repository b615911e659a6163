"""Per-task hyperparameters on D4RL's Gym locomotion tasks, for the agents whose papers tune them
per dataset, applied from the dataset's name as [`domain_config`][interpolant_rl.agents.domain_config]
applies the QAM study's per-domain values."""

from typing import Any

from ..data import parse_locomotion_name
from ._registry import _spec, override


_GYM_ENVS = ("halfcheetah", "hopper", "walker2d")
_GYM_DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
_TASKS = tuple(f"{env}-{dataset}" for env in _GYM_ENVS for dataset in _GYM_DATASETS)

# ReBRAC's (actor, critic) BC weights (beta_1, beta_2) per Gym dataset, rows in _GYM_DATASETS
# order, from its authors' per-dataset configuration files (tinkoff-ai/CORL,
# configs/offline/rebrac/{env}/{dataset}_v2.yaml), which the ReBRAC paper's tables report.
_REBRAC_BETAS = {
    "halfcheetah": (
        (0.001, 0.1),
        (0.001, 0.01),
        (0.01, 0.001),
        (0.01, 0.1),
        (0.01, 0.01),
        (0.001, 0.1),
    ),
    "hopper": ((0.001, 0.01), (0.01, 0.01), (0.05, 0.5), (0.1, 0.01), (0.1, 0.1), (0.01, 0.01)),
    "walker2d": ((0.01, 0.0), (0.05, 0.1), (0.05, 0.01), (0.01, 0.01), (0.01, 0.5), (0.01, 0.01)),
}
# ... and the values its Gym configurations share: target-policy noise 0.2 clipped at 0.5, actor
# delay 2, target rate 0.005, Adam 1e-3 for actor and critic, the minimum of two critics (rho = 1:
# mean - std of two values is their minimum).
_REBRAC_GYM = dict(
    actor_noise=0.2,
    noise_clip=0.5,
    actor_delay=2,
    target_rate=0.005,
    learning_rate=1e-3,
    rho=1.0,
)

LOCOMOTION_PROTOCOL: dict[str, dict[str, dict[str, float]]] = {
    "rebrac": {
        f"{env}-{dataset}": dict(alpha=actor, critic_alpha=critic, **_REBRAC_GYM)
        for env, rows in _REBRAC_BETAS.items()
        for dataset, (actor, critic) in zip(_GYM_DATASETS, rows, strict=True)
    },
}
"""Agent → D4RL Gym task (`"hopper-medium"`: environment and dataset, no version) → the
configuration fields set there (wherever they occur, nested configurations included). Only
agents whose papers tune values per Gym dataset are listed; the others keep their defaults on
locomotion, where MoMa QL, OFQL and the Diffusion-QL family use one setting for every Gym task
(Diffusion-QL's $\\eta = 1$). ReBRAC's rows are its actor and critic BC weights
($\\beta_1$ = `alpha`, $\\beta_2$ = `critic_alpha`) and the settings its Gym runs share; network
sizes (3 × 256) and the batch (1024) are the run's, not the agent's, and stay the preset's."""


def locomotion_task(name: str) -> str | None:
    """The D4RL Gym task (`"hopper-medium"`) of a D4RL dataset name (`"hopper-medium-v2"`), or
    `None` for any other name (an environment id, an OGBench dataset, ant)."""
    parsed = parse_locomotion_name(name)  # D4RL's names, as run.py reads them
    if parsed is None or parsed["dataset"] is None:
        return None
    task = f"{parsed['env']}-{parsed['dataset']}"
    return task if task in _TASKS else None


def locomotion_config(name: str, task: str | None, *, config: Any = None) -> Any:
    """Agent `name`'s configuration for a D4RL Gym task of
    [`LOCOMOTION_PROTOCOL`][interpolant_rl.agents.LOCOMOTION_PROTOCOL] (`"hopper-medium"`;
    `None`, or an agent without per-task values, leaves `config` unchanged).

    **Arguments:** a registered agent `name`, the `task`, and the `config` the values are applied
    to (default: the agent's [`default_config`][interpolant_rl.agents.default_config]).

    Raises `ValueError` for an unknown agent or task (naming the valid tasks).
    """
    if config is None:
        config = _spec(name).default_config()
    if task is None:
        return config
    if task not in _TASKS:
        raise ValueError(f"unknown locomotion task {task!r}; available: {', '.join(_TASKS)}")
    return override(config, **LOCOMOTION_PROTOCOL.get(name, {}).get(task, {}))
