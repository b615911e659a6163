r"""Processes that transport $\mathcal N(0, I)$ at $t=0$ to the data at $t=1$ along an
interpolant's marginals, as Diffrax terms:

$$\mathrm dX_t = b(t, X_t)\,\mathrm dt + \sigma(t)\,\mathrm dB_t,\qquad
  b = v + \frac{\sigma^2}{2}\,s = v + \frac{\sigma^2}{2\beta}\cdot\frac{\alpha v - \dot\alpha x}{-\Delta}.$$
"""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx

from ._custom_types import Cond, Scalar, ScalarLike, Vector, VelocityField
from ._interpolant import AbstractInterpolant, LinearInterpolant
from ._schedule import AbstractNoiseSchedule, MemorylessNoise


class AbstractProcess(eqx.Module):
    r"""A process $\mathrm dX = b(t, X)\,\mathrm dt + \sigma(t)\,\mathrm dB$ on $t \in [0, 1]$ built
    from an interpolant and a velocity field `velocity(t, x, cond)`.

    `drift` and `diffusion` act on one unbatched sample; `terms` packages them as Diffrax terms so
    that any Diffrax solver can integrate them (see [`interpolant_rl.sample`][]).
    """

    interpolant: eqx.AbstractVar[AbstractInterpolant]
    velocity: eqx.AbstractVar[VelocityField]

    @abc.abstractmethod
    def drift(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        r"""Drift $b(t, x)$."""

    @abc.abstractmethod
    def diffusion(self, t: ScalarLike) -> Scalar:
        r"""Diffusion coefficient $\sigma(t)$ (the noise is $\sigma(t)\,I\,\mathrm dB$)."""

    @abc.abstractmethod
    def terms(self, brownian: diffrax.AbstractBrownianPath | None) -> diffrax.AbstractTerm:
        r"""Diffrax terms for this process (`brownian` is ignored by ODEs)."""


class ProbabilityFlowODE(AbstractProcess):
    r"""The probability-flow ODE $\dot x = v(t, x)$: the deterministic member of the family.

    **Fields:** `interpolant`, `velocity` (a callable `(t, x, cond) -> v`).
    """

    interpolant: AbstractInterpolant
    velocity: VelocityField

    def drift(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        return self.velocity(t, x, cond)

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.zeros_like(jnp.asarray(t, dtype=float))

    def terms(self, brownian: diffrax.AbstractBrownianPath | None = None) -> diffrax.AbstractTerm:
        del brownian
        return diffrax.ODETerm(self.drift)


class AbstractSDE(AbstractProcess):
    r"""A process with noise: its terms are `MultiTerm(ODETerm(b), ControlTerm(σ I, brownian))`.

    The noise is additive ($\sigma$ depends on $t$ only), so Itô and Stratonovich coincide and
    additive-noise solvers (`diffrax.SRA1`, `diffrax.ShARK`, ...) are valid as well as
    `diffrax.Euler` (Euler–Maruyama) and `diffrax.Heun`.
    """

    def _noise(self, t: ScalarLike, x: Vector, cond: Cond) -> lx.DiagonalLinearOperator:
        del cond
        return lx.DiagonalLinearOperator(jnp.full_like(x, self.diffusion(t)))

    def terms(self, brownian: diffrax.AbstractBrownianPath | None) -> diffrax.AbstractTerm:
        if brownian is None:
            raise ValueError(f"{type(self).__name__} is stochastic and needs a Brownian path")
        return diffrax.MultiTerm(
            diffrax.ODETerm(self.drift), diffrax.ControlTerm(self._noise, brownian)
        )


class MarginalPreservingSDE(AbstractSDE):
    r"""$\mathrm dX = [v + \tfrac{\sigma_t^2}{2} s]\,\mathrm dt + \sigma_t\,\mathrm dB$ for any
    noise schedule; it keeps the interpolant's marginals for every $\sigma \ge 0$.

    The score is obtained from the velocity, $s = -\hat x_0/\beta$, so the drift is
    $b = v - \frac{\sigma^2}{2\beta\Delta}(\alpha v - \dot\alpha x)$.

    **Singular endpoint $t=1$.** $\beta(1) = 0$ makes the formula $0/0$ (the score itself is finite
    for smooth data). The drift divides by $\max(\beta, \beta_{\min})$ with `beta_floor`
    $= \beta_{\min}$ (default $10^{-3}$). Euler–Maruyama never evaluates at $t = 1$; solvers whose
    last stage sits at $t=1$ (Heun, Tsit5-like) see the floored value there. A schedule with
    $\sigma^2/\beta$ bounded (e.g. [`interpolant_rl.MemorylessNoise`][]) never reaches the floor in
    a meaningful way; prefer [`interpolant_rl.MemorylessSDE`][] for the memoryless schedule, whose
    drift is written without the division.

    **Fields:** `interpolant`, `velocity`, `schedule`, `beta_floor`.
    """

    interpolant: AbstractInterpolant
    velocity: VelocityField
    schedule: AbstractNoiseSchedule
    beta_floor: float = 1e-3

    def drift(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        interp = self.interpolant
        v = self.velocity(t, x, cond)
        sigma = self.schedule.sigma(interp, t)
        noise_prediction = interp.noise_from_velocity(x, v, t)
        score = -noise_prediction / jnp.maximum(interp.beta(t), self.beta_floor)
        return v + 0.5 * sigma**2 * score

    def diffusion(self, t: ScalarLike) -> Scalar:
        return self.schedule.sigma(self.interpolant, t)


class MemorylessSDE(AbstractSDE):
    r"""The memoryless member of the family (adjoint matching's base process):

    $$b_\delta = v + \frac{\alpha v - \dot\alpha x}{\alpha + \delta},\qquad
      \sigma_\delta^2 = \frac{-2\beta\Delta}{\alpha + \delta}$$

    (linear interpolant, $\delta = 0$: $b = 2v - x/t$, $\sigma^2 = 2(1-t)/t$). This is exactly
    [`interpolant_rl.MarginalPreservingSDE`][] with [`interpolant_rl.MemorylessNoise`][]`(δ)`, written
    so that $\beta$ cancels: nothing is singular at $t = 1$.

    **Singular endpoint $t=0$.** With $\delta = 0$ the drift has $-\dot\alpha x/\alpha$ and $\sigma$ is
    infinite at $t = 0$, where every explicit solver starts. Our documented choice is the
    regularisation $\delta$ (`regularisation`, default `0.1`): for every $\delta > 0$ the
    process is still *exactly* marginal preserving (it is the schedule $\sigma_\delta$ of the same
    family), finite everywhere, and $\mathrm{Cov}(X_0, X_1) \to 0$ as $\delta \to 0$ (measured in
    the tests). Explicit solvers are stable for steps $h \lesssim 2\delta$ near $t=0$ (the drift's
    stiffness there is $\approx 1/\delta$): the default suits 10 steps; use a smaller $\delta$
    with more steps when closer independence of $X_0$ and $X_1$ matters.
    `regularisation=0.0` gives the exact memoryless SDE, usable only where nothing evaluates
    it at $t = 0$ (e.g. the reference discretisation [`interpolant_rl.QAMReferenceSDE`][]).

    **Fields:** `interpolant`, `velocity`, `regularisation` ($\delta \ge 0$).
    """

    interpolant: AbstractInterpolant
    velocity: VelocityField
    regularisation: float = 0.1

    def __check_init__(self):
        if not self.regularisation >= 0:
            raise ValueError(f"MemorylessSDE needs regularisation >= 0, got {self.regularisation}")

    def drift(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        interp = self.interpolant
        v = self.velocity(t, x, cond)
        return v + (interp.alpha(t) * v - interp.alpha_dot(t) * x) / (
            interp.alpha(t) + self.regularisation
        )

    def diffusion(self, t: ScalarLike) -> Scalar:
        return MemorylessNoise(self.regularisation).sigma(self.interpolant, t)


class QAMReferenceSDE(AbstractSDE):
    r"""The discretisation used by the QAM reference code, as a process for `diffrax.Euler` on the
    uniform grid of `num_steps` steps ($h = 1/T$, linear interpolant):

    - steps $i < T-1$: $x \leftarrow x + h\,(2 v_\theta(x, t_i) - x/(t_i + h)) + \sqrt h\,\sigma_i\,\xi_i$
      with $\sigma_i = \sqrt{2(1 - t_i + h)/(t_i + h)}$ (the singular terms use the shifted time);
    - the last step is a deterministic ODE step with the *base* velocity: $x \leftarrow x + h\,v_\beta(x, t_{T-1})$.

    It is meaningful only with `diffrax.Euler` on `num_steps` uniform steps (the last-step switch
    is keyed on $t \ge 1 - \tfrac32 h$). Its lean adjoint is
    `LeanAdjointODE(MemorylessSDE(LinearInterpolant(), base_velocity, regularisation=0.0))`
    solved with [`interpolant_rl.QAMReferenceEvaluation`][]; the tests check both against a plain
    hand-written loop.

    **Fields:** `velocity` (fine-tuned $v_\theta$), `base_velocity` ($v_\beta$), `num_steps` ($T$).
    """

    velocity: VelocityField
    base_velocity: VelocityField
    num_steps: int = eqx.field(static=True)
    interpolant: AbstractInterpolant = LinearInterpolant()

    def __check_init__(self):
        if self.num_steps < 1:
            raise ValueError(f"QAMReferenceSDE needs num_steps >= 1, got {self.num_steps}")
        if not isinstance(self.interpolant, LinearInterpolant):
            raise ValueError("QAMReferenceSDE is defined for the linear interpolant only")

    def _is_last_step(self, t: ScalarLike):
        h = 1.0 / self.num_steps
        return jnp.asarray(t) >= 1.0 - 1.5 * h

    def drift(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        h = 1.0 / self.num_steps

        def sde_drift(x):
            return 2.0 * self.velocity(t, x, cond) - x / (t + h)

        def base_ode(x):
            return self.base_velocity(t, x, cond)

        # A real branch (not `where`): only one network runs per step.
        return jax.lax.cond(self._is_last_step(t), base_ode, sde_drift, x)

    def shifted_sigma(self, t: ScalarLike) -> Scalar:
        r"""$\sigma_i = \sqrt{2(1 - t + h)/(t + h)}$ without the last-step switch: the scale the
        reference's adjoint-matching loss uses at every grid time, the last one included."""
        h = 1.0 / self.num_steps
        return jnp.sqrt(2.0 * (1.0 - t + h) / (t + h))

    def diffusion(self, t: ScalarLike) -> Scalar:
        return jnp.where(self._is_last_step(t), 0.0, self.shifted_sigma(t))
