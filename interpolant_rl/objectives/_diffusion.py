r"""Diffusion policies on a noise-prediction network: behaviour cloning, Q-score matching (QSM),
soft Q-guidance (DAC).

A *noise field* $\hat\varepsilon_\theta(t, x \mid s)$ (an $\varepsilon$-prediction network)
estimates the noise of the interpolant, which in this library's notation is
$\hat x_0 = \mathbb E[x_0 \mid x_t = x]$ for $x_t = \alpha_t x_1 + \beta_t x_0$. Through the
interpolant it gives every other prediction
([`NoisePrediction`][interpolant_rl.nn.NoisePrediction]):

$$\hat x_1 = \frac{x - \beta_t\hat\varepsilon}{\alpha_t},\qquad
  s = \nabla_x\log p_t(x) = -\frac{\hat\varepsilon}{\beta_t},\qquad
  v = \dot\alpha_t\hat x_1 + \dot\beta_t\hat\varepsilon.$$

Everything here works for any interpolant whose $\alpha$ is positive where it is evaluated; the
QSM and DAC agents use [`interpolant_rl.VariancePreservingInterpolant`][] (the DDPM schedule).

The DDPM ancestral sampler and its posterior are in [`interpolant_rl.ddpm_sample`][].
"""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, NoiseField, Scalar, ScalarLike
from .._interpolant import AbstractInterpolant
from ._adjoint_matching import ActionGradient
from ._time_sampling import AbstractTimeSampler, importance_weighted, UniformTimes
from ._weighting import weighted_mean


# --------------------------------------------------------------------------------------------
# Losses


def _diffusion_times(key, batch, num_steps, dtype, time_sampler):
    """Times (continuous, or on the grid of a `num_steps` sampler) and their importance weights."""
    if num_steps is None:
        t = time_sampler(key, (batch,), dtype)
        return t, time_sampler.importance_weights(t)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer or None, got {num_steps!r}")
    return time_sampler.grid_times(key, (batch,), num_steps, dtype)


def _noisy_actions(interpolant, noise_field, actions, cond, key, num_steps, time_sampler):
    """Times, noise, noisy actions, the noise field's predictions there (one evaluation) and
    the times' importance weights."""
    time_key, noise_key = jr.split(key)
    t, importance = _diffusion_times(
        time_key, actions.shape[0], num_steps, actions.dtype, time_sampler
    )
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    x_t = jax.vmap(interpolant.interpolate)(x0, actions, t)
    cond_axis = None if cond is None else 0
    prediction = jax.vmap(noise_field, in_axes=(0, 0, cond_axis))(t, x_t, cond)
    return t, x0, x_t, prediction, importance


def _gradients_at(action_gradient, cond, x_t):
    cond_axis = None if cond is None else 0
    gradients = jax.vmap(action_gradient, in_axes=(cond_axis, 0))(cond, x_t)
    return jax.lax.stop_gradient(gradients)


def denoising_errors(
    interpolant: AbstractInterpolant,
    noise_field: NoiseField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    times: Float[Array, " batch"],
    noise: Float[Array, "batch dim"],
) -> Float[Array, " batch"]:
    r"""The per-sample $\varepsilon$-prediction errors at given times and noises,

    $$\ell_i = \tfrac1d\big\|\hat\varepsilon_\theta(t_i, x_{t_i}, s_i) - x_0^i\big\|^2,
      \qquad x_{t_i} = \alpha_{t_i} x_1^i + \beta_{t_i} x_0^i,$$

    the integrand of [`denoising_loss`][interpolant_rl.objectives.denoising_loss] (e.g. for the
    probes of [`AdaptiveTimeSampler.adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt]).

    **Arguments:** `interpolant`, `noise_field`, `actions` $x_1$ `(batch, dim)`, `cond`
    (batched along axis 0, or `None`), `times` $t$ `(batch,)`, `noise` $x_0$ `(batch, dim)`.

    **Returns:** $\ell$, shape `(batch,)`.
    """
    x_t = jax.vmap(interpolant.interpolate)(noise, actions, times)
    cond_axis = None if cond is None else 0
    prediction = jax.vmap(noise_field, in_axes=(0, 0, cond_axis))(times, x_t, cond)
    return jnp.mean((prediction - noise) ** 2, axis=-1)


def denoising_loss(
    interpolant: AbstractInterpolant,
    noise_field: NoiseField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    num_steps: int | None = None,
    weights: Float[Array, " batch"] | None = None,
    time_sampler: AbstractTimeSampler = UniformTimes(),
) -> Scalar:
    r"""Behaviour cloning of a diffusion policy: the $\varepsilon$-prediction (denoising score
    matching) loss

    $$\mathcal L_{\text{BC}} = \mathbb E\,w\,\tfrac1d\big\|\hat\varepsilon_\theta(t, x_t, s) - x_0\big\|^2,
      \qquad x_t = \alpha_t x_1 + \beta_t x_0,\ x_0 \sim \mathcal N(0, I),$$

    whose minimiser is $\mathbb E[x_0 \mid x_t]$, i.e. the score $-\hat\varepsilon/\beta_t$ of the
    data's marginals (it is score matching weighted by $\beta_t^2$, DDPM's "simple" loss).

    **Arguments:**

    - `interpolant`, `noise_field`: the schedule and the network `(t, x, cond) -> x0_hat` trained.
    - `actions`: data $x_1$, shape `(batch, dim)`.
    - `cond`: per-sample conditioning batched along axis 0 (or `None`).
    - `key`: randomness for $t$ and $x_0$.
    - `num_steps`: `None` draws $t \sim U[0, 1)$; an integer $T$ draws $t$ uniformly from the
      grid $\{0, 1/T, \dots, (T-1)/T\}$ where the $T$-step DDPM sampler evaluates the network
      (discrete-time DDPM training).
    - `weights`: optional per-sample weights (the validity of action chunks); the mean is then
      $\sum_i w_i\ell_i / \max(\sum_i w_i, 1)$.
    - `time_sampler`: the law of $t$ (default
      [`UniformTimes`][interpolant_rl.objectives.UniformTimes], exactly the draws above; with
      `num_steps`, its [`grid_times`][interpolant_rl.objectives.AbstractTimeSampler.grid_times]).
      A sampler with importance weights $\omega(t)$, e.g.
      [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler], multiplies each
      $\ell_i$ by $\omega(t_i)$ (not the denominator): the same expectation and minimiser.

    **Returns:** the scalar loss.
    """
    time_key, noise_key = jr.split(key)
    t, importance = _diffusion_times(
        time_key, actions.shape[0], num_steps, actions.dtype, time_sampler
    )
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    errors = denoising_errors(interpolant, noise_field, actions, cond, t, x0)
    return weighted_mean(importance_weighted(errors, importance), weights)


def q_score_matching_loss(
    interpolant: AbstractInterpolant,
    noise_field: NoiseField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    action_gradient: ActionGradient,
    key: PRNGKeyArray,
    *,
    q_scale: ScalarLike,
    bc_weight: ScalarLike,
    num_steps: int | None = None,
    weights: Float[Array, " batch"] | None = None,
    time_sampler: AbstractTimeSampler = UniformTimes(),
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""Q-score matching (QSM) with a behaviour-cloning term: the policy's score at *noisy*
    actions is regressed on the scaled critic gradient there, $s_\theta(x_t) \approx
    \lambda\nabla_a Q(s, x_t)$, written on the noise prediction ($s_\theta = -\hat\varepsilon_\theta/\beta_t$,
    weighted by $\beta_t^2$ like the denoising loss so that neither end of the schedule
    dominates), plus $\alpha$ times [`denoising_loss`][interpolant_rl.objectives.denoising_loss]
    on the same noisy actions:

    $$\mathcal L = \mathbb E\,w\,\tfrac1d\Big(
        \big\|\hat\varepsilon_\theta(t, x_t, s) + \beta_t\,\lambda\,\nabla_a Q(s, x_t)\big\|^2
        + \alpha\,\big\|\hat\varepsilon_\theta(t, x_t, s) - x_0\big\|^2\Big)
      = \mathbb E\,w\,\tfrac{\beta_t^2}d\Big(\big\|s_\theta - \lambda\nabla_a Q\big\|^2
        + \alpha\,\big\|s_\theta + x_0/\beta_t\big\|^2\Big).$$

    With $\alpha = 0$ it is zero exactly when $s_\theta = \lambda\nabla_a Q$ (the QSM paper's
    objective). Its minimiser is the convex combination
    $s^* = \frac{\alpha}{1+\alpha}\,s_\beta + \frac{\lambda}{1+\alpha}\nabla_a Q
    = \frac{\alpha}{1+\alpha}\nabla_x\big[\log p_{\beta,t} + \tfrac{\lambda}{\alpha} Q\big]$
    of the behaviour score and the critic gradient: at the data end, where $Q$ at noisy actions
    is exact, the tempered tilt $\big(\pi_\beta\,e^{(\lambda/\alpha) Q}\big)^{\alpha/(1+\alpha)}$ —
    *not* the tilt $\pi_\beta e^{\lambda Q}$.

    **Arguments:**

    - `interpolant`, `noise_field`, `actions`, `cond`, `key`, `num_steps`, `weights`,
      `time_sampler`: as in [`denoising_loss`][interpolant_rl.objectives.denoising_loss] (the
      importance weights multiply every term).
    - `action_gradient`: $\nabla_a Q(s, a)$ `(cond, action) -> gradient`, evaluated at the noisy
      actions $x_t$ (no gradient flows into it).
    - `q_scale`: $\lambda \ge 0$, the scale of the critic gradient in the score target.
    - `bc_weight`: $\alpha \ge 0$, the weight of the behaviour-cloning term.

    **Returns:** `(loss, metrics)` with `qsm_loss` and `diffusion_loss` (the two terms, unweighted
    by $\alpha$).
    """
    t, x0, x_t, prediction, importance = _noisy_actions(
        interpolant, noise_field, actions, cond, key, num_steps, time_sampler
    )
    gradients = _gradients_at(action_gradient, cond, x_t)
    betas = jax.vmap(interpolant.beta)(t)[:, None]
    qsm_errors = jnp.mean((prediction + betas * q_scale * gradients) ** 2, axis=-1)
    qsm = weighted_mean(importance_weighted(qsm_errors, importance), weights)
    bc_errors = jnp.mean((prediction - x0) ** 2, axis=-1)
    bc = weighted_mean(importance_weighted(bc_errors, importance), weights)
    return qsm + bc_weight * bc, dict(qsm_loss=qsm, diffusion_loss=bc)


def soft_q_guidance_loss(
    interpolant: AbstractInterpolant,
    noise_field: NoiseField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    action_gradient: ActionGradient,
    key: PRNGKeyArray,
    *,
    bc_weight: ScalarLike,
    guidance_scale: ScalarLike = 1.0,
    num_steps: int | None = None,
    weights: Float[Array, " batch"] | None = None,
    time_sampler: AbstractTimeSampler = UniformTimes(),
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""Diffusion actor-critic's (DAC) soft Q-guidance loss: behaviour cloning of the noise
    prediction plus a term linear in it along the critic gradient at the noisy action,

    $$\mathcal L = \mathbb E\,w\,\tfrac1d\Big(\alpha\,\big\|\hat\varepsilon_\theta(t, x_t, s) - x_0\big\|^2
        + c\,\beta_t\,\big\langle\nabla_a Q(s, x_t),\,\hat\varepsilon_\theta(t, x_t, s)\big\rangle\Big),$$

    with $c$ = `guidance_scale` (DAC: $1/\mathrm{sg}\,\operatorname{mean}|Q|$). Completing the
    square, it is $\alpha\,\|\hat\varepsilon_\theta - (x_0 - \tfrac{c\beta_t}{2\alpha}\nabla_a Q)\|^2$
    up to a constant: the noise prediction regresses on a target shifted against the critic
    gradient, and its minimiser is the score $s^* = s_\beta + \frac{c}{2\alpha}\nabla_a Q(s, x_t)$,
    the (noisy-action approximation of the) tilt $\pi_\beta\,e^{\tau Q}$ with
    $\tau = c/(2\alpha)$.

    **Arguments:**

    - `interpolant`, `noise_field`, `actions`, `cond`, `key`, `num_steps`, `weights`,
      `time_sampler`: as in [`denoising_loss`][interpolant_rl.objectives.denoising_loss] (the
      importance weights multiply every term).
    - `action_gradient`: $\nabla_a Q(s, a)$ `(cond, action) -> gradient`, evaluated at the noisy
      actions (no gradient flows into it).
    - `bc_weight`: $\alpha > 0$, the weight of the behaviour-cloning term (DAC's $\eta$); without
      it the loss is unbounded below.
    - `guidance_scale`: $c$, a scalar multiplying the critic gradient.

    **Returns:** `(loss, metrics)` with `diffusion_loss` and `guidance_loss` (the two terms,
    unweighted by $\alpha$).
    """
    t, x0, x_t, prediction, importance = _noisy_actions(
        interpolant, noise_field, actions, cond, key, num_steps, time_sampler
    )
    gradients = _gradients_at(action_gradient, cond, x_t)
    betas = jax.vmap(interpolant.beta)(t)[:, None]
    bc_errors = jnp.mean((prediction - x0) ** 2, axis=-1)
    bc = weighted_mean(importance_weighted(bc_errors, importance), weights)
    guidance_terms = jnp.mean(guidance_scale * betas * gradients * prediction, axis=-1)
    guidance = weighted_mean(importance_weighted(guidance_terms, importance), weights)
    return bc_weight * bc + guidance, dict(diffusion_loss=bc, guidance_loss=guidance)
