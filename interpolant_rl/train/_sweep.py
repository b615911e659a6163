r"""Hyperparameter axes in one program: members of a stacked agent that differ in float
hyperparameters as well as in seed.

[`make_agents`][interpolant_rl.train.make_agents] stacks $N$ seeds of one configuration;
[`make_sweep`][interpolant_rl.train.make_sweep] stacks the grid of several values of float
hyperparameters (e.g. $\tau \in \{1, 3, 10\}$) times those seeds. A swept value becomes an
array leaf of the configuration (one entry per member, see
[`Hyperparameters`][interpolant_rl.agents.Hyperparameters]), so
[`train_seeds`][interpolant_rl.train.train_seeds] trains all $K \times N$ members as one
vmapped, jitted program: member $(\tau = 3, \text{seed } 1)$ reads $\tau$ as a traced scalar and
draws its randomness from seed 1 alone, exactly as a run of $\tau = 3$ and seed 1 does.

What can be swept: any float field of the agent's configuration (dotted for nested ones:
`critic.rho`), e.g. `tau`, `alpha`, `learning_rate`, whose value the agent only computes with.
A value that changes the agent's structure (an integer size, a flag, or a float an agent
branches on, such as QAM-FQL's $\alpha = \infty$, which makes it plain QAM) is refused with a
one-line error; such settings need separate runs
([`experiments/sweep.py`](../experiments.md#sweeps-on-ray-tune) launches them).
"""

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..agents import AbstractAgent, Hyperparameters, sweep_fields


@dataclasses.dataclass(frozen=True)
class SweepMember:
    """One member of a stacked run: its seed and the values of the swept hyperparameters
    (empty for a plain multi-seed run).

    Its `name` is its run directory under the run's: `seed1` for a plain seed,
    `tau=3/seed1` for a swept configuration (`tau=3,alpha=10/seed1` with two axes).
    """

    seed: int
    values: tuple[tuple[str, float], ...] = ()

    @property
    def configuration(self) -> str:
        """The swept values as `tau=3,alpha=10` (empty without any)."""
        return ",".join(f"{name}={value:g}" for name, value in self.values)

    @property
    def name(self) -> str:
        seed = f"seed{self.seed}"
        return f"{self.configuration}/{seed}" if self.values else seed

    def directory(self, run_dir: str | Path) -> Path:
        """This member's run directory under `run_dir`."""
        return Path(run_dir) / self.name


def parse_sweep(spec: str) -> tuple[str, tuple[float, ...]]:
    """`"tau=1,3,10"` as `("tau", (1.0, 3.0, 10.0))`; a one-line `ValueError` if malformed,
    empty, not numbers, not finite, or repeating a value."""
    name, sep, values = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise ValueError(f"a sweep axis is NAME=V1,V2,... (e.g. tau=1,3,10), got {spec!r}")
    try:
        parsed = tuple(float(v) for v in values.split(","))
    except ValueError:
        raise ValueError(f"sweep axis {name}: values must be numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in parsed):
        raise ValueError(f"sweep axis {name}: values must be finite, got {values!r}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"sweep axis {name}: a value is repeated in {values!r}")
    return name, parsed


def float_fields(config: Any, prefix: str = "") -> list[str]:
    """The (dotted) names of every float field of a configuration and its nested ones: what
    [`make_sweep`][interpolant_rl.train.make_sweep] can sweep."""
    names = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, Hyperparameters):
            names += float_fields(value, f"{prefix}{field.name}.")
        elif type(value) is float:
            names.append(prefix + field.name)
    return names


def with_value(config: Any, name: str, value: float) -> Any:
    """`config` with its (dotted) float field `name` set to `value`, checked by the
    configuration's own `__post_init__`; a one-line `ValueError` for a name that is not a
    float field."""
    head, _, rest = name.partition(".")
    kind = type(config).__name__
    if not dataclasses.is_dataclass(config) or head not in {
        f.name for f in dataclasses.fields(config)
    }:
        raise ValueError(
            f"cannot sweep {name!r}: {kind} has no such field; its float fields: "
            + ", ".join(float_fields(config))
        )
    current = getattr(config, head)
    if rest:
        return dataclasses.replace(config, **{head: with_value(current, rest, value)})
    if type(current) is not float:
        raise ValueError(
            f"cannot sweep {name!r}: {kind}.{head} is {type(current).__name__}, not a float "
            "(only float hyperparameters can share one program; other settings need separate "
            "runs, e.g. experiments/sweep.py)"
        )
    return dataclasses.replace(config, **{head: value})


def sweep_grid(axes: Mapping[str, Sequence[float]]) -> list[tuple[tuple[str, float], ...]]:
    """The Cartesian product of the axes, in order (the last axis varies fastest)."""
    names = list(axes)
    return [tuple(zip(names, point, strict=True)) for point in itertools.product(*axes.values())]


def make_sweep(
    name: str,
    obs_dim: int,
    action_dim: int,
    seeds: Sequence[int],
    config: Any,
    axes: Mapping[str, Sequence[float]],
) -> tuple[AbstractAgent, list[SweepMember]]:
    r"""Agent `name` for every point of the grid `axes` (e.g. `{"tau": [1, 3, 10]}`) and every
    seed, stacked into one agent of $K \times N$ members, configuration-major: member
    $k N + s$ has the $k$-th point of the grid and seed `seeds[s]`.

    Each member's arrays equal those of [`make_agent`][interpolant_rl.agents.make_agent]`(name,
    obs_dim, action_dim, jax.random.key(seed), config_k)` (`config_k`: `config` with the
    point's values, checked by its own validation); the swept fields hold the members' values
    (float32), every other field stays a shared Python value.

    **Returns:** `(agents, members)`, ready for
    [`train_seeds`][interpolant_rl.train.train_seeds]`(agents, ..., members=members)`.
    Raises a one-line `ValueError` for a name that is not a float field, or values that change
    the agent's structure rather than only its float values.
    """
    from ._loop import make_agents  # the seed axis' constructor (the loop imports this module)

    if not axes:
        raise ValueError("make_sweep: no sweep axes (use make_agents for seeds alone)")
    seeds = [int(seed) for seed in seeds]
    points = sweep_grid(axes)
    configs = []
    for point in points:
        member_config = config
        for field, value in point:
            member_config = with_value(member_config, field, value)
        configs.append(member_config)
    parts = [make_agents(name, obs_dim, action_dim, seeds, c) for c in configs]
    with sweep_fields():  # every float of every configuration a leaf, to compare and stack
        flats = [jax.tree_util.tree_flatten(part) for part in parts]
        treedef = flats[0][1]
        for (_, other), point in zip(flats[1:], points[1:], strict=True):
            if other != treedef:
                raise ValueError(
                    f"cannot sweep {', '.join(axes)}: {name} with "
                    f"{','.join(f'{n}={v:g}' for n, v in point)} has another structure than "
                    f"with {','.join(f'{n}={v:g}' for n, v in points[0])} (a value it branches "
                    "on, not only computes with): train these settings as separate runs"
                )
        leaves = [
            _stack_leaf(column, len(seeds), name)
            for column in zip(*(leaves for leaves, _ in flats), strict=True)
        ]
        agents = jax.tree_util.tree_unflatten(treedef, leaves)
    members = [SweepMember(seed, point) for point in points for seed in seeds]
    return agents, members


def _stack_leaf(column: Sequence[Any], num_seeds: int, name: str) -> Any:
    """One leaf of every configuration's stacked agent as one leaf of the sweep: arrays
    concatenated along the member axis; a float shared by all kept as it is, one that differs
    as a float32 array of the members' values."""
    first = column[0]
    if eqx.is_array(first):
        return jnp.concatenate(column)
    if all(value == first for value in column[1:]):
        return first
    if type(first) is float:
        return jnp.repeat(jnp.asarray(column, jnp.float32), num_seeds)
    raise ValueError(
        f"cannot sweep {name}: a non-float setting ({type(first).__name__}) differs between "
        "the grid's configurations"
    )
