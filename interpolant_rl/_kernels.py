r"""Characteristic kernels and maximum mean discrepancy (MMD) estimators."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._custom_types import Scalar


Samples = Float[Array, "n dim"]


class AbstractKernel(eqx.Module):
    r"""A positive-definite kernel $k(x, y)$ evaluated on all pairs of two sample sets."""

    @abc.abstractmethod
    def gram(self, x: Samples, y: Float[Array, "m dim"]) -> Float[Array, "n m"]:
        r"""The matrix $K_{ij} = k(x_i, y_j)$."""


def _squared_distances(x, y):
    # Direct differences (not the |x|^2 + |y|^2 - 2xy expansion) so that k(x, x) is exactly 1.
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


class RBFKernel(AbstractKernel):
    r"""$k(x, y) = \exp(-\|x - y\|^2 / (2\ell^2))$ with bandwidth $\ell$ (`bandwidth`)."""

    bandwidth: float | Float[Array, ""] = 1.0

    def gram(self, x: Samples, y: Float[Array, "m dim"]) -> Float[Array, "n m"]:
        return jnp.exp(-_squared_distances(x, y) / (2.0 * self.bandwidth**2))


class LaplaceKernel(AbstractKernel):
    r"""$k(x, y) = \exp(-\|x - y\| / \ell)$ with bandwidth $\ell$ (`bandwidth`)."""

    bandwidth: float | Float[Array, ""] = 1.0

    def gram(self, x: Samples, y: Float[Array, "m dim"]) -> Float[Array, "n m"]:
        # sqrt(d^2 + eps) keeps the gradient finite at coincident points.
        distances = jnp.sqrt(_squared_distances(x, y) + 1e-12)
        return jnp.exp(-distances / self.bandwidth)


def mmd_squared(
    kernel: AbstractKernel, x: Samples, y: Float[Array, "m dim"], *, unbiased: bool = False
) -> Scalar:
    r"""Squared MMD between the samples `x` ($n$) and `y` ($m$).

    Biased V-statistic: $\frac1{n^2}\sum K_{xx} + \frac1{m^2}\sum K_{yy} - \frac2{nm}\sum K_{xy}$
    (always $\ge 0$). Unbiased U-statistic (`unbiased=True`): the within-sample sums exclude the
    diagonal and are divided by $n(n-1)$ and $m(m-1)$ (can be negative)."""
    kxx, kyy, kxy = kernel.gram(x, x), kernel.gram(y, y), kernel.gram(x, y)
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        if n < 2 or m < 2:
            raise ValueError("the unbiased MMD estimator needs at least 2 samples per set")
        within_x = (jnp.sum(kxx) - jnp.sum(jnp.diag(kxx))) / (n * (n - 1))
        within_y = (jnp.sum(kyy) - jnp.sum(jnp.diag(kyy))) / (m * (m - 1))
    else:
        within_x = jnp.mean(kxx)
        within_y = jnp.mean(kyy)
    return within_x + within_y - 2.0 * jnp.mean(kxy)


def median_distance(samples: Samples) -> Scalar:
    r"""The median heuristic: $\operatorname{median}\{\|z_a - z_b\| : a < b\}$ over the
    $n(n-1)/2$ distinct pairs of `samples` ($n \ge 2$), under stop-gradient (a bandwidth chosen
    from the data, not a quantity to optimise: no gradient flows through it).

    **Arguments:** `samples`, shape `(n, dim)`.

    **Returns:** the median pairwise Euclidean distance (a scalar $\ge 0$).
    """
    n = samples.shape[0]
    if n < 2:
        raise ValueError("the median heuristic needs at least 2 samples")
    rows, cols = jnp.triu_indices(n, 1)
    squared = _squared_distances(samples, samples)[rows, cols]
    # the median of the squared distances, then the root: same value, no sqrt at 0
    return jnp.sqrt(jnp.median(jax.lax.stop_gradient(squared)))
