r"""Flow matching (behaviour cloning of a velocity field)."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, Scalar, VelocityField
from .._interpolant import AbstractInterpolant
from ._time_sampling import AbstractTimeSampler, importance_weighted, UniformTimes


def flow_matching_errors(
    interpolant: AbstractInterpolant,
    velocity: VelocityField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    times: Float[Array, " batch"],
    noise: Float[Array, "batch dim"],
) -> Float[Array, " batch"]:
    r"""The per-sample flow-matching errors at given times and noises,

    $$\ell_i = \tfrac1d\big\|v(t_i, x_{t_i}, s_i) - (\dot\alpha_{t_i} x_1^i + \dot\beta_{t_i} x_0^i)\big\|^2,
      \qquad x_{t_i} = \alpha_{t_i} x_1^i + \beta_{t_i} x_0^i,$$

    the integrand of [`flow_matching_loss`][interpolant_rl.objectives.flow_matching_loss]
    (e.g. for the probes of
    [`AdaptiveTimeSampler.adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt]).

    **Arguments:** `interpolant`, `velocity`, `actions` $x_1$ `(batch, dim)`, `cond` (batched
    along axis 0, or `None`), `times` $t$ `(batch,)`, `noise` $x_0$ `(batch, dim)`.

    **Returns:** $\ell$, shape `(batch,)`.
    """
    x_t = jax.vmap(interpolant.interpolate)(noise, actions, times)
    target = jax.vmap(interpolant.velocity_target)(noise, actions, times)
    cond_axis = None if cond is None else 0
    prediction = jax.vmap(velocity, in_axes=(0, 0, cond_axis))(times, x_t, cond)
    return jnp.mean((prediction - target) ** 2, axis=-1)


def flow_matching_loss(
    interpolant: AbstractInterpolant,
    velocity: VelocityField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    weights: Float[Array, " batch"] | None = None,
    time_sampler: AbstractTimeSampler = UniformTimes(),
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
    - `key`: randomness for $t$ and $x_0$ (`time_key, noise_key = jax.random.split(key)`).
    - `weights`: optional per-sample weights (e.g. the validity mask of action chunks, which
      weights invalid chunks out); the loss is then $\frac1B\sum_i w_i \ell_i$.
    - `time_sampler`: the law of $t$ (default [`UniformTimes`][interpolant_rl.objectives.UniformTimes],
      exactly the draws above). A sampler with importance weights $\omega(t)$, e.g.
      [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler], draws
      $t \sim p$ and multiplies each $\ell_i$ by $\omega(t_i)$: the same expectation, hence
      the same minimiser.

    **Returns:** the scalar loss (mean over the batch, mean over action dimensions).
    """
    batch = actions.shape[0]
    time_key, noise_key = jr.split(key)
    t = time_sampler(time_key, (batch,), actions.dtype)
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    per_sample = flow_matching_errors(interpolant, velocity, actions, cond, t, x0)
    per_sample = importance_weighted(per_sample, time_sampler.importance_weights(t))
    if weights is None:
        return jnp.mean(per_sample)
    return jnp.mean(weights * per_sample)
