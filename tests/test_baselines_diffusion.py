"""Diffusion-policy pieces of QSM and DAC: the DDPM posterior against Bayes' rule, marginal
preservation of one posterior step (point mass: exact; Gaussian: the closed-form deficit), the
full sampler against the exact linear-Gaussian recursion, the jump-and-renoise variant shown to
differ, clipping of the denoised action, and the fixed points of the QSM and DAC losses."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import agents, ddpm_posterior, ddpm_sample, ddpm_step, jump_renoise_step
from interpolant_rl.nn import NoisePrediction
from interpolant_rl.objectives import (
    denoising_loss,
    q_score_matching_loss,
    soft_q_guidance_loss,
)
from interpolant_rl.testing import GaussianMixture, moment_errors


VP = ir.VariancePreservingInterpolant()
MEAN = np.array([0.3, -0.2])
COV = np.array([[0.05, 0.02], [0.02, 0.08]])
GAUSSIAN = GaussianMixture([1.0], [MEAN], [COV])
N = 20_000
MAX_Z = 4.9  # Bonferroni over <= 6 moment entries per check at family-wise level ~1e-4


def _coefficients(interp, t, s):
    """(c1, c2, std) of the posterior mean c1 x1 + c2 x_t and its deviation, in float64."""
    at, bt = float(interp.alpha(t)), float(interp.beta(t))
    as_, bs = float(interp.alpha(s)), float(interp.beta(s))
    ratio = at / as_
    forward = max(bt**2 - ratio**2 * bs**2, 0.0)
    return as_ * forward / bt**2, ratio * bs**2 / bt**2, np.sqrt(forward) * bs / bt


@pytest.mark.parametrize("interp", [VP, ir.LinearInterpolant()], ids=["vp", "linear"])
@pytest.mark.parametrize("t, s", [(0.0, 0.1), (0.3, 0.7), (0.8, 0.9), (0.9, 1.0)])
def test_posterior_is_bayes_rule(interp, t, s):
    """Given x1, (x_s, x_t) is jointly Gaussian through x_s = alpha_s x1 + beta_s z and the
    forward kernel x_t = a x_s + sigma xi; conditioning on x_t gives the posterior."""
    x1, x_t = jnp.array([0.4, -0.7]), jnp.array([1.1, 0.2])
    mean, std = ddpm_posterior(interp, x_t, x1, t, s)
    at, bt = float(interp.alpha(t)), float(interp.beta(t))
    as_, bs = float(interp.alpha(s)), float(interp.beta(s))
    a = at / as_
    covariance = a * bs**2  # Cov(x_s, x_t) per coordinate; Var(x_t) = beta_t^2
    expected_mean = as_ * np.asarray(x1) + covariance / bt**2 * (
        np.asarray(x_t) - at * np.asarray(x1)
    )
    expected_var = bs**2 - covariance**2 / bt**2
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-5, atol=1e-6)
    assert float(std) ** 2 == pytest.approx(max(expected_var, 0.0), rel=1e-4, abs=1e-7)
    if s == 1.0:
        np.testing.assert_allclose(mean, x1, atol=1e-6)
        assert float(std) == 0.0


@eqx.filter_jit
def _one_step(step, interp, x_t, x1_hat, t, s, key):
    keys = jr.split(key, x_t.shape[0])
    return jax.vmap(lambda x, y, k: step(interp, x, y, t, s, k))(x_t, x1_hat, keys)


@pytest.mark.parametrize("t, s", [(0.0, 0.5), (0.5, 0.6), (0.7, 0.95), (0.7, 1.0)])
def test_posterior_step_preserves_point_mass_marginals(t, s):
    """Point-mass data: the denoiser is exact and deterministic, so x_t ~ p_t maps to p_s."""
    x_t = VP.alpha(t) * MEAN + VP.beta(t) * jr.normal(jr.key(0), (N, 2))
    x1_hat = jnp.broadcast_to(jnp.asarray(MEAN, dtype=x_t.dtype), x_t.shape)
    x_s = _one_step(ddpm_step, VP, x_t, x1_hat, t, s, jr.key(1))
    if s == 1.0:  # the last step returns the denoised action itself
        np.testing.assert_allclose(x_s, np.broadcast_to(MEAN, x_s.shape), atol=1e-6)
        return
    errors = moment_errors(x_s, float(VP.alpha(s)) * MEAN, float(VP.beta(s)) ** 2 * np.eye(2))
    assert errors.max_z() < MAX_Z


def _posterior_covariance(t):
    """Cov(x1 | x_t) for the Gaussian data (the same at every x_t)."""
    at, bt = float(VP.alpha(t)), float(VP.beta(t))
    marginal = at**2 * COV + bt**2 * np.eye(2)
    return COV - at**2 * COV @ np.linalg.solve(marginal, COV)


def test_posterior_step_on_gaussian_data_and_jump_renoise_differs():
    """Gaussian data, exact denoiser: the posterior step keeps the mean and the covariance up to
    the closed-form deficit c1^2 Cov(x1 | x_t); jump-and-renoise loses alpha_s^2 Cov(x1 | x_t),
    measurably more."""
    t, s = 0.8, 0.85  # a short step: the posterior loses ~5% of the variance, the jump ~20%
    x1 = GAUSSIAN.sample(jr.key(2), N)
    x_t = jax.vmap(VP.interpolate, in_axes=(0, 0, None))(jr.normal(jr.key(3), (N, 2)), x1, t)
    x1_hat = jax.vmap(lambda x: GAUSSIAN.denoiser(VP, t, x))(x_t)
    marginal = float(VP.alpha(s)) ** 2 * COV + float(VP.beta(s)) ** 2 * np.eye(2)
    c1, _, _ = _coefficients(VP, t, s)
    posterior_cov = marginal - c1**2 * _posterior_covariance(t)
    renoise_cov = marginal - float(VP.alpha(s)) ** 2 * _posterior_covariance(t)
    mean_s = float(VP.alpha(s)) * MEAN

    ddpm = moment_errors(
        _one_step(ddpm_step, VP, x_t, x1_hat, t, s, jr.key(4)), mean_s, posterior_cov
    )
    assert ddpm.max_z() < MAX_Z
    renoise_samples = _one_step(jump_renoise_step, VP, x_t, x1_hat, t, s, jr.key(5))
    assert moment_errors(renoise_samples, mean_s, renoise_cov).max_z() < MAX_Z
    # the two closed forms differ by many standard errors, and the samples see it
    assert moment_errors(renoise_samples, mean_s, posterior_cov).max_z() > 10


def _ddpm_recursion(num_steps):
    """Exact mean and covariance of the T-step DDPM sampler from N(0, I) with the exact Gaussian
    denoiser x1_hat = m + K (x - alpha m): every step is affine plus Gaussian noise."""
    mean, cov = np.zeros(2), np.eye(2)
    ts = np.linspace(0.0, 1.0, num_steps + 1)
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        at, bt = float(VP.alpha(t)), float(VP.beta(t))
        gain = at * COV @ np.linalg.inv(at**2 * COV + bt**2 * np.eye(2))
        c1, c2, std = _coefficients(VP, t, s)
        linear = c1 * gain + c2 * np.eye(2)
        mean = linear @ mean + c1 * (MEAN - at * gain @ MEAN)
        cov = linear @ cov @ linear.T + std**2 * np.eye(2)
    return mean, cov


@eqx.filter_jit
def _sample(denoiser, num_steps, key):
    noise_key, step_key = jr.split(key)
    noise = jr.normal(noise_key, (N, 2))
    keys = jr.split(step_key, N)
    return jax.vmap(
        lambda z, k: ddpm_sample(VP, denoiser, z, k, num_steps=num_steps, clip_denoised=False)
    )(noise, keys)


def test_sampler_with_exact_gaussian_denoiser():
    """The sampler's samples match the exact recursion (Monte-Carlo error); the recursion has the
    data mean and converges to the data covariance as T grows, from below (DDPM with the
    posterior-mean plug-in under-disperses: 59% of the smallest-variance entry at T = 10 here,
    where the data variance is small against the noise)."""
    samples = _sample(lambda t, x, c: GAUSSIAN.denoiser(VP, t, x), 10, jr.key(6))
    mean, cov = _ddpm_recursion(10)
    assert moment_errors(samples, mean, cov).max_z() < MAX_Z
    errors = []
    for steps in (10, 40, 160, 640):
        mean, cov = _ddpm_recursion(steps)
        np.testing.assert_allclose(mean, MEAN, atol=2e-4)  # only the N(0, I) start differs
        assert np.all(np.linalg.eigvalsh(COV - cov) > -1e-9)  # under-dispersed
        errors.append(np.abs(cov - COV).max())
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.05 * np.abs(COV).max()


def test_probability_flow_ode_of_noise_prediction():
    """The PF-ODE option: the exact noise prediction as a velocity field, started from the exact
    t = 0 marginal, transports it to the marginal at t = 0.999 (Tsit5, 20 steps; the VP velocity
    is singular at t = 1 itself, where Tsit5's last stage would evaluate it)."""
    prediction = NoisePrediction(VP, lambda t, x, c: GAUSSIAN.noise_posterior_mean(VP, t, x))
    process = ir.ProbabilityFlowODE(VP, prediction.velocity)
    ts = jnp.linspace(0.0, 0.999, 21)
    start = jax.vmap(VP.interpolate, in_axes=(0, 0, None))(
        jr.normal(jr.key(7), (N, 2)), GAUSSIAN.sample(jr.key(8), N), 0.0
    )
    out = eqx.filter_jit(jax.vmap(lambda z: ir.sample(process, z, solver=diffrax.Tsit5(), ts=ts)))(
        start
    )
    end = GAUSSIAN.marginal(VP, 0.999)
    assert moment_errors(out, end.mean(), end.covariance()).max_z() < MAX_Z


def test_denoised_action_is_clipped():
    """DAC's clipped reconstruction: a noise field whose denoised action leaves the box is
    clipped before every step, so the last step returns an action in [-1, 1]."""
    prediction = NoisePrediction(VP, lambda t, x, c: -10.0 * jnp.ones_like(x))
    z = jnp.array([0.5, -2.0])
    clipped = ddpm_sample(VP, prediction.denoiser, z, jr.key(9), num_steps=3)
    raw = ddpm_sample(VP, prediction.denoiser, z, jr.key(9), num_steps=3, clip_denoised=False)
    np.testing.assert_allclose(clipped, 1.0)
    assert np.all(np.asarray(raw) > 1.0)


# --- losses ----------------------------------------------------------------------------------

A = jnp.array([[1.0, 0.2], [0.2, 0.5]])
B = jnp.array([0.5, -1.0])


def q_gradient(cond, action):  # grad of Q(a) = -1/2 a^T A a + b^T a (+ a state term)
    return -A @ action + B + 0.1 * cond[0]


def _batch(key, batch=64):
    k1, k2 = jr.split(key)
    return jnp.clip(jr.normal(k1, (batch, 2)), -1, 1), jr.normal(k2, (batch, 3))


def test_qsm_loss_is_zero_when_the_score_is_the_scaled_q_gradient():
    actions, obs = _batch(jr.key(10))
    scale = 2.5

    def exact(t, x, c):  # score -eps/beta = scale * grad Q
        return -VP.beta(t) * scale * q_gradient(c, x)

    def loss(field):
        return q_score_matching_loss(
            VP, field, actions, obs, q_gradient, jr.key(11), q_scale=scale, bc_weight=0.0
        )[0]

    assert float(loss(exact)) == pytest.approx(0.0, abs=1e-10)
    assert float(loss(lambda t, x, c: exact(t, x, c) + 0.1)) == pytest.approx(0.01, rel=1e-4)


def _stationarity(loss_fn, fixed_point):
    """d/dc loss(fixed_point + c h) at c = 0, for a fixed perturbation h."""

    def perturbed(c):
        return loss_fn(lambda t, x, cond: fixed_point(t, x, cond) + c * (jnp.sin(x) + t))

    return float(jax.grad(perturbed)(0.0))


def test_qsm_and_dac_losses_have_the_documented_minimisers():
    """Point-mass data x1 = m: x0 = (x_t - alpha m)/beta exactly, so the documented minimisers
    are exact stationary points of the losses (zero gradient in every direction)."""
    obs = jr.normal(jr.key(12), (64, 3))
    m = jnp.array([0.3, -0.4])
    actions = jnp.broadcast_to(m, (64, 2))
    noise = lambda t, x: (x - VP.alpha(t) * m) / VP.beta(t)  # noqa: E731
    tau, alpha, c = 2.0, 10.0, 0.7

    def qsm_fixed_point(t, x, cond):
        return (alpha * noise(t, x) - VP.beta(t) * tau * q_gradient(cond, x)) / (1 + alpha)

    def qsm(field):
        return q_score_matching_loss(
            VP,
            field,
            actions,
            obs,
            q_gradient,
            jr.key(13),
            q_scale=tau,
            bc_weight=alpha,
            num_steps=10,
        )[0]

    def dac_fixed_point(t, x, cond):
        return noise(t, x) - c * VP.beta(t) * q_gradient(cond, x) / (2 * 3.0)

    def dac(field):
        return soft_q_guidance_loss(
            VP,
            field,
            actions,
            obs,
            q_gradient,
            jr.key(14),
            bc_weight=3.0,
            guidance_scale=c,
            num_steps=10,
        )[0]

    assert _stationarity(qsm, qsm_fixed_point) == pytest.approx(0.0, abs=1e-4)
    assert _stationarity(dac, dac_fixed_point) == pytest.approx(0.0, abs=1e-4)
    # ... and the plain denoiser is not stationary for them once the critic matters
    assert abs(_stationarity(dac, lambda t, x, cond: noise(t, x))) > 1e-2
    assert _stationarity(
        lambda f: denoising_loss(VP, f, actions, obs, jr.key(15)), lambda t, x, cond: noise(t, x)
    ) == pytest.approx(0.0, abs=1e-4)


def test_losses_weight_out_invalid_rows_and_are_finite():
    actions, obs = _batch(jr.key(16))
    weights = jnp.ones(64).at[:5].set(0.0)
    garbage = actions.at[:5].set(100.0)
    field = lambda t, x, c: 0.3 * x + c[:2] * t  # noqa: E731
    for loss in (
        lambda a: denoising_loss(VP, field, a, obs, jr.key(17), num_steps=10, weights=weights),
        lambda a: q_score_matching_loss(
            VP, field, a, obs, q_gradient, jr.key(17), q_scale=1.0, bc_weight=10.0, weights=weights
        )[0],
        lambda a: soft_q_guidance_loss(
            VP, field, a, obs, q_gradient, jr.key(17), bc_weight=3.0, weights=weights
        )[0],
    ):
        value = float(loss(actions))
        assert np.isfinite(value)
        assert float(loss(garbage)) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("qsm", "alpha", -1.0),
        ("qsm", "q_scale", -1.0),
        ("qsm", "diffusion_steps", 0),
        ("qsm", "beta_min", 0.0),
        ("dac", "alpha", 0.0),
        ("dac", "diffusion_steps", 0),
        ("dac", "beta_max", -1.0),
    ],
)
def test_impossible_hyperparameters(name, field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(agents.default_config(name), **{field: value})


def test_defaults_follow_the_protocol():
    qsm, dac = agents.default_config("qsm"), agents.default_config("dac")
    assert (qsm.q_scale, qsm.alpha, qsm.grad_clip, qsm.diffusion_steps) == (1.0, 10.0, 1.0, 10)
    assert (dac.alpha, dac.grad_clip, dac.diffusion_steps) == (3.0, 1.0, 10)
    assert not hasattr(qsm, "tau") and not hasattr(dac, "tau")  # neither is a tilt temperature


def test_diffusion_bc_reproduces_its_sampler_closed_form_on_gaussian_data():
    """Diffusion-BC (Diffusion-QL with eta = 0) trained on Gaussian behaviour data: its T-step
    DDPM samples match the exact recursion of that sampler with the exact denoiser (the
    network's optimum) to Monte-Carlo and fitting error; the recursion itself is the data
    distribution under-dispersed by DDPM's few steps (see the test above)."""
    from interpolant_rl.agents import diffusion_ql

    steps_t = 5
    config = dataclasses.replace(
        diffusion_ql.diffusion_bc_config(),
        diffusion_steps=steps_t,
        actor=agents.NetworkConfig(64, 2),
        learning_rate=1e-3,
    )
    assert (config.beta_min, config.beta_max) == (VP.beta_min, VP.beta_max)
    agent = agents.make_agent("diffusion_bc", 1, 2, jr.key(0), config)
    assert not hasattr(agent.critic, "online")  # Diffusion-BC holds no critic
    data = np.asarray(GAUSSIAN.sample(jr.key(1), 50_000))
    steps, size = 6000, 256
    index = jr.randint(jr.key(2), (steps, size), 0, data.shape[0])
    obs = jnp.zeros((steps, size, 1))
    ones = jnp.ones((steps, size))
    batch = ir.data.Batch(obs, jnp.asarray(data)[index], 0 * ones, ones, obs, ones)
    agent, _ = agent.update(batch, jr.key(3))
    samples = np.asarray(agent.act(np.zeros((N, 1), np.float32), jr.key(4)))
    mean, cov = _ddpm_recursion(steps_t)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.2 * np.abs(cov).max())
    assert np.abs(np.cov(samples.T) - COV).max() > 0.2 * np.abs(COV).max()  # T = 5 is coarse


def test_diffusion_ql_loss_is_bc_plus_the_normalised_q_of_its_chain_samples():
    from interpolant_rl.agents import diffusion_ql
    from interpolant_rl.agents._diffusion import DDPMPolicy
    from interpolant_rl.objectives import normalised_q_loss

    config = diffusion_ql.DiffusionQLConfig(
        eta=2.0,
        actor=agents.NetworkConfig(8, 1),
        critic=agents.CriticConfig(width=8, depth=1, num_critics=2, rho=1.0, layer_norm=False),
    )
    agent = agents.make_agent("diffusion_ql", 3, 2, jr.key(0), config)
    obs = jr.normal(jr.key(1), (6, 3))
    actions = jnp.clip(jr.normal(jr.key(2), (6, 2)), -1, 1)
    zeros, ones = jnp.zeros(6), jnp.ones(6)
    batch = ir.data.Batch(obs, actions, zeros, ones, obs, ones)
    key = jr.key(3)
    bc_key, sample_key = jr.split(key)
    network = agent.diffusion.network.model
    bc = denoising_loss(VP, network, actions, obs, bc_key, num_steps=5, weights=ones)
    sampled = DDPMPolicy(network, VP, 2, 5)(obs, sample_key)
    q = normalised_q_loss(agent.critic.mean_values(obs, sampled))
    _, metrics = agent.actor_step(batch, key)
    np.testing.assert_allclose(metrics["bc_loss"], bc, rtol=1e-5)
    np.testing.assert_allclose(metrics["q_loss"], q, rtol=1e-5)
    # the Q term reaches the network through the whole chain: its gradient is not zero
    grad = eqx.filter_grad(
        lambda n: normalised_q_loss(
            agent.critic.mean_values(obs, DDPMPolicy(n, VP, 2, 5)(obs, sample_key))
        )
    )(network)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(eqx.filter(grad, eqx.is_array)))
    # acting: the best of N by min-Q, or a softmax draw, or one sample
    chosen = agent.act(obs, jr.key(4))
    assert chosen.shape == (6, 2)
    soft = dataclasses.replace(
        agent, config=dataclasses.replace(config, action_selection="softmax")
    )
    assert soft.act(obs, jr.key(4)).shape == (6, 2)
