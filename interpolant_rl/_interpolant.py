r"""Interpolants $x_t = \alpha(t) x_1 + \beta(t) x_0$ and the conversions between their predictions.

Convention (everywhere in the package): $t = 0$ is noise $x_0 \sim \mathcal N(0, I)$ and $t = 1$ is
data $x_1$.
"""

import abc

import equinox as eqx
import jax.numpy as jnp

from ._custom_types import Scalar, ScalarLike, Vector


class AbstractInterpolant(eqx.Module):
    r"""An interpolant $x_t = \alpha(t)\,x_1 + \beta(t)\,x_0$ between noise $x_0$ and data $x_1$.

    Subclasses define $\alpha$, $\beta$ and their time derivatives, with
    $\alpha(0) = 0,\ \alpha(1) = 1,\ \beta(0) = 1,\ \beta(1) = 0$. Everything else (targets,
    conversions between velocity, denoiser, noise prediction and score, the DDIM jump) follows
    from these four functions.

    With $\Delta = \alpha\dot\beta - \beta\dot\alpha$ (non-zero for a valid interpolant) and the
    velocity $v = \mathbb E[\dot\alpha x_1 + \dot\beta x_0 \mid x_t = x]$:

    $$\hat x_1 = \frac{\dot\beta x - \beta v}{\Delta},\qquad
      \hat x_0 = \frac{\alpha v - \dot\alpha x}{\Delta},\qquad s = -\hat x_0/\beta.$$
    """

    @abc.abstractmethod
    def alpha(self, t: ScalarLike) -> Scalar:
        r"""Coefficient $\alpha(t)$ of the data $x_1$."""

    @abc.abstractmethod
    def beta(self, t: ScalarLike) -> Scalar:
        r"""Coefficient $\beta(t)$ of the noise $x_0$."""

    @abc.abstractmethod
    def alpha_dot(self, t: ScalarLike) -> Scalar:
        r"""Time derivative $\dot\alpha(t)$."""

    @abc.abstractmethod
    def beta_dot(self, t: ScalarLike) -> Scalar:
        r"""Time derivative $\dot\beta(t)$."""

    def wronskian(self, t: ScalarLike) -> Scalar:
        r"""$\Delta(t) = \alpha\dot\beta - \beta\dot\alpha$, the determinant of the map
        $(\hat x_1, \hat x_0) \mapsto (x, v)$; never zero for a valid interpolant."""
        return self.alpha(t) * self.beta_dot(t) - self.beta(t) * self.alpha_dot(t)

    def interpolate(self, x0: Vector, x1: Vector, t: ScalarLike) -> Vector:
        r"""$x_t = \alpha(t)\,x_1 + \beta(t)\,x_0$."""
        return self.alpha(t) * x1 + self.beta(t) * x0

    def velocity_target(self, x0: Vector, x1: Vector, t: ScalarLike) -> Vector:
        r"""Conditional velocity $\dot\alpha(t)\,x_1 + \dot\beta(t)\,x_0$, the flow-matching
        regression target whose conditional mean given $x_t$ is the marginal velocity."""
        return self.alpha_dot(t) * x1 + self.beta_dot(t) * x0

    def denoiser_from_velocity(self, x: Vector, v: Vector, t: ScalarLike) -> Vector:
        r"""Denoiser $\hat x_1 = \mathbb E[x_1 \mid x_t = x] = (\dot\beta x - \beta v)/\Delta$."""
        return (self.beta_dot(t) * x - self.beta(t) * v) / self.wronskian(t)

    def noise_from_velocity(self, x: Vector, v: Vector, t: ScalarLike) -> Vector:
        r"""Noise prediction $\hat x_0 = \mathbb E[x_0 \mid x_t = x] = (\alpha v - \dot\alpha x)/\Delta$."""
        return (self.alpha(t) * v - self.alpha_dot(t) * x) / self.wronskian(t)

    def score_from_velocity(self, x: Vector, v: Vector, t: ScalarLike) -> Vector:
        r"""Score $\nabla_x \log p_t(x) = -\hat x_0/\beta$.

        Singular at $t = 1$ ($\beta = 0$): the formula is $0/0$ there even though the score of a
        smooth data density is finite. Processes that need the score near $t=1$ document how they
        handle it (see [`interpolant_rl.MarginalPreservingSDE`][])."""
        return -self.noise_from_velocity(x, v, t) / self.beta(t)

    def velocity_from_score(self, x: Vector, score: Vector, t: ScalarLike) -> Vector:
        r"""Velocity from the score: $v = \frac{\dot\alpha}{\alpha} x - \frac{\beta\Delta}{\alpha} s$.

        Singular at $t = 0$ ($\alpha = 0$), where the score carries no information about the data."""
        alpha = self.alpha(t)
        return (self.alpha_dot(t) * x - self.beta(t) * self.wronskian(t) * score) / alpha

    def denoiser_from_noise(self, x: Vector, x0_hat: Vector, t: ScalarLike) -> Vector:
        r"""Denoiser from a noise prediction (an $\varepsilon$-prediction network, whose
        $\hat\varepsilon$ is $\hat x_0$ here): $\hat x_1 = (x - \beta\hat x_0)/\alpha$.

        Singular where $\alpha = 0$ ($t = 0$ for the linear and trigonometric interpolants; never
        for [`interpolant_rl.VariancePreservingInterpolant`][])."""
        return (x - self.beta(t) * x0_hat) / self.alpha(t)

    def velocity_from_denoiser(self, x: Vector, x1_hat: Vector, t: ScalarLike) -> Vector:
        r"""Velocity from the denoiser: $v = \dot\alpha\hat x_1 + \dot\beta\hat x_0$ with
        $\hat x_0 = (x - \alpha\hat x_1)/\beta$. Singular at $t = 1$."""
        x0_hat = (x - self.alpha(t) * x1_hat) / self.beta(t)
        return self.alpha_dot(t) * x1_hat + self.beta_dot(t) * x0_hat

    def ddim(self, x_t: Vector, x1_hat: Vector, t: ScalarLike, s: ScalarLike) -> Vector:
        r"""Deterministic jump from time $t$ to time $s$ given a prediction $\hat x_1$:

        $$\mathrm{DDIM}_{t\to s}(x_t, \hat x_1) = \alpha_s \hat x_1
          + \beta_s\,\frac{x_t - \alpha_t \hat x_1}{\beta_t}.$$

        It keeps the implied noise $\hat x_0 = (x_t - \alpha_t\hat x_1)/\beta_t$ and re-interpolates;
        with the exact denoiser and $s \to t$ it follows the probability-flow ODE, and it maps
        samples of $p_t$ to samples of $p_s$ whenever $x_1$ is a deterministic function of $x_t$."""
        x0_hat = (x_t - self.alpha(t) * x1_hat) / self.beta(t)
        return self.alpha(s) * x1_hat + self.beta(s) * x0_hat


class LinearInterpolant(AbstractInterpolant):
    r"""Rectified-flow interpolant $\alpha(t) = t$, $\beta(t) = 1 - t$ ($\Delta = -1$).

    Then $\hat x_1 = x + (1-t)v$, $\hat x_0 = x - tv$, $s = (tv - x)/(1 - t)$.
    """

    def alpha(self, t: ScalarLike) -> Scalar:
        return jnp.asarray(t, dtype=float)

    def beta(self, t: ScalarLike) -> Scalar:
        return 1.0 - jnp.asarray(t, dtype=float)

    def alpha_dot(self, t: ScalarLike) -> Scalar:
        return jnp.ones_like(jnp.asarray(t, dtype=float))

    def beta_dot(self, t: ScalarLike) -> Scalar:
        return -jnp.ones_like(jnp.asarray(t, dtype=float))


class TrigonometricInterpolant(AbstractInterpolant):
    r"""Variance-preserving interpolant $\alpha(t) = \sin(\pi t/2)$, $\beta(t) = \cos(\pi t/2)$
    ($\alpha^2 + \beta^2 = 1$, $\Delta = -\pi/2$)."""

    def alpha(self, t: ScalarLike) -> Scalar:
        return jnp.sin(0.5 * jnp.pi * jnp.asarray(t, dtype=float))

    def beta(self, t: ScalarLike) -> Scalar:
        return jnp.cos(0.5 * jnp.pi * jnp.asarray(t, dtype=float))

    def alpha_dot(self, t: ScalarLike) -> Scalar:
        return 0.5 * jnp.pi * jnp.cos(0.5 * jnp.pi * jnp.asarray(t, dtype=float))

    def beta_dot(self, t: ScalarLike) -> Scalar:
        return -0.5 * jnp.pi * jnp.sin(0.5 * jnp.pi * jnp.asarray(t, dtype=float))


class VariancePreservingInterpolant(AbstractInterpolant):
    r"""The variance-preserving schedule of DDPM / the VP-SDE, in this library's time direction
    ($t = 1$ data, $t = 0$ noise; the diffusion time is $r = 1 - t$).

    With the linear noise rate $b(r) = b_{\min} + r\,(b_{\max} - b_{\min})$ and its integral
    $B(r) = \int_0^r b = b_{\min} r + \tfrac12 (b_{\max} - b_{\min}) r^2$,

    $$\alpha(t) = \exp\big(-\tfrac12 B(1 - t)\big),\qquad \beta(t) = \sqrt{1 - \alpha(t)^2},$$

    $$\dot\alpha = \tfrac12\,b(1 - t)\,\alpha,\qquad
      \dot\beta = -\frac{\alpha\dot\alpha}{\beta},\qquad
      \Delta = \alpha\dot\beta - \beta\dot\alpha = -\frac{\dot\alpha}{\beta}.$$

    On the uniform grid $t_k = 1 - k/T$ this is exactly the discrete DDPM "VP" schedule of $T$
    steps: $\bar\alpha_k = \prod_{i \le k}(1 - \beta_i) = e^{-B(k/T)} = \alpha(t_k)^2$.

    **The noise end is only approximately noise.** $\alpha(0) = e^{-(b_{\min} + b_{\max})/4}$
    ($\approx 0.080$ for the defaults) is not $0$, so the marginal at $t = 0$ is
    $\alpha(0)\,x_1 + \beta(0)\,x_0$, only approximately $\mathcal N(0, I)$; samplers start from
    $\mathcal N(0, I)$ all the same, as DDPM does. In exchange, the conversions that divide by
    $\alpha$ (denoiser from noise, velocity from score) are finite at $t = 0$.

    **The data end is singular.** $\beta(1) = 0$ with $\beta \approx \sqrt{b_{\min}(1 - t)}$ near
    $t = 1$, so $\dot\beta$ and $\Delta$ are infinite at $t = 1$ and the conversions through
    $\Delta$ are undefined exactly there (Euler steps and the DDPM sampler never evaluate at
    $t = 1$).

    **Fields:** `beta_min` $b_{\min} > 0$ (default `0.1`), `beta_max` $b_{\max} > 0$ (default
    `10.0`), the rate at the data and noise ends.
    """

    beta_min: float = 0.1
    beta_max: float = 10.0

    def __check_init__(self):
        if not (self.beta_min > 0 and self.beta_max > 0):
            raise ValueError(
                "VariancePreservingInterpolant needs beta_min > 0 and beta_max > 0, got "
                f"{self.beta_min} and {self.beta_max}"
            )

    def _integrated_rate(self, t: ScalarLike) -> Scalar:
        r = 1.0 - jnp.asarray(t, dtype=float)
        return self.beta_min * r + 0.5 * (self.beta_max - self.beta_min) * r**2

    def _rate(self, t: ScalarLike) -> Scalar:
        r = 1.0 - jnp.asarray(t, dtype=float)
        return self.beta_min + r * (self.beta_max - self.beta_min)

    def alpha(self, t: ScalarLike) -> Scalar:
        return jnp.exp(-0.5 * self._integrated_rate(t))

    def beta(self, t: ScalarLike) -> Scalar:
        # 1 - alpha^2 = -expm1(-B), accurate near the data end where B -> 0
        return jnp.sqrt(-jnp.expm1(-self._integrated_rate(t)))

    def alpha_dot(self, t: ScalarLike) -> Scalar:
        return 0.5 * self._rate(t) * self.alpha(t)

    def beta_dot(self, t: ScalarLike) -> Scalar:
        return -self.alpha(t) * self.alpha_dot(t) / self.beta(t)
