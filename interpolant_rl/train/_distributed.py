r"""Several processes (hosts) training one stacked run: each process trains its own block of the
members on its own devices.

Members never exchange data, so a run of $M$ members over $P$ processes is $P$ copies of one
compiled program, each on a block of $M / P$ members: process $p$ builds, steps and checkpoints
members $pM/P, \dots, (p+1)M/P - 1$ only, on `jax.local_devices()` (sharded over them as on one
host). A single program spanning every host's devices would give the same numbers but add a
cross-host barrier to every call and every environment step (every process would have to run
the same host loop), for nothing. JAX's distributed runtime coordinates the processes: their
ids (from the flags or the cluster's environment), and gathering the final results.
"""

from collections.abc import Sequence
from typing import TypeVar

import jax
import numpy as np


T = TypeVar("T")


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 300,
) -> None:
    """Join a multi-process run: `jax.distributed.initialize`, before anything else uses JAX.

    With `coordinator` (`host:port`, served by process 0), `num_processes` and `process_id`
    given, those; with none given, JAX reads them from the cluster's environment (SLURM, Open
    MPI, Cloud TPU). Raises a one-line `ValueError` for a partial or impossible set.
    """
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError(
            "a multi-process run needs all of coordinator, num_processes and process_id, or "
            "none of them (read from the cluster's environment)"
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id must lie in [0, {num_processes}) for {num_processes} processes, got "
            f"{process_id}"
        )
    if coordinator is not None and ":" not in coordinator:
        raise ValueError(f"the coordinator address is host:port, got {coordinator!r}")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=timeout_s,
    )


def process_block(items: Sequence[T]) -> list[T]:
    """This process's contiguous share of `items` (members, seeds, environments): block
    `jax.process_index()` of `jax.process_count()` equal blocks. One process: all of them.
    Raises a one-line `ValueError` unless the processes divide `len(items)`."""
    count, index = jax.process_count(), jax.process_index()
    if len(items) % count:
        raise ValueError(
            f"{len(items)} members cannot be split evenly over {count} processes: use a "
            f"multiple of {count} (seeds x swept values)"
        )
    size = len(items) // count
    return list(items[index * size : (index + 1) * size])


def gather_floats(values: Sequence[float]) -> list[float]:
    """Every process's `values` (the same number on each), in process order, on every
    process; exactly (float64 values travel as pairs of int32, JAX's 32-bit default)."""
    local = np.asarray(values, np.float64)
    if jax.process_count() == 1:
        return local.tolist()
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(local.view(np.int32)))
    return gathered.astype(np.int32).view(np.float64).reshape(-1).tolist()


def barrier(name: str) -> None:
    """Wait until every process has reached the barrier `name` (nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
