r"""Monte-Carlo tolerances for comparing samples with a known distribution."""

import math
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike


class MomentErrors(NamedTuple):
    """Sample moments against exact ones, with Monte-Carlo standard errors."""

    mean_error: np.ndarray
    """Sample mean minus exact mean, `(d,)`."""
    mean_standard_error: np.ndarray
    """Standard error of each sample-mean coordinate, `(d,)`."""
    cov_error: np.ndarray
    """Sample covariance minus exact covariance, `(d, d)`."""
    cov_standard_error: np.ndarray
    """Standard error of each sample-covariance entry (from fourth moments), `(d, d)`."""

    def max_z(self) -> float:
        """The largest |error| / standard error over all mean and covariance entries."""
        z_mean = np.abs(self.mean_error) / self.mean_standard_error
        z_cov = np.abs(self.cov_error) / self.cov_standard_error
        return float(max(z_mean.max(), z_cov.max()))


def moment_errors(samples: ArrayLike, mean: ArrayLike, cov: ArrayLike) -> MomentErrors:
    r"""Compare the mean and covariance of `samples` `(n, d)` with exact `mean` and `cov`.

    Standard errors: $\sqrt{\Sigma_{ii}/n}$ for the mean and
    $\sqrt{(\mathbb E[(x_i-\mu_i)^2(x_j-\mu_j)^2] - \Sigma_{ij}^2)/n}$ for the covariance, with the
    fourth moment estimated from the samples about the exact mean."""
    x = np.asarray(samples, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    n = x.shape[0]
    centred = x - mean
    sample_cov = centred.T @ centred / n
    products = centred[:, :, None] * centred[:, None, :]
    fourth = np.mean(products**2, axis=0)
    cov_se = np.sqrt(np.maximum(fourth - cov**2, 1e-12) / n)
    return MomentErrors(
        mean_error=x.mean(axis=0) - mean,
        mean_standard_error=np.sqrt(np.diag(cov) / n),
        cov_error=sample_cov - cov,
        cov_standard_error=cov_se,
    )


def mmd_two_sample_threshold(n: int, level: float = 1e-3, kernel_bound: float = 1.0) -> float:
    r"""A distribution-free acceptance threshold for the *biased* squared MMD of two samples of
    size `n` each, at false-alarm probability `level`.

    Under $H_0$ (same distribution), for a kernel with $0 \le k \le K$,
    $\mathrm{MMD}_b < \sqrt{2K/n}\,\big(1 + \sqrt{2\log(1/\text{level})}\big)$ with probability at
    least $1 - \text{level}$ (Gretton et al., JMLR 2012, Theorem 7). Returns the square of that
    bound. It holds for every $n$, so a test using it can only fail when the distributions differ."""
    if n < 1 or not 0 < level < 1:
        raise ValueError("need n >= 1 and 0 < level < 1")
    bound = math.sqrt(2.0 * kernel_bound / n) * (1.0 + math.sqrt(2.0 * math.log(1.0 / level)))
    return bound**2


def sliced_wasserstein(
    x: ArrayLike, y: ArrayLike, *, num_projections: int = 256, seed: int = 0
) -> float:
    r"""The sliced 2-Wasserstein distance between two equal-sized samples `(n, d)`:

    $$\mathrm{SW}_2(x, y) = \Big(\frac1P\sum_{p=1}^P W_2^2\big(\theta_p^\top x, \theta_p^\top y\big)\Big)^{1/2},$$

    over $P$ = `num_projections` directions $\theta_p$ uniform on the sphere (drawn from `seed`);
    each one-dimensional $W_2^2$ is the mean squared difference of the sorted projections. In one
    dimension it is the plain $W_2$.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(
            f"sliced_wasserstein needs two samples of equal shape (n, d), got {x.shape}, {y.shape}"
        )
    directions = np.random.default_rng(seed).normal(size=(x.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    px = np.sort(x @ directions, axis=0)
    py = np.sort(y @ directions, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))
