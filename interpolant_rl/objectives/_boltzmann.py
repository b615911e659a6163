r"""SOM's target: the probability-flow velocity of a Boltzmann policy, estimated from a critic.

The Boltzmann policy $\pi(a) \propto \exp(Q(a)/\lambda)$ (one state; $\lambda > 0$ the
temperature) has no samples, only an unnormalised log density $Q/\lambda$ and its score
$\nabla_a Q/\lambda$. Put it at the data end of an interpolant,
$x_t = \alpha_t x_1 + \beta_t x_0$ with $x_1 \sim \pi$, $x_0 \sim \mathcal N(0, I)$ ($t = 0$ noise,
$t = 1$ data). The marginal $p_t$ is transported by the probability-flow ODE
$\dot x = v(x, t)$ with

$$v(x, t) = \dot\alpha_t\,\hat x_1 + \dot\beta_t\,\frac{x - \alpha_t \hat x_1}{\beta_t},\qquad
  \hat x_1 = \mathbb E[x_1 \mid x_t = x],$$

and the score of $p_t$ is $\nabla_x \log p_t(x) = (\alpha_t\hat x_1 - x)/\beta_t^2$ (Tweedie), so
velocity, denoiser and score are one quantity; for the linear interpolant
$v = (\hat x_1 - x)/(1 - t)$ and $\nabla\log p_t = (t\,v - x)/(1 - t)$. Everything reduces to the
posterior mean $\hat x_1$ under

$$p(x_1 \mid x_t = x) \propto \pi(x_1)\,\mathcal N(x; \alpha_t x_1, \beta_t^2 I)
  = \rho(x_1)\,\mathcal N\big(x_1; m_t(x), \sigma_t^2 I\big),\qquad
  \rho(a) = \frac{e^{Q(a)/\lambda}}{\mathcal N(a; 0, I)},$$

$m_t(x) = \alpha_t x/(\alpha_t^2 + \beta_t^2)$ and $\sigma_t^2 = \beta_t^2/(\alpha_t^2 + \beta_t^2)$:
the Gaussian factor is the posterior of $x_1$ under a *reference* prior $\mathcal N(0, I)$, and
$\rho$ re-weights it to $\pi$. Draw $z_i = m_t + \sigma_t\varepsilon_i$, $i = 1..K$, and weight
them self-normalised, $w_i = \operatorname{softmax}_i\big(Q(z_i)/\lambda + \tfrac12\|z_i\|^2\big)$.
Two estimators of $\hat x_1$ follow:

- **value form**: $\hat x_1^{Q} = \sum_i w_i z_i$;
- **score form** (Stein's identity on the Gaussian factor, $\mathbb E[z] = m_t + \sigma_t^2\,
  \mathbb E[\nabla\log\rho(z)]$, where the Boltzmann score enters):
  $\hat x_1^{\nabla} = m_t + \sigma_t^2\sum_i w_i\big(\nabla_a Q(z_i)/\lambda + z_i\big)$.

Both are exact as $K \to \infty$, and their errors differ: the value form's is of order
$\sigma_t$ (large near noise), the score form's of order $\sigma_t^2\,\|\nabla\log\rho\|$ (small
near data, where the velocity divides by $\beta_t$, but large for a sharp $\pi$, whose score is of
order $1/\lambda$). We blend them by inverse variance, per point,

$$\hat x_1 = (1 - c)\,\hat x_1^{Q} + c\,\hat x_1^{\nabla},\qquad
  c = \frac{V^{Q}}{V^{Q} + V^{\nabla}},\quad
  V^{Q} = \sum_i w_i^2\|z_i - \hat x_1^{Q}\|^2,\quad
  V^{\nabla} = \sigma_t^4\sum_i w_i^2\|\nabla\log\rho(z_i) - \overline{\nabla\log\rho}\|^2,$$

with the delta-method variances of the two self-normalised averages ($\overline{\,\cdot\,}$ the
weighted mean; $c$ carries no gradient and ignores the two estimates' correlation). Measured on
a quadratic critic (2-D, $K = 16$, 3000 updates of the one-step policy): sliced $W_2$ to the
exact Boltzmann policy 0.023 at $\lambda = 1$ and 0.059 at $\lambda = 0.1$, against 0.022 / 0.19
for the fixed blend $c = 1 - \sigma_t^2$ and 0.036 / 0.097 for the value form alone.

The estimator, its reference prior and its blend are **ours**: the SOM paper estimates the score
"iDEM-style" (a self-normalised Monte-Carlo average of $\nabla Q$ over noised proposals, as in
iterated denoising energy matching), whose details we could not read. Like every importance
sampler it needs $K$ to grow as $\pi$ sharpens relative to $\mathcal N(0, I)$ (small $\lambda$,
many action dimensions): its self-normalisation bias is of order $1/\mathrm{ESS}$.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import AverageVelocityField, Cond, Scalar, ScalarLike, Vector
from .._interpolant import AbstractInterpolant
from ._meanflow import meanflow_regression_loss, meanflow_time_pairs
from ._time_sampling import AbstractTimeSampler, LogitNormalTimes


def boltzmann_velocity(
    interpolant: AbstractInterpolant,
    q_function: Callable[[Cond, Vector], Scalar],
    x: Vector,
    t: ScalarLike,
    cond: Cond,
    key: PRNGKeyArray,
    *,
    temperature: ScalarLike,
    num_samples: int,
) -> Vector:
    r"""A Monte-Carlo estimate of the probability-flow velocity $v(x, t)$ of the Boltzmann
    policy $\pi(a) \propto \exp(Q(c, a)/\lambda)$ placed at the data end of `interpolant`
    (see the module docstring for the derivation):

    $$\hat x_1 = \sigma_t^2\sum_i w_i z_i
      + (1 - \sigma_t^2)\Big(m_t + \sigma_t^2\sum_i w_i\big(\nabla_a Q(c, z_i)/\lambda + z_i\big)\Big),
      \qquad v = \dot\alpha_t\hat x_1 + \dot\beta_t\,\frac{x - \alpha_t\hat x_1}{\beta_t},$$

    $z_i = m_t + \sigma_t\varepsilon_i$, $m_t = \alpha_t x/(\alpha_t^2 + \beta_t^2)$,
    $\sigma_t^2 = \beta_t^2/(\alpha_t^2 + \beta_t^2)$,
    $w = \operatorname{softmax}(Q(c, z)/\lambda + \tfrac12\|z\|^2)$.

    **Arguments:**

    - `interpolant`: defines $\alpha, \beta$ and the velocity from the denoiser.
    - `q_function`: `(cond, action) -> Q`, a scalar (e.g. a critic ensemble's mean).
    - `x`: the point, shape `(dim,)`; `t`: its time, $t < 1$.
    - `cond`: the state (passed to `q_function`), or `None`.
    - `key`: draws the $K$ proposals.
    - `temperature`: $\lambda > 0$; `num_samples`: $K \ge 1$.

    **Returns:** $v(x, t)$, shape `(dim,)`, without gradient.
    """
    t = jnp.asarray(t, dtype=x.dtype)
    alpha, beta = interpolant.alpha(t), interpolant.beta(t)
    norm = alpha**2 + beta**2
    mean, variance = alpha * x / norm, beta**2 / norm
    z = mean + jnp.sqrt(variance) * jr.normal(key, (num_samples,) + x.shape, dtype=x.dtype)
    values, gradients = jax.vmap(jax.value_and_grad(lambda a: q_function(cond, a)))(z)
    log_weights = values / temperature + 0.5 * jnp.sum(z**2, axis=-1)
    w = jax.nn.softmax(log_weights)
    value_form = w @ z
    shifted = gradients / temperature + z  # grad log rho(z), the Stein integrand
    score_form = mean + variance * (w @ shifted)
    # inverse-variance blend (delta-method variances of the two self-normalised averages)
    var_value = jnp.sum(w**2 * jnp.sum((z - value_form) ** 2, axis=-1))
    var_score = variance**2 * jnp.sum(w**2 * jnp.sum((shifted - w @ shifted) ** 2, axis=-1))
    c = var_value / (var_value + var_score + jnp.finfo(x.dtype).tiny)
    x1_hat = (1.0 - c) * value_form + c * score_form
    return jax.lax.stop_gradient(interpolant.velocity_from_denoiser(x, x1_hat, t))


def som_loss(
    interpolant: AbstractInterpolant,
    average_velocity: AverageVelocityField,
    q_function: Callable[[Cond, Vector], Scalar],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    shape: tuple[int, int],
    temperature: ScalarLike,
    num_samples: int,
    equal_time_fraction: float = 0.25,
    time_sampler: AbstractTimeSampler = LogitNormalTimes(),
    adaptive_weight_power: float = 0.0,
    adaptive_weight_eps: float = 1e-3,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""SOM's actor loss: MeanFlow regression onto the Boltzmann policy's probability-flow
    velocity instead of a data velocity,

    $$\mathcal L = \frac1B\sum_i \mathrm{sg}\big((e_i + \epsilon)^{-p}\big)\,e_i,\qquad
      e_i = \tfrac1d\big\|u_\theta(x_i, t_i, s_i)
        - \mathrm{sg}\big(\hat v(x_i, t_i) + (s_i - t_i)\,du_\theta/dt\big)\big\|^2,$$

    with $\hat v$ from [`boltzmann_velocity`][interpolant_rl.objectives.boltzmann_velocity]
    (one estimate per point, $K$ proposals each) and $du_\theta/dt$ along $\hat v$ (one
    `jax.jvp`, [`meanflow_target`][interpolant_rl.objectives.meanflow_target]). The time pairs
    are MeanFlow's ([`meanflow_time_pairs`][interpolant_rl.objectives.meanflow_time_pairs]) and
    the regression is [`meanflow_regression_loss`][interpolant_rl.objectives.meanflow_regression_loss].

    **Where the points come from (ours).** The regression is onto a known field, so any law of
    the points with full support has the same minimiser: the exact average velocity of $\pi$'s
    probability-flow ODE. We take the reference interpolant's points,
    $x_i = \alpha_{t_i} y_i + \beta_{t_i}\varepsilon_i$ with $y_i, \varepsilon_i \sim \mathcal N(0, I)$,
    which do not depend on the policy. Points built from the policy's own actions (the
    alternative) feed the policy's errors back into where it is trained: measured on a quadratic
    critic with the exact velocity, they left the one-step policy under-dispersed after 3000
    updates (sliced $W_2$ 0.079 to the target, against 0.025 with reference points).

    **Arguments:** `interpolant`; `average_velocity` $u_\theta$ `(t, s, x, cond) -> u`;
    `q_function` `(cond, action) -> Q`; `cond` per-sample states batched along axis 0, or `None`;
    `key`; `shape` `(batch, action_dim)`; `temperature` $\lambda$, `num_samples` $K$; the MeanFlow
    settings as in [`meanflow_loss`][interpolant_rl.objectives.meanflow_loss] (but $p = 0$ by
    default: the adaptive weight $1/(e + \epsilon)$ down-weights large residuals, which biases a
    fit to noisy Monte-Carlo targets); `weights` per sample.

    `key` is split as `noise_key, time_key, equal_key, estimate_key = jax.random.split(key, 4)`;
    `noise_key` draws $(y, \varepsilon)$ as `jax.random.normal(noise_key, (2, batch, dim))`, and
    `estimate_key` is split into one key per point.

    **Returns:** the scalar loss.
    """
    if temperature <= 0 or num_samples < 1:
        raise ValueError(
            f"som_loss needs temperature > 0 and num_samples >= 1, got {temperature}, {num_samples}"
        )
    batch, dim = shape
    noise_key, time_key, equal_key, estimate_key = jr.split(key, 4)
    t, s, importance = meanflow_time_pairs(
        time_sampler, time_key, equal_key, batch, equal_time_fraction
    )
    reference, noise = jr.normal(noise_key, (2, batch, dim), dtype=t.dtype)
    x_t = jax.vmap(interpolant.interpolate)(noise, reference, t)

    def estimate(x, t, c, k):
        return boltzmann_velocity(
            interpolant,
            q_function,
            x,
            t,
            c,
            k,
            temperature=temperature,
            num_samples=num_samples,
        )

    cond_axis = None if cond is None else 0
    velocity = jax.vmap(estimate, in_axes=(0, 0, cond_axis, 0))(
        x_t, t, cond, jr.split(estimate_key, batch)
    )
    return meanflow_regression_loss(
        average_velocity,
        x_t,
        velocity,
        t,
        s,
        cond,
        adaptive_weight_power=adaptive_weight_power,
        adaptive_weight_eps=adaptive_weight_eps,
        weights=weights,
        importance=importance,
    )
