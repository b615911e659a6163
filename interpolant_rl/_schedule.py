r"""Noise schedules $\sigma(t)$ for the marginal-preserving SDE family."""

import abc

import equinox as eqx
import jax.numpy as jnp

from ._custom_types import Scalar, ScalarLike
from ._interpolant import AbstractInterpolant


class AbstractNoiseSchedule(eqx.Module):
    r"""A diffusion coefficient $\sigma(t) \ge 0$ for
    $\mathrm dX = [v + \tfrac{\sigma_t^2}{2} s]\,\mathrm dt + \sigma_t\,\mathrm dB$.

    Any $\sigma$ keeps the interpolant's marginals; the schedule only changes the coupling between
    times. Subclass it and implement `sigma` to define your own (it may depend on the interpolant).
    """

    @abc.abstractmethod
    def sigma(self, interpolant: AbstractInterpolant, t: ScalarLike) -> Scalar:
        r"""$\sigma(t)$ for the given interpolant."""


class ZeroNoise(AbstractNoiseSchedule):
    r"""$\sigma \equiv 0$: the SDE is the probability-flow ODE."""

    def sigma(self, interpolant: AbstractInterpolant, t: ScalarLike) -> Scalar:
        return jnp.zeros_like(jnp.asarray(t, dtype=float))


class ConstantNoise(AbstractNoiseSchedule):
    r"""$\sigma \equiv$ `value`."""

    value: float

    def __check_init__(self):
        if not self.value >= 0:
            raise ValueError(f"ConstantNoise needs value >= 0, got {self.value}")

    def sigma(self, interpolant: AbstractInterpolant, t: ScalarLike) -> Scalar:
        return jnp.full_like(jnp.asarray(t, dtype=float), self.value)


class MemorylessNoise(AbstractNoiseSchedule):
    r"""The memoryless schedule, regularised at $t = 0$ by $\delta \ge 0$:

    $$\sigma_\delta^2(t) = \frac{-2\beta\Delta}{\alpha + \delta}
      \;\xrightarrow{\ \delta = 0\ }\; 2\beta\Big(\frac{\dot\alpha\beta}{\alpha} - \dot\beta\Big),$$

    (linear: $\sigma_\delta^2 = 2(1-t)/(t + \delta)$). For $\delta = 0$ the noise is infinite at
    $t = 0$, which makes $X_0$ and $X_1$ independent; every $\delta > 0$ is still exactly
    marginal preserving (it is just another member of the family) and finite everywhere, and
    $X_0, X_1$ become independent as $\delta \to 0$. See the "Singular endpoints" section of the
    conventions page.
    """

    regularisation: float = 0.0

    def __check_init__(self):
        if not self.regularisation >= 0:
            raise ValueError(
                f"MemorylessNoise needs regularisation >= 0, got {self.regularisation}"
            )

    def sigma(self, interpolant: AbstractInterpolant, t: ScalarLike) -> Scalar:
        sigma2 = (
            -2.0
            * interpolant.beta(t)
            * interpolant.wronskian(t)
            / (interpolant.alpha(t) + self.regularisation)
        )
        # Rounding can make sigma^2 a hair negative at t = 1 (beta = 0).
        return jnp.sqrt(jnp.maximum(sigma2, 0.0))
