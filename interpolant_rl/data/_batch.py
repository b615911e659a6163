"""The batch type every loss and agent update consumes."""

import equinox as eqx
from jaxtyping import Array, Float


class Batch(eqx.Module):
    r"""A batch of transitions (or of action chunks: a chunk of $h$ actions is one flattened
    action of $h\cdot d$ dimensions, its reward the discounted chunk reward, its next observation
    the one after the chunk).

    Every field has leading axes `(*lead, batch)`: `lead` is `()` for one update and
    `(num_updates,)` for the stacked batches that [`AbstractAgent.update`][interpolant_rl.agents.AbstractAgent.update]
    scans over.

    **Fields:** `observations` `(..., obs_dim)`, `actions` `(..., action_dim)` in $[-1, 1]$,
    `rewards`, `masks` (0 where the episode terminated: no bootstrap), `next_observations`,
    `valid` (weights: 0 for chunks that cross an episode end, which are weighted out of every
    loss; all ones otherwise); and, in batches cut from data
    ([`chunk_batch`][interpolant_rl.data.chunk_batch]), `next_actions` `(..., action_dim)`, the
    data's own (chunk of) action(s) at `next_observations`, with `next_valid` (1 where those
    actions are known: the next chunk lies in the same episode and in the filled rows). ReBRAC's
    critic penalty reads them; hand-made batches may leave both `None`.
    """

    observations: Float[Array, "*lead batch obs_dim"]
    actions: Float[Array, "*lead batch action_dim"]
    rewards: Float[Array, "*lead batch"]
    masks: Float[Array, "*lead batch"]
    next_observations: Float[Array, "*lead batch obs_dim"]
    valid: Float[Array, "*lead batch"]
    next_actions: Float[Array, "*lead batch action_dim"] | None = None
    next_valid: Float[Array, "*lead batch"] | None = None
