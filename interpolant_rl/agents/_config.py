r"""Network sizes, the checks that every agent configuration shares, and what makes a
configuration's float values sweepable.

**Configurations as PyTrees.** Every configuration dataclass derives from
[`Hyperparameters`][interpolant_rl.agents.Hyperparameters]. An ordinary configuration (Python
values) flattens to a PyTree node *without leaves*: it behaves exactly like a static field
(hashed, compared, part of what `jit` caches on), and checkpoints hold no trace of it. A
configuration produced by [`make_sweep`][interpolant_rl.train.make_sweep] has some float
fields *swept*: they hold arrays with one value per member of a stacked agent, flatten as
leaves, and are therefore batched by `vmap` like the parameters. One compiled program then trains
every member, each reading its own $\tau$ (or $\alpha$, learning rate, ...) as a traced scalar.
"""

import contextlib
import copy
import dataclasses
import math
from collections.abc import Iterator

import jax
import numpy as np
from jaxtyping import PRNGKeyArray


class Hyperparameters:
    """Base of every agent configuration (a frozen dataclass): a PyTree node whose leaves are
    its *swept* fields (none, for a configuration built from Python values) and its nested
    configurations.

    A swept field is set by [`make_sweep`][interpolant_rl.train.make_sweep] (through
    [`sweep_fields`][interpolant_rl.agents.sweep_fields]); it may then hold an array or a
    tracer, so code must only compute with it (`tau * x`), never branch on it or convert it
    with `float()`. Unflattening does not run `__post_init__` (tracers cannot be validated):
    the values were checked when the members' configurations were built.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, _flatten_with_keys, _unflatten, flatten_func=_flatten
        )


# While set, every float field also flattens as a leaf (`sweep_fields` reads them this way).
_EXPOSE_FLOATS: list[bool] = [False]


def _swept(config) -> frozenset[str]:
    # Kept in the instance's __dict__, not as a dataclass field: equality and hashing ignore
    # it, the treedef's auxiliary data (below) carries it.
    return config.__dict__.get("_swept_fields", frozenset())


def _children(config) -> tuple[str, ...]:
    swept = _swept(config)
    return tuple(
        field.name
        for field in dataclasses.fields(config)
        if field.name in swept
        or isinstance(getattr(config, field.name), Hyperparameters)
        or (_EXPOSE_FLOATS[0] and type(getattr(config, field.name)) is float)
    )


def _flatten(config):
    names = _children(config)
    rest = copy.copy(config)
    for name in names:  # the leaves' places hold None in the (hashed, compared) auxiliary data
        object.__setattr__(rest, name, None)
    return [getattr(config, name) for name in names], (names, _swept(config), rest)


def _flatten_with_keys(config):
    children, aux = _flatten(config)
    return [(jax.tree_util.GetAttrKey(n), c) for n, c in zip(aux[0], children, strict=True)], aux


def _unflatten(aux, children):
    names, swept, rest = aux
    if _EXPOSE_FLOATS[0]:  # a float field that comes back as an array is swept from now on
        swept = swept | {
            name
            for name, child in zip(names, children, strict=True)
            if not isinstance(child, float | Hyperparameters)
        }
    config = copy.copy(rest)
    object.__setattr__(config, "_swept_fields", swept)
    for name, child in zip(names, children, strict=True):
        object.__setattr__(config, name, child)
    return config


@contextlib.contextmanager
def sweep_fields() -> Iterator[None]:
    """Within this context, every Python-float field of every configuration flattens as a leaf,
    and a float leaf unflattened as an array marks its field swept, so that the float values of several agents' configurations
    can be compared and stacked leaf by leaf; used by
    [`make_sweep`][interpolant_rl.train.make_sweep]."""
    _EXPOSE_FLOATS[0] = True
    try:
        yield
    finally:
        _EXPOSE_FLOATS[0] = False


def unsweep(tree):
    """`tree` (e.g. one member of a sweep, as
    [`select_seed`][interpolant_rl.train.select_seed] returns it) with every swept field back
    to a Python float: the shortest decimal that is the member's float32 value (`0.0003`, not
    `0.00030000001`), so the configuration equals the one written by hand and computes the
    same float32 numbers. Swept fields must hold one value each (0-d arrays)."""

    def settle(node):
        if not isinstance(node, Hyperparameters):
            return node
        new = copy.copy(node)
        for field in dataclasses.fields(node):
            value = getattr(node, field.name)
            if field.name in _swept(node):
                text = np.format_float_positional(np.float32(value), unique=True, trim="0")
                object.__setattr__(new, field.name, float(text))
            elif isinstance(value, Hyperparameters):
                object.__setattr__(new, field.name, settle(value))
        object.__setattr__(new, "_swept_fields", frozenset())
        return new

    return jax.tree.map(settle, tree, is_leaf=lambda x: isinstance(x, Hyperparameters))


@dataclasses.dataclass(frozen=True)
class NetworkConfig(Hyperparameters):
    """Size of an MLP (GELU activations)."""

    width: int = 512  # hidden units per layer (QAM protocol: 512)
    depth: int = 4  # hidden layers (QAM protocol: 4)
    layer_norm: bool = False  # LayerNorm after each hidden layer (protocol: actors without)

    def __post_init__(self):
        if self.width < 1 or self.depth < 1:
            raise ValueError(
                f"network width and depth must be >= 1, got {self.width}, {self.depth}"
            )


def build_network(
    network: type, action_dim: int, obs_dim: int, config: NetworkConfig, key: PRNGKeyArray
):
    """`network(action_dim, obs_dim, width, depth, layer_norm=..., key=key)` for any of the
    `interpolant_rl.nn` fields and policies, sized by `config`."""
    return network(
        action_dim, obs_dim, config.width, config.depth, layer_norm=config.layer_norm, key=key
    )


def check_positive(
    name: str, value: int | float, *, allow_zero: bool = False, allow_inf: bool = False
) -> None:
    r"""Raise a one-line `ValueError` unless `value > 0` (or `>= 0` with `allow_zero`) and finite
    (`allow_inf`: $+\infty$ is a meaningful value, e.g. QAM-FQL's $\alpha$). NaN never passes."""
    if not (value >= 0 if allow_zero else value > 0) or (math.isinf(value) and not allow_inf):
        bound = ">= 0" if allow_zero else "> 0"
        finite = "" if allow_inf else "finite and "
        raise ValueError(f"{name} must be {finite}{bound}, got {value}")
