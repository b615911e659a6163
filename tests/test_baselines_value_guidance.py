"""The value-learning and guidance baselines of the QAM paper (IFQL, FAWAC, CGQL): each test
checks one defining property against a closed form or an independent numerical answer."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import agents, nn, objectives as obj
from interpolant_rl.agents import Batch, FixedCritic
from interpolant_rl.testing import GaussianMixture


def tiny(name, **changes):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    return dataclasses.replace(config, flow_steps=3, **changes)


def argmin_convex(loss, low, high, iterations=60):
    """The minimiser over a constant of a convex `loss(q)`: bisection on the sign of its
    derivative (independent of any optimiser's step size)."""
    grad = jax.jit(jax.grad(loss))
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if grad(jnp.float32(middle)) > 0:
            high = middle
        else:
            low = middle
    return 0.5 * (low + high)


def numpy_expectile(y, kappa):
    # root of kappa E(y - m)_+ = (1 - kappa) E(m - y)_+, decreasing-free bisection in float64
    low, high = y.min(), y.max()
    for _ in range(200):
        m = 0.5 * (low + high)
        balance = kappa * np.maximum(y - m, 0).mean() - (1 - kappa) * np.maximum(m - y, 0).mean()
        low, high = (m, high) if balance > 0 else (low, m)
    return 0.5 * (low + high)


# --------------------------------------------------------------------------------------------
# Value learning (IFQL, FAWAC)


def test_expectile_loss_is_half_mse_at_one_half_and_minimised_by_the_expectile():
    y = np.random.default_rng(0).gamma(2.0, 1.0, size=300)  # skewed: expectiles differ
    targets = jnp.asarray(y, dtype=jnp.float32)
    q = jnp.full_like(targets, 1.3)
    assert np.isclose(obj.expectile_loss(q, targets, 0.5), 0.5 * np.mean((y - 1.3) ** 2), rtol=1e-5)
    for kappa in (0.1, 0.5, 0.9):

        def loss(c, kappa=kappa):
            return obj.expectile_loss(jnp.full_like(targets, c), targets, kappa)

        found = argmin_convex(loss, float(y.min()), float(y.max()))
        # float32 gradients: the root is resolved to ~1e-6 relative; 1e-4 absolute is generous
        assert abs(found - numpy_expectile(y, kappa)) < 1e-4, kappa
    # validity weights remove samples: the minimiser is the expectile of the kept ones
    weights = jnp.asarray(np.arange(300) % 3 != 0, dtype=jnp.float32)
    found = argmin_convex(
        lambda c: obj.expectile_loss(jnp.full_like(targets, c), targets, 0.9, weights=weights),
        float(y.min()),
        float(y.max()),
    )
    assert abs(found - numpy_expectile(y[np.arange(300) % 3 != 0], 0.9)) < 1e-4
    with pytest.raises(ValueError, match="expectile"):
        obj.expectile_loss(q, targets, 1.0)


def test_advantage_weights_are_exponential_below_the_clip_and_clipped_above():
    q = jnp.array([-3.0, -0.5, 0.0, 0.7, 2.0, 1e4])
    v = jnp.array([0.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    tau, max_weight = 0.8, 100.0
    weights = obj.advantage_weights(q, v, tau, max_weight)
    expected = np.exp(tau * np.asarray(q - v)[:5])
    assert np.allclose(weights[:5], expected, rtol=1e-6)  # all below exp(0.8 * 3) < 100
    assert weights[5] == pytest.approx(max_weight, rel=1e-6)  # exp(8000) would overflow
    clipped = obj.advantage_weights(q, v, 5.0, max_weight)  # 5 * 3 = 15 > log 100
    assert clipped[4] == pytest.approx(max_weight, rel=1e-6)
    assert np.all(np.asarray(clipped) <= max_weight * (1 + 1e-6))
    assert np.allclose(obj.advantage_weights(q, v, 0.0, max_weight), 1.0)
    # the weights are constants of the loss they weight
    assert np.allclose(jax.grad(lambda q: obj.advantage_weights(q, v, tau, 100.0).sum())(q), 0.0)


def test_expectile_critic_bootstraps_from_the_value_not_from_next_actions():
    critic = agents.ExpectileCritic.create(
        3,
        2,
        agents.CriticConfig(width=16, depth=1, num_critics=2),
        agents.NetworkConfig(16, 1),
        0.9,
        jr.key(0),
    )
    keys = jr.split(jr.key(1), 3)
    batch = Batch(
        jr.normal(keys[0], (8, 3)),
        jnp.clip(jr.normal(keys[1], (8, 2)), -1, 1),
        jnp.ones(8),
        jnp.ones(8),
        jr.normal(keys[2], (8, 3)),
        jnp.ones(8),
    )
    step = eqx.filter_jit(lambda critic, actions: critic.step(batch, actions))
    first, metrics = step(critic, jnp.zeros((8, 2)))
    second, _ = step(critic, jnp.ones((8, 2)))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        assert np.array_equal(a, b)
    assert {"critic_loss", "value_loss"} <= set(metrics)


def test_ifql_acts_with_the_candidate_of_highest_ensemble_minimum():
    agent = agents.make_agent("ifql", 2, 2, jr.key(0), tiny("ifql", num_samples=8))
    # two members that disagree, so the minimum (not the mean) decides
    b1, b2 = jnp.array([1.0, -2.0]), jnp.array([-0.5, 1.0])
    critic = FixedCritic(lambda s, a: jnp.stack([a @ b1 + s[0], a @ b2 - s[1]]))
    agent = eqx.tree_at(lambda a: a.critic, agent, critic)
    observations = jr.normal(jr.key(1), (5, 2))
    key = jr.key(2)
    candidates = agent.candidates(observations, key)
    assert candidates.shape == (5, 8, 2) and np.all(np.abs(np.asarray(candidates)) <= 1)
    scores = np.minimum(
        candidates @ b1 + observations[:, :1], candidates @ b2 - observations[:, 1:]
    )
    expected = np.asarray(candidates)[np.arange(5), np.argmax(scores, axis=1)]
    assert np.allclose(agent.act(observations, key), expected, atol=1e-6)
    assert len({tuple(np.round(r, 5)) for r in np.asarray(candidates[0])}) == 8  # distinct


# --------------------------------------------------------------------------------------------
# Guidance (CGQL)


def test_linex_loss_is_minimised_by_the_log_mean_exp():
    y = jnp.asarray(np.random.default_rng(1).normal(0.0, 0.6, size=200), dtype=jnp.float32)
    tau = 2.0
    exact = float((jax.nn.logsumexp(tau * y) - np.log(y.shape[0])) / tau)
    found = argmin_convex(lambda c: obj.linex_loss(jnp.full_like(y, c), y, tau), -2.0, 2.0)
    # the clip (5) is inactive: tau * (max y - q*) < 5; bisection leaves ~1e-6
    assert float(tau * (y.max() - exact)) < 5.0
    assert abs(found - exact) < 1e-4
    assert exact > float(jnp.mean(y)) + 0.3  # log-mean-exp, not the mean
    # tau -> 0: half the squared error; huge underestimates stay finite (linear beyond the clip)
    small = obj.linex_loss(jnp.zeros_like(y), y, 1e-2)
    assert np.isclose(small, 0.5 * jnp.mean(y**2), rtol=2e-2)
    assert np.isfinite(obj.linex_loss(jnp.zeros(2), jnp.array([1e4, 0.0]), 10.0))


def test_noisy_critic_loss_is_a_squared_error_or_the_linex_loss():
    actions = jr.uniform(jr.key(0), (16, 2), minval=-1, maxval=1)
    targets = jr.normal(jr.key(1), (16,))

    def constant(t, x, cond):
        return jnp.float32(0.3)

    args = (ir.LinearInterpolant(), constant, actions, None, targets, jr.key(2))
    mse = obj.noisy_critic_loss(*args)
    assert np.isclose(mse, 0.5 * jnp.mean((targets - 0.3) ** 2), rtol=1e-6)
    linex = obj.noisy_critic_loss(*args, tau=3.0)
    assert np.isclose(linex, obj.linex_loss(jnp.full(16, 0.3), targets, 3.0), rtol=1e-6)


def gaussian_problem():
    mean, cov = jnp.array([0.3, -0.2]), jnp.array([[0.3, 0.1], [0.1, 0.2]])
    base = GaussianMixture(jnp.ones(1), mean[None], cov[None])
    return base, jnp.array([1.0, -0.5])


def test_guided_velocity_adds_the_tilt_score_after_the_start_time():
    base, b = gaussian_problem()
    velocity = base.velocity_field(ir.LinearInterpolant())

    def value(t, x, cond):
        return jnp.sin(x[0]) + x @ b

    x, cond = jnp.array([0.4, -0.7]), None
    unguided = nn.GuidedVelocity(ir.LinearInterpolant(), velocity, value, 3.0, 0.0)
    guided = nn.GuidedVelocity(ir.LinearInterpolant(), velocity, value, 3.0, 0.2, start=0.1)
    gradient = jnp.array([jnp.cos(0.4), 0.0]) + b
    for t in (0.0, 0.05, 0.1, 0.5, 0.9):
        behaviour = velocity(t, x, cond)
        assert np.allclose(unguided(t, x, cond), behaviour, atol=1e-6)  # theta = 0
        extra = 0.2 * 3.0 * (1 - t) / t * gradient if t >= 0.1 else jnp.zeros(2)
        assert np.allclose(guided(t, x, cond), behaviour + extra, atol=1e-5), t
    with pytest.raises(ValueError, match="start"):
        nn.GuidedVelocity(ir.LinearInterpolant(), velocity, value, 3.0, 0.2, start=0.0)


def test_exact_guidance_of_a_gaussian_samples_its_tilt():
    # N(m, C) tilted by exp(tau b.a) is N(m + tau C b, C). The Linex optimum
    # Q_u = (1/tau) log E[exp(tau b.a) | x_u] is b . E[a | x_u] + const, and the guidance term
    # tau (1-u)/u grad Q_u does not depend on x: every trajectory is shifted by the same vector,
    # so the sample mean of (guided - unguided) has no Monte-Carlo error, only the solver's.
    base, b = gaussian_problem()
    tau, steps = 1.5, 100
    interpolant = ir.LinearInterpolant()
    velocity = base.velocity_field(interpolant)

    def exact_noisy_critic(t, x, cond):
        return b @ base.denoiser(interpolant, t, x)

    guided = nn.GuidedVelocity(interpolant, velocity, exact_noisy_critic, tau, 1.0, start=1e-3)
    noise = jr.normal(jr.key(0), (64, 2))
    obs = jnp.zeros((64, 1))
    sample = eqx.filter_jit(agents.flow_actions)
    shift = sample(interpolant, guided, obs, noise, steps) - sample(
        interpolant, velocity, obs, noise, steps
    )
    exact = base.tilt(jnp.zeros((2, 2)), b, tau).mean() - base.mean()
    assert np.allclose(exact, tau * base.covs[0] @ b, atol=1e-5)
    assert np.allclose(np.std(shift, axis=0), 0.0, atol=1e-4)  # the same shift for every z
    # Euler is first order: the error measured for T = 25, 50, 100, 200 steps is 0.2/T (8e-3,
    # 4e-3, 2e-3, 1e-3); the guidance skipped on [0, start) loses start * |tau C b| ~ 1e-3
    assert np.allclose(np.mean(shift, axis=0), exact, atol=5e-3)


def test_cgql_noise_conditioned_variant_trains_its_critic_and_acts():
    config = tiny("cgql", variant="linex", guidance=0.1)
    agent = agents.make_agent("cgql", 3, 2, jr.key(0), config)
    keys = jr.split(jr.key(1), 3)
    batch = Batch(
        jr.normal(keys[0], (2, 8, 3)),
        jnp.clip(jr.normal(keys[1], (2, 8, 2)), -1, 1),
        jnp.ones((2, 8)),
        jnp.ones((2, 8)),
        jr.normal(keys[2], (2, 8, 3)),
        jnp.ones((2, 8)),
    )
    before = jax.tree.leaves(agent.noisy_critic.model)[0]
    agent, metrics = agent.update(batch, jr.key(2))
    assert np.all(np.isfinite(metrics["noisy_critic_loss"]))
    assert not np.allclose(before, jax.tree.leaves(agent.noisy_critic.model)[0])
    actions = agent.act(jr.normal(jr.key(3), (4, 3)), jr.key(4))
    assert actions.shape == (4, 2) and np.all(np.abs(np.asarray(actions)) <= 1)
    with pytest.raises((ValueError, TypeError), match="variant"):  # TypeError: runtime checks
        dataclasses.replace(config, variant="exact")
    with pytest.raises(ValueError, match="tau"):
        dataclasses.replace(config, tau=0.0)  # Linex needs tau > 0
