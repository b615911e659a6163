"""The variance-preserving (DDPM / VP-SDE) interpolant: closed forms against the defining
integral, derivatives against autodiff and finite differences, the discrete DDPM schedule, and the
conversions between velocity, denoiser, noise and score against the exact Gaussian-mixture
posterior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import interpolant_rl as ir
from interpolant_rl.nn import NoisePrediction
from interpolant_rl.testing import strategies as irs


rates = st.tuples(st.floats(0.02, 1.0), st.floats(1.0, 20.0))
times = st.floats(0.02, 0.95)


@given(rates)
def test_schedule_matches_its_definition(rate):
    beta_min, beta_max = rate
    vp = ir.VariancePreservingInterpolant(beta_min, beta_max)
    ts = np.linspace(0.0, 1.0, 11)
    alpha = np.array([float(vp.alpha(t)) for t in ts])
    beta = np.array([float(vp.beta(t)) for t in ts])
    np.testing.assert_allclose(alpha**2 + beta**2, 1.0, atol=1e-6)
    assert alpha[-1] == pytest.approx(1.0) and beta[-1] == pytest.approx(0.0, abs=1e-7)
    assert alpha[0] == pytest.approx(np.exp(-(beta_min + beta_max) / 4), rel=1e-5)
    assert np.all(np.diff(alpha) > 0)
    # alpha(t) = exp(-1/2 int_0^{1-t} b(r) dr), the integral by the trapezoidal rule
    for t, a in zip(ts, alpha, strict=True):
        r = np.linspace(0.0, 1.0 - t, 2001)
        integral = np.trapezoid(beta_min + r * (beta_max - beta_min), r)
        assert a == pytest.approx(np.exp(-0.5 * integral), rel=1e-5)


@given(rates, st.integers(1, 50))
def test_uniform_grid_is_the_discrete_ddpm_schedule(rate, num_steps):
    """alpha(1 - k/T)^2 = prod_{i<=k} (1 - beta_i) with the discrete VP betas of T steps."""
    beta_min, beta_max = rate
    vp = ir.VariancePreservingInterpolant(beta_min, beta_max)
    i = np.arange(1, num_steps + 1)
    betas = 1 - np.exp(
        -beta_min / num_steps - 0.5 * (beta_max - beta_min) * (2 * i - 1) / num_steps**2
    )
    alpha_bar = np.cumprod(1 - betas)
    alphas = np.array([float(vp.alpha(1 - k / num_steps)) for k in i])
    np.testing.assert_allclose(alphas**2, alpha_bar, rtol=1e-5)


@given(rates, times)
def test_derivatives(rate, t):
    vp = ir.VariancePreservingInterpolant(*rate)
    h = 1e-3
    for value, derivative in ((vp.alpha, vp.alpha_dot), (vp.beta, vp.beta_dot)):
        exact = float(derivative(t))
        assert exact == pytest.approx(float(jax.grad(value)(t)), rel=1e-4, abs=1e-6)
        finite = (float(value(t + h)) - float(value(t - h))) / (2 * h)
        assert exact == pytest.approx(finite, rel=2e-3, abs=2e-3)
    # Delta = alpha beta' - beta alpha' = -alpha'/beta < 0
    assert float(vp.wronskian(t)) == pytest.approx(-float(vp.alpha_dot(t) / vp.beta(t)), rel=1e-5)
    assert float(vp.wronskian(t)) < 0


def test_noise_end_is_not_pure_noise_and_data_end_is_singular():
    vp = ir.VariancePreservingInterpolant()
    assert float(vp.alpha(0.0)) == pytest.approx(0.0801, abs=1e-4)
    assert np.isinf(float(vp.beta_dot(1.0)))
    # finite conversions at the noise end (alpha(0) > 0): the denoiser from a noise prediction
    x, noise = jnp.array([0.3, -0.2]), jnp.array([0.1, 0.5])
    assert np.all(np.isfinite(np.asarray(vp.denoiser_from_noise(x, noise, 0.0))))


@pytest.mark.parametrize("beta_min, beta_max", [(0.0, 10.0), (0.1, -1.0)])
def test_invalid_rates(beta_min, beta_max):
    with pytest.raises(ValueError, match="beta_min > 0 and beta_max > 0"):
        ir.VariancePreservingInterpolant(beta_min, beta_max)


@eqx.filter_jit
def _exact(mixture, vp, t, x):
    def log_p(x):
        return mixture.marginal(vp, t).log_prob(x)

    v = mixture.velocity(vp, t, x)
    noise = mixture.noise_posterior_mean(vp, t, x)
    score = jax.grad(log_p)(x)
    prediction = NoisePrediction(vp, lambda t, x, c: mixture.noise_posterior_mean(vp, t, x))
    return dict(
        v=v,
        denoiser=mixture.denoiser(vp, t, x),
        noise=noise,
        score=score,
        denoiser_from_v=vp.denoiser_from_velocity(x, v, t),
        noise_from_v=vp.noise_from_velocity(x, v, t),
        score_from_v=vp.score_from_velocity(x, v, t),
        v_from_score=vp.velocity_from_score(x, score, t),
        v_from_denoiser=vp.velocity_from_denoiser(x, mixture.denoiser(vp, t, x), t),
        denoiser_from_noise=vp.denoiser_from_noise(x, noise, t),
        prediction_denoiser=prediction.denoiser(t, x),
        prediction_score=prediction.score(t, x),
        prediction_velocity=prediction.velocity(t, x),
    )


@given(irs.gaussian_mixtures(max_dim=3), rates, times, st.integers(0, 2**31 - 1))
def test_conversions_agree_with_exact_mixture(mixture, rate, t, seed):
    """Applied to the exact velocity, noise prediction or score of a Gaussian mixture, every
    conversion gives the exact posterior quantities; the exact score is the autodiff gradient of
    the exact marginal log-density."""
    vp = ir.VariancePreservingInterpolant(*rate)
    x = jax.random.normal(jax.random.key(seed), (mixture.dim,)) * 1.5
    q = {
        k: np.asarray(a, dtype=np.float64)
        for k, a in _exact(mixture, vp, jnp.asarray(t), x).items()
    }
    tol = dict(atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(q["denoiser_from_v"], q["denoiser"], **tol)
    np.testing.assert_allclose(q["noise_from_v"], q["noise"], **tol)
    np.testing.assert_allclose(q["score_from_v"], q["score"], **tol)
    np.testing.assert_allclose(q["v_from_score"], q["v"], **tol)
    np.testing.assert_allclose(q["v_from_denoiser"], q["v"], **tol)
    np.testing.assert_allclose(q["denoiser_from_noise"], q["denoiser"], **tol)
    np.testing.assert_allclose(q["prediction_denoiser"], q["denoiser"], **tol)
    np.testing.assert_allclose(q["prediction_score"], q["score"], **tol)
    np.testing.assert_allclose(q["prediction_velocity"], q["v"], **tol)
