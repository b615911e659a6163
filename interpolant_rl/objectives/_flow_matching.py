r"""Flow matching (behaviour cloning of a velocity field)."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, Scalar, VelocityField
from .._interpolant import AbstractInterpolant


def flow_matching_loss(
    interpolant: AbstractInterpolant,
    velocity: VelocityField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""Conditional flow matching for any interpolant:

    $$\mathcal L = \mathbb E_{t \sim U[0,1],\,x_0 \sim \mathcal N(0, I)}\,
      w\,\tfrac1d\big\|v(t, x_t, s) - (\dot\alpha_t x_1 + \dot\beta_t x_0)\big\|^2,\qquad
      x_t = \alpha_t x_1 + \beta_t x_0,$$

    whose minimiser is the marginal velocity of the interpolant between $\mathcal N(0, I)$ and the
    actions (per state).

    **Arguments:**

    - `interpolant`, `velocity`: the interpolant and the field `(t, x, cond) -> v` being trained.
    - `actions`: data $x_1$, shape `(batch, dim)`.
    - `cond`: per-sample conditioning batched along axis 0 (or `None`).
    - `key`: randomness for $t$ and $x_0$.
    - `weights`: optional per-sample weights (e.g. the validity mask of action chunks, which
      weights invalid chunks out); the loss is then $\frac1B\sum_i w_i \ell_i$.

    **Returns:** the scalar loss (mean over the batch, mean over action dimensions).
    """
    batch = actions.shape[0]
    time_key, noise_key = jr.split(key)
    t = jr.uniform(time_key, (batch,), dtype=actions.dtype)
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    x_t = jax.vmap(interpolant.interpolate)(x0, actions, t)
    target = jax.vmap(interpolant.velocity_target)(x0, actions, t)
    cond_axis = None if cond is None else 0
    prediction = jax.vmap(velocity, in_axes=(0, 0, cond_axis))(t, x_t, cond)
    per_sample = jnp.mean((prediction - target) ** 2, axis=-1)
    if weights is None:
        return jnp.mean(per_sample)
    return jnp.mean(weights * per_sample)
