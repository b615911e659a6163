r"""A known critic for exact-tilt problems."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._custom_types import NestedArrayLike


class QuadraticCritic(eqx.Module):
    r"""The quadratic critic $Q(s, a) = -\tfrac12 a^\top A a + b^\top a$ (independent of the
    state), whose tilt of a Gaussian mixture is exact:
    [`GaussianMixture.tilt(A, b, tau)`][interpolant_rl.testing.GaussianMixture.tilt].

    Called like a critic ensemble of one member: `(cond, action) -> values` of shape `(1,)`, so
    it drops into [`interpolant_rl.agents.FixedCritic`][].

    **Fields:** `A` `(d, d)`, `b` `(d,)`.
    """

    A: Float[Array, "d d"]
    b: Float[Array, " d"]

    def __init__(self, A: NestedArrayLike, b: NestedArrayLike):
        A = jnp.asarray(A, dtype=float)
        b = jnp.asarray(b, dtype=float)
        if b.ndim != 1 or A.shape != (b.shape[0], b.shape[0]):
            raise ValueError(
                f"QuadraticCritic needs A (d, d) and b (d,), got {A.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(np.asarray(A))) and np.all(np.isfinite(np.asarray(b)))):
            raise ValueError("QuadraticCritic needs finite A and b")
        self.A, self.b = A, b

    def __call__(self, cond, action: Float[Array, " d"]) -> Float[Array, " 1"]:
        del cond
        value = -0.5 * action @ self.A @ action + self.b @ action
        return jnp.reshape(value, (1,))
