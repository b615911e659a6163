"""Interpolants: boundary values, derivatives, conversions, DDIM jump, and agreement with the
closed-form Gaussian-mixture posterior quantities."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import interpolant_rl as ir
from interpolant_rl.testing import strategies as irs


INTERPOLANTS = [ir.LinearInterpolant(), ir.TrigonometricInterpolant()]
times = st.floats(0.02, 0.98)


@pytest.mark.parametrize("interp", INTERPOLANTS, ids=lambda i: type(i).__name__)
def test_boundary_values_and_derivatives(interp):
    assert float(interp.alpha(0.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(interp.alpha(1.0)) == pytest.approx(1.0)
    assert float(interp.beta(0.0)) == pytest.approx(1.0)
    assert float(interp.beta(1.0)) == pytest.approx(0.0, abs=1e-7)
    for t in np.linspace(0.0, 1.0, 7):
        assert float(interp.alpha_dot(t)) == pytest.approx(
            float(jax.grad(interp.alpha)(t)), rel=1e-5
        )
        assert float(interp.beta_dot(t)) == pytest.approx(float(jax.grad(interp.beta)(t)), abs=1e-5)
        assert float(interp.wronskian(t)) < 0


def test_linear_closed_forms():
    interp = ir.LinearInterpolant()
    x, v, t = jnp.array([0.3, -1.2]), jnp.array([1.0, 0.5]), 0.3
    np.testing.assert_allclose(interp.denoiser_from_velocity(x, v, t), x + (1 - t) * v, rtol=1e-6)
    np.testing.assert_allclose(interp.noise_from_velocity(x, v, t), x - t * v, rtol=1e-6)
    np.testing.assert_allclose(
        interp.score_from_velocity(x, v, t), (t * v - x) / (1 - t), rtol=1e-6
    )


@given(irs.interpolants(), times, times, st.integers(0, 2**31 - 1), st.integers(1, 4))
def test_conversions_round_trip(interp, t, s, seed, dim):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    x, v = jax.random.normal(k1, (dim,)), jax.random.normal(k2, (dim,))
    x1_hat = interp.denoiser_from_velocity(x, v, t)
    x0_hat = interp.noise_from_velocity(x, v, t)
    # (x1_hat, x0_hat) reproduce the point and the velocity.
    np.testing.assert_allclose(interp.interpolate(x0_hat, x1_hat, t), x, atol=1e-5)
    np.testing.assert_allclose(interp.velocity_target(x0_hat, x1_hat, t), v, atol=1e-4)
    score = interp.score_from_velocity(x, v, t)
    np.testing.assert_allclose(interp.velocity_from_score(x, score, t), v, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(interp.velocity_from_denoiser(x, x1_hat, t), v, atol=2e-4, rtol=1e-4)
    # DDIM: identity for s = t, exact re-interpolation when x1_hat is the true x1.
    np.testing.assert_allclose(interp.ddim(x, x1_hat, t, t), x, atol=1e-5)
    x0, x1 = jax.random.normal(k3, (2, dim))
    xt = interp.interpolate(x0, x1, t)
    np.testing.assert_allclose(
        interp.ddim(xt, x1, t, s), interp.interpolate(x0, x1, s), atol=1e-4, rtol=1e-4
    )
    np.testing.assert_allclose(interp.ddim(xt, x1, t, 1.0), x1, atol=1e-4)


@eqx.filter_jit
def _exact_quantities(mixture, interp, t, x):
    def log_p(t, x):
        return mixture.marginal(interp, t).log_prob(x)

    v = mixture.velocity(interp, t, x)
    autodiff_score = jax.grad(log_p, argnums=1)(t, x)
    divergence = jnp.trace(jax.jacfwd(lambda y: mixture.velocity(interp, t, y))(x))
    return dict(
        v=v,
        denoiser_from_v=interp.denoiser_from_velocity(x, v, t),
        denoiser=mixture.denoiser(interp, t, x),
        noise_from_v=interp.noise_from_velocity(x, v, t),
        noise=mixture.noise_posterior_mean(interp, t, x),
        score=mixture.score(interp, t, x),
        score_from_v=interp.score_from_velocity(x, v, t),
        autodiff_score=autodiff_score,
        dlogp_dt=jax.grad(log_p, argnums=0)(t, x),
        divergence=divergence,
    )


@given(irs.gaussian_mixtures(), irs.interpolants(), times, st.integers(0, 2**31 - 1))
def test_conversions_agree_with_exact_mixture(mixture, interp, t, seed):
    """The interpolant's conversions applied to the exact velocity give the exact posterior
    means; the exact score is the gradient of the exact marginal log-density (autodiff); the exact
    velocity satisfies the continuity equation d/dt log p + v.grad log p + div v = 0."""
    x = jax.random.normal(jax.random.key(seed), (mixture.dim,)) * 1.5
    q = {
        k: np.asarray(a, dtype=np.float64)
        for k, a in _exact_quantities(mixture, interp, jnp.asarray(t), x).items()
    }
    np.testing.assert_allclose(q["denoiser_from_v"], q["denoiser"], atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(q["noise_from_v"], q["noise"], atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(q["score"], q["autodiff_score"], atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(q["score_from_v"], q["autodiff_score"], atol=2e-3, rtol=2e-3)
    transport = q["v"] @ q["autodiff_score"]
    residual = q["dlogp_dt"] + transport + q["divergence"]
    scale = 1.0 + abs(q["dlogp_dt"]) + abs(transport) + abs(q["divergence"])
    assert abs(residual) < 2e-3 * scale


@given(irs.gaussian_mixtures(max_dim=3), irs.interpolants(), times, st.integers(0, 2**31 - 1))
def test_interpolate_matches_exact_marginal(mixture, interp, t, seed):
    """x_t = interpolate(x0, x1, t) with x1 from the mixture has the exact marginal's moments."""
    from interpolant_rl.testing import moment_errors

    n = 8192
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(k0, (n, mixture.dim))
    x1 = mixture.sample(k1, n)
    xt = jax.vmap(interp.interpolate, in_axes=(0, 0, None))(x0, x1, t)
    marginal = mixture.marginal(interp, t)
    errors = moment_errors(xt, marginal.mean(), marginal.covariance())
    # Bonferroni over at most 4 + 16 entries at family-wise level ~1e-4.
    assert errors.max_z() < 4.9
