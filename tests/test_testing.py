"""interpolant_rl.testing: mixture moments and densities, the exact tilt, MMD estimators and the
statistical helpers the property tests rely on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats

import interpolant_rl as ir
from interpolant_rl.testing import (
    GaussianMixture,
    mmd_two_sample_threshold,
    moment_errors,
    strategies as irs,
)


@given(irs.gaussian_mixtures(max_dim=3), st.integers(0, 2**20))
def test_samples_and_density(mixture, seed):
    samples = mixture.sample(jax.random.key(seed), 8192)
    assert moment_errors(samples, mixture.mean(), mixture.covariance()).max_z() < 4.9
    x = np.asarray(samples[:5], dtype=np.float64)
    expected = np.log(
        sum(
            float(w) * stats.multivariate_normal(np.asarray(m), np.asarray(c)).pdf(x)
            for w, m, c in zip(mixture.weights, mixture.means, mixture.covs, strict=True)
        )
    )
    got = np.asarray(jax.vmap(mixture.log_prob)(samples[:5]))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_marginal_endpoints():
    mixture = GaussianMixture([1.0, 3.0], [[0.0], [2.0]], [[[0.5]], [[0.2]]])
    interp = ir.TrigonometricInterpolant()
    at_one = mixture.marginal(interp, 1.0)
    np.testing.assert_allclose(at_one.means, mixture.means, atol=1e-6)
    np.testing.assert_allclose(at_one.covs, mixture.covs, atol=1e-6)
    at_zero = mixture.marginal(interp, 0.0)
    np.testing.assert_allclose(at_zero.covs, np.ones((2, 1, 1)), atol=1e-6)
    np.testing.assert_allclose(mixture.weights, [0.25, 0.75])


@pytest.mark.parametrize("tau", [0.0, 0.5, 3.0])
def test_tilt_matches_numerical_integration_1d(tau):
    mixture = GaussianMixture([0.5, 0.5], [[-1.0], [1.5]], [[[0.3]], [[0.2]]])
    A, b = np.array([[0.4]]), np.array([1.0])
    tilted = mixture.tilt(A, b, tau)
    grid = np.linspace(-8, 8, 40001)
    log_base = np.asarray(jax.vmap(mixture.log_prob)(jnp.asarray(grid[:, None])), dtype=np.float64)
    log_unnormalised = log_base + tau * (-0.5 * 0.4 * grid**2 + grid)
    density = np.exp(log_unnormalised - log_unnormalised.max())
    density /= np.trapezoid(density, grid)
    got = np.exp(
        np.asarray(jax.vmap(tilted.log_prob)(jnp.asarray(grid[:, None])), dtype=np.float64)
    )
    np.testing.assert_allclose(got, density, atol=2e-4 * density.max())
    mean = np.trapezoid(grid * density, grid)
    assert float(tilted.mean()[0]) == pytest.approx(mean, abs=1e-3)


def test_tilt_matches_numerical_integration_2d():
    mixture = GaussianMixture(
        [0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [[[0.3, 0.1], [0.1, 0.4]], [[0.2, 0.0], [0.0, 0.5]]]
    )
    A = np.array([[1.0, 0.3], [0.3, -0.5]])  # indefinite critic curvature, still normalisable
    b = np.array([0.5, -1.0])
    tilted = mixture.tilt(A, b, 1.0)
    g = np.linspace(-6, 6, 601)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    q = -0.5 * np.einsum("ni,ij,nj->n", points, A, points) + points @ b
    log_u = np.asarray(jax.vmap(mixture.log_prob)(jnp.asarray(points)), dtype=np.float64) + q
    density = np.exp(log_u - log_u.max())
    cell = (g[1] - g[0]) ** 2
    density /= density.sum() * cell
    numerical_mean = (points * density[:, None]).sum(0) * cell
    np.testing.assert_allclose(tilted.mean(), numerical_mean, atol=2e-3)
    got = np.exp(np.asarray(jax.vmap(tilted.log_prob)(jnp.asarray(points)), dtype=np.float64))
    np.testing.assert_allclose(got, density, atol=1e-3 * density.max())


def test_tilt_rejects_impossible_requests():
    mixture = GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    with pytest.raises(ValueError, match="not normalisable"):
        mixture.tilt([[-2.0]], [0.0], 1.0)
    with pytest.raises(ValueError, match="tau"):
        mixture.tilt([[1.0]], [0.0], -1.0)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([1.0], [[0.0]], [[[-1.0]]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([-1.0, 2.0], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="shapes"):
        GaussianMixture([1.0, 1.0], [[0.0]], [[[1.0]]])


@pytest.mark.parametrize("kernel", [ir.RBFKernel(1.0), ir.LaplaceKernel(1.0)])
def test_mmd_estimators(kernel):
    key_x, key_y, key_z = jax.random.split(jax.random.key(0), 3)
    n = 2000
    x = jax.random.normal(key_x, (n, 2))
    y = jax.random.normal(key_y, (n, 2))
    shifted = jax.random.normal(key_z, (n, 2)) + 0.5
    assert float(ir.mmd_squared(kernel, x, x)) == pytest.approx(0.0, abs=1e-6)
    # The U-statistic is unbiased: under H0 it fluctuates around 0 (std ~ 1/n); the V-statistic
    # has a positive bias of about (1 - E k(x, x')) * 2/n.
    unbiased = float(ir.mmd_squared(kernel, x, y, unbiased=True))
    biased = float(ir.mmd_squared(kernel, x, y))
    assert abs(unbiased) < 10 / n
    assert biased > unbiased
    assert float(ir.mmd_squared(kernel, x, shifted)) > mmd_two_sample_threshold(n)
    assert biased < mmd_two_sample_threshold(n)
    # Gradients are finite even at coincident points (Laplace kernel at distance 0).
    grad = jax.grad(lambda z: ir.mmd_squared(kernel, z, z[::-1]))(x[:10])
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_moment_errors_detect_a_shift():
    samples = np.random.default_rng(0).normal(size=(4000, 2))
    assert moment_errors(samples, np.zeros(2), np.eye(2)).max_z() < 4.5
    assert moment_errors(samples + 0.2, np.zeros(2), np.eye(2)).max_z() > 8
