r"""The seed axis on devices: its sharding, and moving stacked PyTrees between the host and the
(possibly several, possibly multi-host) devices."""

from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree


def seed_sharding(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> NamedSharding:
    """The sharding of a seed axis of length `num_seeds` over `devices` (default: all of
    `jax.devices()`): `NamedSharding(Mesh(devices, ("seeds",)), PartitionSpec("seeds"))`.

    Raises a one-line `ValueError` unless `num_seeds` is a multiple of the number of devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if num_seeds % len(devices):
        raise ValueError(
            f"{num_seeds} seeds cannot be split evenly over {len(devices)} devices: use a "
            f"multiple of {len(devices)} seeds, or fewer devices (e.g. CUDA_VISIBLE_DEVICES)"
        )
    return NamedSharding(Mesh(np.asarray(devices), ("seeds",)), PartitionSpec("seeds"))


def put(x, sharding: NamedSharding) -> jax.Array:
    """`x` (a host array, the same on every process) placed with `sharding`."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    x = np.asarray(x)  # the same on every process: each runs the whole host-side loop
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_tree(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """`put` on every array of `tree`."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: put(x, sharding), arrays), static)


def get(x) -> np.ndarray:
    """`x` on the host, gathered from every process when it spans several."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def get_tree(tree: PyTree) -> PyTree:
    """`get` on every array of `tree`."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(get, arrays), static)


def constrain(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Inside `jit`: every array of `tree` laid out with `sharding`."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    arrays = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), arrays)
    return eqx.combine(arrays, static)
