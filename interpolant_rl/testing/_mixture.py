r"""Gaussian mixtures with closed-form interpolant marginals, velocity, denoiser, score and tilt."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, NestedArrayLike, Scalar, ScalarLike, Vector
from .._interpolant import AbstractInterpolant


def _gaussian_log_probs(means, covs, x):
    """log N(x; m_k, C_k) for every component k."""

    def one(mean, cov):
        chol = jnp.linalg.cholesky(cov)
        z = jax.scipy.linalg.solve_triangular(chol, x - mean, lower=True)
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
        return -0.5 * (z @ z + log_det + x.shape[-1] * jnp.log(2 * jnp.pi))

    return jax.vmap(one)(means, covs)


class GaussianMixture(eqx.Module):
    r"""$p(x) = \sum_k w_k\,\mathcal N(x; m_k, C_k)$ in $d$ dimensions.

    Under an interpolant with $x_0 \sim \mathcal N(0, I)$ and $x_1 \sim p$, the marginal at time
    $t$ is again a mixture, $p_t = \sum_k w_k \mathcal N(\alpha m_k, S_k)$ with
    $S_k = \alpha^2 C_k + \beta^2 I$, and the posterior means are exact:

    $$\hat x_1 = \sum_k r_k\big(m_k + \alpha C_k S_k^{-1}(x - \alpha m_k)\big),\qquad
      \hat x_0 = \sum_k r_k\,\beta S_k^{-1}(x - \alpha m_k),$$

    with responsibilities $r_k(x) \propto w_k \mathcal N(x; \alpha m_k, S_k)$; the score is
    $-\hat x_0/\beta = -\sum_k r_k S_k^{-1}(x - \alpha m_k)$ and the velocity
    $\dot\alpha\hat x_1 + \dot\beta\hat x_0$. These formulas are finite at $t = 0$ and $t = 1$.

    **Fields:** `weights` `(K,)`, `means` `(K, d)`, `covs` `(K, d, d)` (positive definite).
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    covs: Float[Array, "K d d"]

    def __init__(self, weights: NestedArrayLike, means: NestedArrayLike, covs: NestedArrayLike):
        weights = jnp.asarray(weights, dtype=float)
        means = jnp.asarray(means, dtype=float)
        covs = jnp.asarray(covs, dtype=float)
        if weights.ndim != 1 or means.ndim != 2 or covs.ndim != 3:
            raise ValueError(
                "GaussianMixture needs weights (K,), means (K, d), covs (K, d, d); got "
                f"{weights.shape}, {means.shape}, {covs.shape}"
            )
        k, d = means.shape
        if weights.shape[0] != k or covs.shape != (k, d, d):
            raise ValueError(
                f"GaussianMixture shapes disagree: weights {weights.shape}, means {means.shape}, "
                f"covs {covs.shape}"
            )
        if not any(isinstance(a, jax.core.Tracer) for a in (weights, means, covs)):
            w = np.asarray(weights)
            if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"GaussianMixture weights must be >= 0 and not all 0: {w}")
            c = np.asarray(covs)
            if not np.allclose(c, np.swapaxes(c, -1, -2), atol=1e-8):
                raise ValueError("GaussianMixture covariances must be symmetric")
            if np.min(np.linalg.eigvalsh(c)) <= 0:
                raise ValueError("GaussianMixture covariances must be positive definite")
            if not np.all(np.isfinite(np.asarray(means))):
                raise ValueError("GaussianMixture means must be finite")
        self.weights = weights / jnp.sum(weights)
        self.means = means
        self.covs = covs

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def mean(self) -> Vector:
        r"""$\sum_k w_k m_k$."""
        return self.weights @ self.means

    def covariance(self) -> Float[Array, "d d"]:
        r"""$\sum_k w_k (C_k + m_k m_k^\top) - \mu\mu^\top$."""
        mu = self.mean()
        second = jnp.einsum("k,kij->ij", self.weights, self.covs) + jnp.einsum(
            "k,ki,kj->ij", self.weights, self.means, self.means
        )
        return second - jnp.outer(mu, mu)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n d"]:
        r"""`n` independent samples."""
        component_key, noise_key = jr.split(key)
        components = jr.choice(component_key, self.weights.shape[0], (n,), p=self.weights)
        chol = jnp.linalg.cholesky(self.covs)
        noise = jr.normal(noise_key, (n, self.dim))
        return self.means[components] + jnp.einsum("nij,nj->ni", chol[components], noise)

    def log_prob(self, x: Vector) -> Scalar:
        r"""$\log p(x)$ for one point."""
        return jax.nn.logsumexp(jnp.log(self.weights) + self._component_log_probs(x))

    def _component_log_probs(self, x: Vector) -> Float[Array, " K"]:
        return _gaussian_log_probs(self.means, self.covs, x)

    def marginal(self, interpolant: AbstractInterpolant, t: ScalarLike) -> "GaussianMixture":
        r"""The law of $x_t = \alpha x_1 + \beta x_0$: weights $w_k$, means $\alpha m_k$,
        covariances $\alpha^2 C_k + \beta^2 I$."""
        alpha, beta = interpolant.alpha(t), interpolant.beta(t)
        covs = alpha**2 * self.covs + beta**2 * jnp.eye(self.dim)
        return GaussianMixture(self.weights, alpha * self.means, covs)

    def _posterior(self, interpolant, t, x):
        alpha, beta = interpolant.alpha(t), interpolant.beta(t)
        marginal_covs = alpha**2 * self.covs + beta**2 * jnp.eye(self.dim)
        log_r = jnp.log(self.weights) + _gaussian_log_probs(alpha * self.means, marginal_covs, x)
        responsibilities = jax.nn.softmax(log_r)
        # S_k^{-1}(x - alpha m_k) for every component.
        whitened = jax.vmap(jnp.linalg.solve)(marginal_covs, x[None, :] - alpha * self.means)
        return responsibilities, whitened, alpha, beta

    def denoiser(self, interpolant: AbstractInterpolant, t: ScalarLike, x: Vector) -> Vector:
        r"""$\hat x_1(x, t) = \mathbb E[x_1 \mid x_t = x]$."""
        r, whitened, alpha, _ = self._posterior(interpolant, t, x)
        component = self.means + alpha * jnp.einsum("kij,kj->ki", self.covs, whitened)
        return r @ component

    def noise_posterior_mean(
        self, interpolant: AbstractInterpolant, t: ScalarLike, x: Vector
    ) -> Vector:
        r"""$\hat x_0(x, t) = \mathbb E[x_0 \mid x_t = x]$."""
        r, whitened, _, beta = self._posterior(interpolant, t, x)
        return beta * (r @ whitened)

    def score(self, interpolant: AbstractInterpolant, t: ScalarLike, x: Vector) -> Vector:
        r"""$\nabla_x \log p_t(x)$."""
        r, whitened, _, _ = self._posterior(interpolant, t, x)
        return -(r @ whitened)

    def velocity(self, interpolant: AbstractInterpolant, t: ScalarLike, x: Vector) -> Vector:
        r"""The marginal velocity $v(x, t) = \dot\alpha\hat x_1 + \dot\beta\hat x_0$."""
        return interpolant.alpha_dot(t) * self.denoiser(interpolant, t, x) + interpolant.beta_dot(
            t
        ) * self.noise_posterior_mean(interpolant, t, x)

    def velocity_field(self, interpolant: AbstractInterpolant) -> "ExactVelocity":
        r"""The exact velocity as a field `(t, x, cond) -> v` for the processes."""
        return ExactVelocity(self, interpolant)

    def tilt(self, A: NestedArrayLike, b: NestedArrayLike, tau: ScalarLike) -> "GaussianMixture":
        r"""The exact tilt $\pi^*(a) \propto p(a)\exp(\tau Q(a))$ by the quadratic critic
        $Q(a) = -\tfrac12 a^\top A a + b^\top a$ at inverse temperature $\tau \ge 0$.

        Each component becomes $\mathcal N(m_k', C_k')$ with $C_k'^{-1} = C_k^{-1} + \tau A$,
        $m_k' = C_k'(C_k^{-1} m_k + \tau b)$, and its weight is multiplied by
        $\int \mathcal N(a; m_k, C_k)\,e^{\tau Q(a)}\mathrm da
         = \sqrt{|C_k'|/|C_k|}\,\exp\big(\tfrac12 m_k'^\top C_k'^{-1} m_k' - \tfrac12 m_k^\top C_k^{-1} m_k\big)$.
        Requires every $C_k^{-1} + \tau A$ to be positive definite (else the tilt is not
        normalisable); raises `ValueError` otherwise."""
        A = jnp.asarray(A, dtype=float)
        b = jnp.asarray(b, dtype=float)
        tau = jnp.asarray(tau, dtype=float)
        d = self.dim
        if A.shape != (d, d) or b.shape != (d,):
            raise ValueError(f"tilt needs A of shape {(d, d)} and b of shape {(d,)}")
        precisions = jnp.linalg.inv(self.covs)
        new_precisions = precisions + tau * 0.5 * (A + A.T)[None]
        if not isinstance(new_precisions, jax.core.Tracer):
            if float(tau) < 0:
                raise ValueError(f"tilt needs tau >= 0, got {float(tau)}")
            if np.min(np.linalg.eigvalsh(np.asarray(new_precisions))) <= 0:
                raise ValueError(
                    "tilt is not normalisable: C_k^{-1} + tau*A is not positive definite"
                )
        new_covs = jnp.linalg.inv(new_precisions)
        new_covs = 0.5 * (new_covs + jnp.swapaxes(new_covs, -1, -2))
        new_means = jnp.einsum(
            "kij,kj->ki", new_covs, jnp.einsum("kij,kj->ki", precisions, self.means) + tau * b
        )
        _, logdet_new = jnp.linalg.slogdet(new_covs)
        _, logdet_old = jnp.linalg.slogdet(self.covs)
        log_mass = (
            0.5 * (logdet_new - logdet_old)
            + 0.5 * jnp.einsum("ki,kij,kj->k", new_means, new_precisions, new_means)
            - 0.5 * jnp.einsum("ki,kij,kj->k", self.means, precisions, self.means)
        )
        weights = jax.nn.softmax(jnp.log(self.weights) + log_mass)
        return GaussianMixture(weights, new_means, new_covs)


class ExactVelocity(eqx.Module):
    r"""The exact marginal velocity of a [`GaussianMixture`][interpolant_rl.testing.GaussianMixture]
    under an interpolant, as a velocity field `(t, x, cond) -> v` (`cond` is ignored)."""

    mixture: GaussianMixture
    interpolant: AbstractInterpolant

    def __call__(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        del cond
        return self.mixture.velocity(self.interpolant, t, x)
