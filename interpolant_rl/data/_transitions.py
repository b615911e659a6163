r"""Transitions, action chunks and replay buffers, all sampled inside `jit`.

A [`Transitions`][interpolant_rl.data.Transitions] table stores single environment steps in
time order. Chunks of $h$ consecutive steps are cut from it at sampling time, as the QAM protocol
defines them: for a start index $i$,

- action $= \operatorname{concat}(a_i, \dots, a_{i+h-1})$ (a flattened chunk of $h\cdot d$ numbers);
- reward $= \sum_{j<h}\gamma^j r_{i+j}$ (the discounted chunk reward);
- next observation $= s'_{i+h-1}$ (the state after the whole chunk);
- mask $= \min_{j<h} m_{i+j}$ (no bootstrap once any step of the chunk terminated the task);
- valid $= 1$ unless an episode ends inside the chunk (an `episode_end` among steps
  $i, \dots, i+h-2$), in which case the losses weight the chunk out;
- next actions $= \operatorname{concat}(a_{i+h}, \dots, a_{i+2h-1})$, the data's chunk at the
  next observation, known (next valid $= 1$) when no episode ends among steps
  $i+h-1, \dots, i+2h-2$ and every step lies in the filled rows (a BRAC-style critic penalises
  the policy's next chunk for straying from it).

$h = 1$ gives ordinary transitions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._custom_types import NestedArrayLike
from ._batch import Batch


class Transitions(eqx.Module):
    r"""A table of single transitions in time order (episodes contiguous).

    **Fields** (leading axis: the $N$ transitions):
    `observations` `(N, obs_dim)`, `actions` `(N, action_dim)`, `rewards` `(N,)`,
    `masks` `(N,)` (0 where the task terminated: no bootstrap), `next_observations`
    `(N, obs_dim)`, `episode_ends` `(N,)` (1 on the last transition of each episode — a time
    limit or a termination — so chunks never run across episodes).
    """

    observations: Float[Array, "N obs_dim"]
    actions: Float[Array, "N action_dim"]
    rewards: Float[Array, " N"]
    masks: Float[Array, " N"]
    next_observations: Float[Array, "N obs_dim"]
    episode_ends: Float[Array, " N"]

    def __init__(
        self,
        observations: NestedArrayLike,
        actions: NestedArrayLike,
        rewards: NestedArrayLike,
        masks: NestedArrayLike,
        next_observations: NestedArrayLike,
        episode_ends: NestedArrayLike,
    ):
        arrays = dict(
            observations=observations,
            actions=actions,
            rewards=rewards,
            masks=masks,
            next_observations=next_observations,
            episode_ends=episode_ends,
        )
        arrays = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in arrays.items()}
        n = arrays["rewards"].shape[0] if arrays["rewards"].ndim == 1 else -1
        expected = dict(
            observations=2, actions=2, rewards=1, masks=1, next_observations=2, episode_ends=1
        )
        for name, ndim in expected.items():
            if arrays[name].ndim != ndim or arrays[name].shape[0] != n:
                shapes = {k: tuple(v.shape) for k, v in arrays.items()}
                raise ValueError(f"Transitions: inconsistent shapes {shapes}")
        if arrays["observations"].shape != arrays["next_observations"].shape:
            raise ValueError("Transitions: observations and next_observations differ in shape")
        if n == 0:
            raise ValueError("Transitions: empty (no transitions)")
        for name, value in arrays.items():
            if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
                raise ValueError(f"Transitions: {name} contains NaN or inf")
        for name, value in arrays.items():
            setattr(self, name, value)

    @property
    def size(self) -> int:
        return self.rewards.shape[0]

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]


def chunk_batch(
    transitions: Transitions,
    starts: Int[Array, " batch"],
    horizon: int,
    discount: float,
    *,
    limit: Int[ArrayLike, ""] | None = None,
) -> Batch:
    r"""The chunks of `horizon` steps starting at `starts` (see the module docstring).

    **Arguments:**

    - `transitions`: the table.
    - `starts`: start indices, shape `(batch,)`.
    - `horizon`: the chunk length $h \ge 1$ (a Python integer).
    - `discount`: $\gamma$, for the chunk reward.
    - `limit`: the number of filled rows (a replay buffer's size; default: all); a chunk running
      past it is invalid.

    **Returns:** a [`Batch`][interpolant_rl.data.Batch] with `action_dim * horizon` actions
    (and as many next actions).
    """
    if horizon < 1:
        raise ValueError(f"chunk horizon must be >= 1, got {horizon}")
    size = transitions.size if limit is None else limit
    # the chunk (steps i .. i+h-1) and the next one (i+h .. i+2h-1), cut together
    steps = starts[:, None] + jnp.arange(2 * horizon)[None, :]
    inside = steps < size
    index = jnp.minimum(steps, transitions.size - 1)
    ends = transitions.episode_ends[index] > 0
    # an episode end at any step but the chunk's last one breaks the chunk
    crossing = jnp.any(ends[:, : horizon - 1] | ~inside[:, 1:horizon], axis=1)
    valid = jnp.where(crossing | ~inside[:, 0], 0.0, 1.0)
    # the next chunk is the data's action at the next observation only within the episode
    next_crossing = jnp.any(ends[:, horizon - 1 : -1] | ~inside[:, horizon:], axis=1)
    discounts = discount ** jnp.arange(horizon, dtype=jnp.float32)
    chunk, next_chunk = index[:, :horizon], index[:, horizon:]
    return Batch(
        observations=transitions.observations[starts],
        actions=transitions.actions[chunk].reshape(starts.shape[0], -1),
        rewards=jnp.sum(transitions.rewards[chunk] * discounts, axis=1),
        masks=jnp.min(transitions.masks[chunk], axis=1),
        next_observations=transitions.next_observations[chunk[:, -1]],
        valid=valid,
        next_actions=transitions.actions[next_chunk].reshape(starts.shape[0], -1),
        next_valid=jnp.where(next_crossing, 0.0, 1.0),
    )


def sample_chunks(
    transitions: Transitions,
    key: PRNGKeyArray,
    batch_size: int,
    horizon: int = 1,
    discount: float = 0.99,
    *,
    limit: Int[ArrayLike, ""] | None = None,
) -> Batch:
    """A batch of `batch_size` chunks with uniformly drawn start indices among the first
    `limit` (default: all) rows. Jittable (`limit` may be a traced buffer size)."""
    size = transitions.size if limit is None else limit
    starts = jr.randint(key, (batch_size,), 0, jnp.maximum(size, 1))
    return chunk_batch(transitions, starts, horizon, discount, limit=limit)


class ReplayBuffer(eqx.Module):
    r"""A fixed-capacity ring buffer of online transitions, functional (`add` returns a new
    buffer) and jittable. Once full, the oldest rows are overwritten. Chunks are cut as in
    [`chunk_batch`][interpolant_rl.data.chunk_batch]; a chunk that would run from the newest row
    into the oldest (across the write position) is invalid.

    **Fields:** `storage` (a [`Transitions`][interpolant_rl.data.Transitions] of `capacity` rows),
    `size` (filled rows), `position` (the next row to write).
    """

    storage: Transitions
    size: Int[Array, ""]
    position: Int[Array, ""]

    @classmethod
    def create(cls, obs_dim: int, action_dim: int, capacity: int) -> "ReplayBuffer":
        """An empty buffer."""
        if capacity < 1:
            raise ValueError(f"replay buffer capacity must be >= 1, got {capacity}")
        zeros = np.zeros
        storage = Transitions(
            zeros((capacity, obs_dim)),
            zeros((capacity, action_dim)),
            zeros(capacity),
            zeros(capacity),
            zeros((capacity, obs_dim)),
            zeros(capacity),
        )
        return cls(storage, jnp.asarray(0), jnp.asarray(0))

    @property
    def capacity(self) -> int:
        return self.storage.size

    def add(
        self, observation, action, reward, mask, next_observation, episode_end
    ) -> "ReplayBuffer":
        """Append one transition (its fields unbatched)."""
        p = self.position
        storage = jax.tree.map(
            lambda column, value: column.at[p].set(value),
            self.storage,
            _row(observation, action, reward, mask, next_observation, episode_end),
        )
        return ReplayBuffer(
            storage, jnp.minimum(self.size + 1, self.capacity), (p + 1) % self.capacity
        )

    def sample(
        self, key: PRNGKeyArray, batch_size: int, horizon: int = 1, discount: float = 0.99
    ) -> Batch:
        """`batch_size` chunks of the filled rows (the buffer must not be empty)."""
        starts = jr.randint(key, (batch_size,), 0, jnp.maximum(self.size, 1))
        batch = chunk_batch(self.storage, starts, horizon, discount, limit=self.size)
        newest = (self.position - 1) % self.capacity
        offsets = (newest - starts) % self.capacity
        # the newest row may only be a chunk's last step: later steps would be the oldest data
        full = self.size == self.capacity
        crosses, next_crosses = full & (offsets < horizon - 1), full & (offsets < 2 * horizon - 1)
        return eqx.tree_at(
            lambda b: (b.valid, b.next_valid),
            batch,
            (jnp.where(crosses, 0.0, batch.valid), jnp.where(next_crosses, 0.0, batch.next_valid)),
        )


def _row(observation, action, reward, mask, next_observation, episode_end):
    row = Transitions.__new__(Transitions)
    for name, value in dict(
        observations=observation,
        actions=action,
        rewards=reward,
        masks=mask,
        next_observations=next_observation,
        episode_ends=episode_end,
    ).items():
        object.__setattr__(row, name, jnp.asarray(value, dtype=jnp.float32))
    return row


def mixed_batch(first: Batch, second: Batch) -> Batch:
    """Concatenate two batches along the batch axis (e.g. half offline, half online: RLPD's
    50/50 sampling, or the offline-to-online mix of the QAM protocol)."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), first, second)
