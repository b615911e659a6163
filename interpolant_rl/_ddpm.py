r"""The DDPM ancestral sampler of a denoiser on any interpolant, and its posterior step.

**The DDPM posterior** (our direction: from a noisier time $t$ to a cleaner time $s > t$). The
interpolant's forward (noising) kernel from $s$ back to $t$ is
$x_t = a\,x_s + \sigma_{t|s}\,\xi$ with $a = \alpha_t/\alpha_s$ and
$\sigma_{t|s}^2 = \beta_t^2 - a^2\beta_s^2$ ($= 1 - a^2$ for a variance-preserving schedule), so by
Bayes' rule, given the clean action $x_1$,

$$q(x_s \mid x_t, x_1) = \mathcal N\Big(\frac{\alpha_s\,\sigma_{t|s}^2}{\beta_t^2}\,x_1
  + \frac{a\,\beta_s^2}{\beta_t^2}\,x_t,\ \ \frac{\sigma_{t|s}^2\,\beta_s^2}{\beta_t^2}\,I\Big).$$

The ancestral sampler draws from it with $x_1$ replaced by the prediction $\hat x_1(x_t)$. With
point-mass data (where $\hat x_1$ is exact and deterministic) one step maps $p_t$ to $p_s$
exactly; in general it keeps the mean exactly and under-disperses by
$\big(\alpha_s\sigma_{t|s}^2/\beta_t^2\big)^2\,\mathbb E\,\mathrm{Cov}(x_1 \mid x_t)$, a deficit of
order $(s - t)^2$ per step (the tests check both closed forms).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ._custom_types import Cond, Scalar, ScalarLike, Vector
from ._interpolant import AbstractInterpolant


Denoiser = Callable[[Scalar, Vector, Cond], Vector]

DiffusionStep = Callable[
    [AbstractInterpolant, Vector, Vector, Scalar, Scalar, PRNGKeyArray], Vector
]


def ddpm_posterior(
    interpolant: AbstractInterpolant,
    x_t: Vector,
    x1_hat: Vector,
    t: ScalarLike,
    s: ScalarLike,
) -> tuple[Vector, Scalar]:
    r"""Mean and standard deviation of the DDPM posterior $q(x_s \mid x_t, x_1 = \hat x_1)$ from a
    noisier time $t$ to a cleaner time $s > t$ (see [the module](#ddpm)):

    $$\mu = \frac{\alpha_s\sigma_{t|s}^2}{\beta_t^2}\,\hat x_1 + \frac{a\,\beta_s^2}{\beta_t^2}\,x_t,
      \qquad \mathrm{std} = \frac{\sigma_{t|s}\,\beta_s}{\beta_t},\qquad
      a = \frac{\alpha_t}{\alpha_s},\ \sigma_{t|s}^2 = \beta_t^2 - a^2\beta_s^2.$$

    At $s = 1$ the mean is $\hat x_1$ and the deviation $0$. Needs $t < 1$ and $\alpha_s > 0$.

    **Returns:** `(mean, std)`, the mean of shape `(dim,)` and a scalar deviation.
    """
    alpha_t, beta_t = interpolant.alpha(t), interpolant.beta(t)
    alpha_s, beta_s = interpolant.alpha(s), interpolant.beta(s)
    ratio = alpha_t / alpha_s
    forward_variance = jnp.maximum(beta_t**2 - ratio**2 * beta_s**2, 0.0)
    mean = (alpha_s * forward_variance * x1_hat + ratio * beta_s**2 * x_t) / beta_t**2
    return mean, jnp.sqrt(forward_variance) * beta_s / beta_t


def ddpm_step(
    interpolant: AbstractInterpolant,
    x_t: Vector,
    x1_hat: Vector,
    t: ScalarLike,
    s: ScalarLike,
    key: PRNGKeyArray,
) -> Vector:
    r"""One ancestral step $x_s \sim q(x_s \mid x_t, x_1 = \hat x_1)$, the DDPM posterior of
    [`ddpm_posterior`][interpolant_rl.ddpm_posterior]."""
    mean, std = ddpm_posterior(interpolant, x_t, x1_hat, t, s)
    return mean + std * jr.normal(key, x_t.shape, x_t.dtype)


def jump_renoise_step(
    interpolant: AbstractInterpolant,
    x_t: Vector,
    x1_hat: Vector,
    t: ScalarLike,
    s: ScalarLike,
    key: PRNGKeyArray,
) -> Vector:
    r"""Jump to the predicted clean action and re-noise with *fresh* noise:
    $x_s = \alpha_s\hat x_1 + \beta_s\xi$, $\xi \sim \mathcal N(0, I)$ (the multistep sampler of
    consistency models). **This is not the DDPM posterior step**: it forgets everything about
    $x_t$ except $\hat x_1$, so even with the exact denoiser it under-disperses by
    $\alpha_s^2\,\mathbb E\,\mathrm{Cov}(x_1 \mid x_t)$, which does not shrink with the step size
    (the posterior's deficit is of order $(s - t)^2$). Kept as a named alternative for
    comparisons; same signature as [`ddpm_step`][interpolant_rl.ddpm_step]."""
    del x_t, t
    return interpolant.alpha(s) * x1_hat + interpolant.beta(s) * jr.normal(
        key, x1_hat.shape, x1_hat.dtype
    )


def ddpm_sample(
    interpolant: AbstractInterpolant,
    denoiser: Denoiser,
    x0: Vector,
    key: PRNGKeyArray,
    cond: Cond = None,
    *,
    num_steps: int = 10,
    clip_denoised: bool = True,
    step: DiffusionStep = ddpm_step,
) -> Vector:
    r"""The DDPM ancestral sampler: from $x_0 \sim \mathcal N(0, I)$ at $t_0 = 0$, on the uniform grid
    $t_k = k/T$ (one `jax.lax.scan`),

    $$\hat x_1 = \operatorname{clip}\big(\hat x_1(t_k, x_{t_k}), -1, 1\big),\qquad
      x_{t_{k+1}} \sim q(x_{t_{k+1}} \mid x_{t_k}, x_1 = \hat x_1),$$

    the last step ($t_{T} = 1$) returning $\hat x_1$ itself. Clipping the denoised action to the
    action box before the posterior step is DAC's "clipped denoised-action reconstruction" (and
    DDPM's `clip_sample`): at the noisy end $\hat x_1 = (x - \beta\hat\varepsilon)/\alpha$ divides by
    $\alpha(0) \approx 0.08$ on the VP schedule and is far outside the box.

    **Arguments:**

    - `interpolant`: the schedule (e.g. [`interpolant_rl.VariancePreservingInterpolant`][]).
    - `denoiser`: `(t, x, cond) -> x1_hat`, e.g.
      [`NoisePrediction(interpolant, eps).denoiser`][interpolant_rl.nn.NoisePrediction].
    - `x0`: the initial noise, shape `(dim,)`.
    - `key`: randomness of the ancestral steps.
    - `cond`: the denoiser's conditioning (one state), or `None`.
    - `num_steps`: $T \ge 1$ (a Python integer; the papers use 10).
    - `clip_denoised`: clip $\hat x_1$ to $[-1, 1]$ before each step.
    - `step`: [`ddpm_step`][interpolant_rl.ddpm_step] (the posterior), or
      [`jump_renoise_step`][interpolant_rl.jump_renoise_step] for the jump-and-renoise
      sampler (not DDPM).

    **Returns:** the sample at $t = 1$, shape `(dim,)`.
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    ts = jnp.linspace(0.0, 1.0, num_steps + 1, dtype=x0.dtype)

    def body(x, inputs):
        t, s, step_key = inputs
        x1_hat = denoiser(t, x, cond)
        if clip_denoised:
            x1_hat = jnp.clip(x1_hat, -1.0, 1.0)
        return step(interpolant, x, x1_hat, t, s, step_key), None

    x1, _ = jax.lax.scan(body, x0, (ts[:-1], ts[1:], jr.split(key, num_steps)))
    return x1
