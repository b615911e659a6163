"""The weighted batch mean every loss uses to weight out invalid samples."""

import jax.numpy as jnp
from jaxtyping import Array, Float


def weighted_mean(
    values: Float[Array, " batch"], weights: Float[Array, " batch"] | None
) -> Float[Array, ""]:
    r"""$\sum_i w_i v_i / \max(\sum_i w_i, 1)$, or the plain mean when `weights` is `None`.

    The denominator's floor of 1 keeps a batch whose weights are all zero (every chunk crossed
    an episode end) at a loss of 0 instead of 0/0; with 0/1 validity weights and at least one
    valid sample it is the mean over the valid samples.
    """
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), 1.0)
