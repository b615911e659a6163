r"""Fields built from other fields through an interpolant: a noise prediction seen as a denoiser,
score and velocity; a jump field with its boundary condition built in; a consistency function
with Karras' boundary parametrisation; a velocity guided by a critic."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._consistency import KarrasSchedule
from .._custom_types import (
    Cond,
    JumpField,
    NoiseField,
    Scalar,
    ScalarLike,
    TimeValue,
    Vector,
    VelocityField as VelocityFieldLike,
)
from .._interpolant import AbstractInterpolant


class NoisePrediction(eqx.Module):
    r"""A noise field seen through an interpolant: its denoiser, score and velocity.

    The velocity makes an $\varepsilon$-prediction network usable by every process of the library:
    `ProbabilityFlowODE(interpolant, NoisePrediction(interpolant, eps).velocity)` is the
    probability-flow ODE sampler (DDIM in the limit of many steps).

    **Fields:** `interpolant`, `noise_field` (a
    [`NoiseField`][interpolant_rl.objectives.NoiseField]).
    """

    interpolant: AbstractInterpolant
    noise_field: NoiseField

    def denoiser(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""$\hat x_1 = (x - \beta_t\hat\varepsilon)/\alpha_t$ (not clipped)."""
        return self.interpolant.denoiser_from_noise(x, self.noise_field(t, x, cond), t)

    def score(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""$s = -\hat\varepsilon/\beta_t$ (singular at $t = 1$)."""
        return -self.noise_field(t, x, cond) / self.interpolant.beta(t)

    def velocity(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""$v = \dot\alpha_t\hat x_1 + \dot\beta_t\hat\varepsilon$."""
        interp = self.interpolant
        noise = self.noise_field(t, x, cond)
        return interp.velocity_target(noise, interp.denoiser_from_noise(x, noise, t), t)


class PreconditionedJump(eqx.Module):
    r"""A jump field with the boundary condition built in (the EDM / inductive-moment-matching
    preconditioning, written for any interpolant):

    $$G(t, s, x, c) = c_{\text{skip}}(t)\,x + c_{\text{out}}(t)\,F(t, s, x, c),\qquad
      c_{\text{skip}} = \frac{\alpha_t\sigma_d^2}{\alpha_t^2\sigma_d^2 + \beta_t^2},\quad
      c_{\text{out}} = \frac{\beta_t\sigma_d}{\sqrt{\alpha_t^2\sigma_d^2 + \beta_t^2}},$$

    with $F$ the raw network. $c_{\text{skip}}\,x$ is $\mathbb E[x_1 \mid x_t = x]$ for data
    $\mathcal N(0, \sigma_d^2 I)$ and $c_{\text{out}}$ that posterior's standard deviation, so $F$
    predicts a unit-scale residual; at $t = 1$ ($\beta = 0$) $G = x$ whatever $F$: the jump from
    the data is the identity. Without it the jump to $s = 1$ is $\hat x_1 = F$ itself
    ($\beta_s = 0$ removes the DDIM skip term), nothing ties $F(t \to 1, 1, x)$ to $x$, and a
    self-distilled (stop-gradient) target admits the constant field — every jump lands on one
    point — as a zero-loss solution.

    **Fields:** `interpolant`, `network` (a [`JumpField`][interpolant_rl.objectives.JumpField]),
    `sigma_data` $\sigma_d > 0$ (the data scale per coordinate; EDM's 0.5 for actions in
    $[-1, 1]$).
    """

    interpolant: AbstractInterpolant
    network: JumpField
    sigma_data: float = 0.5

    def __call__(self, t: ScalarLike, s: ScalarLike, x: Vector, cond: Cond) -> Vector:
        alpha, beta = self.interpolant.alpha(t), self.interpolant.beta(t)
        variance = alpha**2 * self.sigma_data**2 + beta**2
        c_skip = alpha * self.sigma_data**2 / variance
        c_out = beta * self.sigma_data / jnp.sqrt(variance)
        return c_skip * x + c_out * self.network(t, s, x, cond)


class ConsistencyFunction(eqx.Module):
    r"""A consistency function with the boundary condition built in (Song et al. 2023, their
    Appendix C, on Karras et al.'s 2022 skip scalings), in the library's time
    ([`KarrasSchedule`][interpolant_rl.KarrasSchedule]: $\sigma(t)$ runs from $\sigma_{\max}$ at
    $t = 0$ to $\epsilon$ at $t = 1$):

    $$f_\theta(t, x, c) = c_{\text{skip}}(\sigma)\,x + c_{\text{out}}(\sigma)\,F_\theta(t, \tilde x, c),
      \qquad c_{\text{skip}} = \frac{\sigma_d^2}{(\sigma - \epsilon)^2 + \sigma_d^2},\quad
      c_{\text{out}} = \frac{\sigma_d\,(\sigma - \epsilon)}{\sqrt{\sigma_d^2 + \sigma^2}},
      \qquad \sigma = \sigma(t),$$

    with $F_\theta$ the raw network. At $t = 1$ ($\sigma = \epsilon$) $c_{\text{skip}} = 1$ and
    $c_{\text{out}} = 0$: $f_\theta(1, x, c) = x$ exactly, whatever the network (the boundary
    condition $f(x_\epsilon, \epsilon) = x_\epsilon$). The network reads the time $t \in [0, 1]$
    (not $\sigma$, nor Song et al.'s $\tfrac14\log\sigma$, nor Ding & Jin's sinusoidal embedding
    of $\sigma$) and, by default, the unscaled $\tilde x = x$, as Ding & Jin's code does
    ("no c_in"); `scale_input=True` feeds EDM's $\tilde x = x/\sqrt{\sigma^2 + \sigma_d^2}$
    (Song et al.'s $c_{\text{in}}$).

    **Fields:** `schedule` (a `KarrasSchedule`), `network` (any `(t, x, cond) -> output`
    field, e.g. a [`VelocityField`][interpolant_rl.nn.VelocityField] architecture),
    `sigma_data` $\sigma_d = 0.5$ (Song et al.; Ding & Jin's code), `scale_input` (static).
    """

    schedule: KarrasSchedule
    network: VelocityFieldLike
    sigma_data: float = 0.5
    scale_input: bool = eqx.field(static=True, default=False)

    def scalings(self, t: ScalarLike) -> tuple[Scalar, Scalar]:
        r"""$(c_{\text{skip}}, c_{\text{out}})$ at $\sigma(t)$."""
        sigma = self.schedule.sigma(t)
        excess = sigma - self.schedule.sigma_min
        c_skip = self.sigma_data**2 / (excess**2 + self.sigma_data**2)
        c_out = self.sigma_data * excess / jnp.sqrt(self.sigma_data**2 + sigma**2)
        return c_skip, c_out

    def __call__(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""**Returns:** $f_\theta(t, x, c)$, the predicted action, shape `(dim,)`."""
        c_skip, c_out = self.scalings(t)
        inputs = x
        if self.scale_input:
            inputs = x / jnp.sqrt(self.schedule.sigma(t) ** 2 + self.sigma_data**2)
        return c_skip * x + c_out * self.network(t, inputs, cond)


class GuidedVelocity(eqx.Module):
    r"""A velocity field guided by a (noise-conditioned) critic:

    $$\tilde v(u, x \mid s) = v_\beta(u, x \mid s)
      + \vartheta\,\tau\,c(u)\,\nabla_x Q_u(s, x),\qquad
      c(u) = -\frac{\beta_u\Delta_u}{\alpha_u}\ \Big(= \frac{1 - u}{u}\text{ for the linear
      interpolant}\Big),$$

    the velocity that the interpolant associates with the score of $p_u\,h_u^{\vartheta}$, where
    $\log h_u = \tau Q_u$. With $\vartheta = 1$ and
    $Q_u = \tfrac1\tau\log\mathbb E[e^{\tau Q} \mid x_u]$ its flow samples exactly
    $\pi_\beta\,e^{\tau Q}/Z$; $\vartheta$ scales the guiding score as in classifier guidance
    ($\vartheta = 0$ is the behaviour flow).

    **Derivation** (linear interpolant $x_u = u\,a + (1 - u)\,z$, $u = 0$ noise, $u = 1$ data).
    The velocity is $v = \mathbb E[a - z \mid x_u = x]$; with $\hat a = x + (1-u)v$, $\hat z = x - uv$
    and the score $\nabla\log p_u = -\hat z/(1-u)$,

    $$v(x, u) = \frac{x + (1 - u)\,\nabla_x \log p_u(x)}{u}.$$

    Tilting the data, $\tilde p_1(a) \propto p_1(a)\,e^{\tau Q(a)}$, tilts every marginal by
    $h_u(x) = \mathbb E[e^{\tau Q(a)} \mid x_u = x]$, so the tilted score is
    $\nabla\log p_u + \nabla\log h_u$ and, $v$ being affine in the score,

    $$\tilde v(x, u) = v(x, u) + \frac{1 - u}{u}\,\nabla_x \log h_u(x)
      = v(x, u) + \frac{1 - u}{u}\,\tau\,\nabla_x Q_u(x),\qquad
      Q_u(x) = \tfrac1\tau\log\mathbb E\big[e^{\tau Q(a)} \mid x_u = x\big].$$

    For a general interpolant $\alpha_u a + \beta_u z$ the factor $\frac{1-u}{u}$ is
    $-\beta_u\Delta_u/\alpha_u = \beta_u(\dot\alpha_u\beta_u/\alpha_u - \dot\beta_u)$ ($\sigma_u^2/2$ of
    the memoryless schedule). The QAM issue writes the guided velocity as
    $v_\beta + \vartheta\,((1-u)\tau\nabla Q + a)/u$: that is $\vartheta$ times the velocity *of the
    score* $\tau\nabla Q$ alone, affine offset $x/u$ included. Only the score part belongs to the
    tilt; the extra $\vartheta x/u$ is a radial expansion that scales every trajectory by
    $(1/u_0)^{\vartheta}$ between a start time $u_0$ and 1 (2.3 % for $\vartheta = 0.01$,
    $u_0 = 0.1$), with no counterpart in the derivation, so it is left out here.

    **The singularity at $u = 0$.** $c(u) \sim 1/u$; the exact guidance stays finite because
    $\nabla_x \log h_u = O(u)$ (at pure noise $x_u$ says nothing about $a$), but a clean critic
    evaluated at a noisy point has no such factor. The guidance is therefore switched off for
    $u <$ `start` (and $c$ evaluated at $\max(u,$ `start`$)$): with 10 Euler steps and the default
    `start = 0.05`, only the first step (at $u = 0$) is unguided, as in the QAM reference. The
    exact guidance loses an $O(\text{start})$ part of its shift.

    **Fields:**

    - `interpolant`: the flow's interpolant.
    - `velocity`: the behaviour field $v_\beta$ `(u, x, cond) -> v`.
    - `value`: $Q_u$ as `(u, x, cond) -> scalar` (a noise-conditioned critic, or a clean critic
      that ignores $u$); differentiated in $x$ only.
    - `tau`: the inverse temperature $\tau$ of the tilt.
    - `guidance`: the guidance scale $\vartheta$.
    - `start`: the flow time from which the guidance acts, in $(0, 1]$.
    """

    interpolant: AbstractInterpolant
    velocity: VelocityFieldLike
    value: TimeValue
    tau: ScalarLike
    guidance: ScalarLike
    start: ScalarLike = 0.05

    def __check_init__(self):
        if not isinstance(self.start, jax.core.Tracer) and not 0.0 < self.start <= 1.0:
            raise ValueError(f"GuidedVelocity needs 0 < start <= 1, got {self.start}")

    def coefficient(self, t: ScalarLike) -> Scalar:
        r"""$c(u)$ at $\max(u,$ `start`$)$ for $u \ge$ `start`, else 0."""
        u = jnp.maximum(t, self.start)
        interpolant = self.interpolant
        c = -interpolant.beta(u) * interpolant.wronskian(u) / interpolant.alpha(u)
        return jnp.where(t >= self.start, c, 0.0)

    def __call__(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""**Returns:** $\tilde v(t, x \mid \text{cond})$, shape `(dim,)`."""
        gradient = jax.grad(lambda y: self.value(t, y, cond))(x)
        scale = self.guidance * self.tau * self.coefficient(t)
        return self.velocity(t, x, cond) + scale * gradient
