"""Consistency-BC and Consistency-AC: the Karras time map, the boundary parametrisation (the
identity at t = 1), the multistep sampler against the exact consistency function of Gaussian
data, the N(k) schedule and the consistency-training loss against hand computations, a short
Consistency-BC run on a Gaussian mixture, and both agents through the registry."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import agents, consistency_sample, KarrasSchedule
from interpolant_rl.agents import consistency_ac
from interpolant_rl.nn import ConsistencyFunction, VelocityField
from interpolant_rl.objectives import (
    consistency_scales,
    consistency_training_loss,
    normalised_q_loss,
)
from interpolant_rl.testing import GaussianMixture, moment_errors


SCHEDULE = KarrasSchedule()
EPS, SMAX, RHO = 0.002, 80.0, 7.0
MAX_Z = 4.9  # Bonferroni over <= 6 moment entries per check at family-wise level ~1e-4


# ---------------------------------------------------------------------------------------------
# The time map and the boundary parametrisation


def test_karras_time_map_endpoints_inverse_and_grid():
    assert float(SCHEDULE.sigma(0.0)) == pytest.approx(SMAX, rel=1e-6)
    assert float(SCHEDULE.sigma(1.0)) == pytest.approx(EPS, rel=1e-5)
    for sigma in (0.01, 0.5, 2.0, 40.0):
        assert float(SCHEDULE.sigma(SCHEDULE.time(sigma))) == pytest.approx(sigma, rel=1e-5)
    # the uniform grid t_j = j/(N-1) is the Karras grid read from the noise end
    n = 7
    karras = [(EPS ** (1 / RHO) + i / (n - 1) * (SMAX ** (1 / RHO) - EPS ** (1 / RHO))) ** RHO
              for i in range(n)]  # fmt: skip
    ours = [float(SCHEDULE.sigma(j / (n - 1))) for j in range(n)]
    np.testing.assert_allclose(ours, karras[::-1], rtol=1e-5)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        KarrasSchedule(1.0, 0.5)


def _network(key, dim=2, obs=3):
    return VelocityField(dim, obs, 8, 1, key=key)


@pytest.mark.parametrize("scale_input", [False, True])
def test_consistency_function_is_the_identity_at_the_data_end(scale_input):
    function = ConsistencyFunction(SCHEDULE, _network(jr.key(0)), scale_input=scale_input)
    x, c = jr.normal(jr.key(1), (2,)), jr.normal(jr.key(2), (3,))
    np.testing.assert_array_equal(function(1.0, x, c), x)  # exactly: c_skip = 1, c_out = 0
    # and the skip scalings of Song et al. elsewhere
    t = 0.3
    sigma = float(SCHEDULE.sigma(t))
    c_skip = 0.25 / ((sigma - EPS) ** 2 + 0.25)
    c_out = 0.5 * (sigma - EPS) / np.sqrt(0.25 + sigma**2)
    np.testing.assert_allclose(function.scalings(t), (c_skip, c_out), rtol=1e-5)
    inputs = x / np.sqrt(sigma**2 + 0.25) if scale_input else x
    expected = c_skip * x + c_out * function.network(t, inputs, c)
    np.testing.assert_allclose(function(t, x, c), expected, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The sampler against the exact consistency function of Gaussian data

MEAN = np.array([0.3, -0.2])
COV = np.array([[0.05, 0.02], [0.02, 0.08]])


def _matrix_power(cov, sigma, power):
    values, vectors = np.linalg.eigh(cov)
    return (vectors * (values + sigma**2) ** power) @ vectors.T


def _exact_consistency(t, x, cond):
    r"""For a ~ N(m, S) the probability-flow ODE of x = a + sigma z is linear:
    f(x, sigma) = m + (S + eps^2)^{1/2} (S + sigma^2)^{-1/2} (x - m)."""
    del cond
    sigma = SCHEDULE.sigma(t)
    values, vectors = jnp.linalg.eigh(jnp.asarray(COV, jnp.float32))
    gain = jnp.sqrt((values + EPS**2) / (values + sigma**2))
    return MEAN + (vectors * gain) @ (vectors.T @ (x - MEAN))


@pytest.mark.parametrize("times", [(0.0,), (0.0, 0.525), (0.0, 0.3, 0.6, 0.8, 0.95)])
def test_sampler_with_the_exact_function_reproduces_the_data(times):
    """Every step re-noises to the exact marginal at sigma(t_k), so the output is N(m, S + eps^2)
    for any number of steps (the first step drops the data term: O(S / sigma_max^2))."""
    n = 40_000

    @jax.jit
    def draw(key):
        noise_key, step_key = jr.split(key)
        x0 = jr.normal(noise_key, (n, 2))
        keys = jr.split(step_key, n)
        return jax.vmap(
            lambda z, k: consistency_sample(SCHEDULE, _exact_consistency, z, k, times=times)
        )(x0, keys)

    samples = np.asarray(draw(jr.key(0)))
    errors = moment_errors(samples, MEAN, COV + EPS**2 * np.eye(2))
    assert errors.max_z() < MAX_Z, errors


def test_sampler_rejects_an_empty_grid():
    with pytest.raises(ValueError, match="non-empty"):
        consistency_sample(SCHEDULE, _exact_consistency, jnp.zeros(2), jr.key(0), times=[])


# ---------------------------------------------------------------------------------------------
# N(k) and the consistency-training loss by hand


def test_scales_follow_song_et_al_and_the_code_is_final_149():
    song = lambda k, big_k, s0, s1: int(  # noqa: E731
        np.ceil(np.sqrt(k / big_k * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
    )
    code = lambda k, big_k, s0, s1: int(  # noqa: E731  (Ding & Jin's timesteps_schedule)
        np.ceil(np.sqrt(k * (s1**2 - s0**2) / big_k + s0**2) - 1) + 1
    )
    for k in (0, 1, 7, 500, 2_500, 4_999, 5_000, 9_000):
        assert int(consistency_scales(k, 5_000, 2, 150)) == song(min(k, 5_000), 5_000, 2, 150)
        if k <= 5_000:
            assert int(consistency_scales(k, 5_000, 2, 149)) == code(k, 5_000, 2, 150)
    assert int(consistency_scales(0, 10)) == 2 and int(consistency_scales(10, 10)) == 151
    assert int(jax.jit(consistency_scales, static_argnums=1)(jnp.asarray(10), 10)) == 151


def _hand_loss(function, target, actions, cond, key, n, interval_weight=None, weights=None):
    index_key, noise_key = jr.split(key)
    index = np.asarray(jr.randint(index_key, (actions.shape[0],), 0, n - 1))
    z = np.asarray(jr.normal(noise_key, actions.shape))
    terms = []
    for i in range(actions.shape[0]):
        t_noisy, t_clean = index[i] / (n - 1), (index[i] + 1) / (n - 1)
        s_noisy = (SMAX ** (1 / RHO) + t_noisy * (EPS ** (1 / RHO) - SMAX ** (1 / RHO))) ** RHO
        s_clean = (SMAX ** (1 / RHO) + t_clean * (EPS ** (1 / RHO) - SMAX ** (1 / RHO))) ** RHO
        a = np.asarray(actions[i])
        pred = np.asarray(function(t_noisy, jnp.asarray(a + s_noisy * z[i]), cond[i]))
        goal = np.asarray(target(t_clean, jnp.asarray(a + s_clean * z[i]), cond[i]))
        term = np.mean((pred - goal) ** 2)
        if interval_weight is not None:
            term *= interval_weight / (s_noisy - s_clean)
        terms.append(term)
    terms = np.asarray(terms)
    if weights is None:
        return terms.mean()
    weights = np.asarray(weights)
    return float(np.sum(weights * terms) / max(np.sum(weights), 1.0))


@pytest.mark.parametrize("interval_weight", [None, 100.0])
def test_consistency_training_loss_by_hand(interval_weight):
    def function(t, x, c):
        return 0.7 * x * (1.0 + t) + jnp.sum(c) * 0.1

    def target(t, x, c):
        return x * (1.0 - 0.5 * t) - 0.2 * jnp.sum(c)

    actions = jr.uniform(jr.key(0), (4, 2), minval=-1, maxval=1)
    cond = jr.normal(jr.key(1), (4, 3))
    weights = jnp.array([1.0, 0.0, 1.0, 1.0])
    key, n = jr.key(2), 6
    loss = consistency_training_loss(
        function, target, SCHEDULE, actions, cond, key,
        num_scales=n, interval_weight=interval_weight, weights=weights,
    )  # fmt: skip
    expected = _hand_loss(function, target, actions, cond, key, n, interval_weight, weights)
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    # the target is held fixed: no gradient reaches it
    grad = jax.grad(
        lambda scale: consistency_training_loss(
            function,
            lambda t, x, c: scale * target(t, x, c),
            SCHEDULE,
            actions,
            cond,
            key,
            num_scales=n,
        )  # fmt: skip
    )(1.0)
    assert float(grad) == 0.0


def test_consistency_loss_vanishes_at_two_levels_for_point_data():
    """N = 2 pairs sigma_max with eps, where f is the identity: for a point mass, the function
    that returns the point everywhere has zero loss, up to the eps noise of the target."""
    point = jnp.array([0.3, -0.4])
    actions = jnp.broadcast_to(point, (5, 2))
    loss = consistency_training_loss(
        lambda t, x, c: point, lambda t, x, c: x, SCHEDULE, actions, None, jr.key(0),
        num_scales=2,
    )  # fmt: skip
    assert float(loss) < 4 * EPS**2


# ---------------------------------------------------------------------------------------------
# The agents


def test_paper_defaults_and_the_bc_preset():
    ac, bc = agents.default_config("consistency_ac"), agents.default_config("consistency_bc")
    assert (ac.eta, ac.num_steps, ac.sampling_sigma_min, ac.interval_weight) == (1.0, 2, 2.0, None)
    assert (ac.sigma_min, ac.sigma_max, ac.karras_rho, ac.sigma_data) == (EPS, SMAX, RHO, 0.5)
    assert (ac.initial_scales, ac.final_scales, ac.schedule_updates) == (2, 150, 50_000)
    assert (ac.target_rate, ac.learning_rate, ac.num_candidates) == (0.005, 3e-4, 50)
    assert (bc.eta, bc.action_selection, bc.interval_weight) == (0.0, "sample", 100.0)
    times = ac.sampling_times
    assert times[0] == 0.0 and float(SCHEDULE.sigma(times[1])) == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="sampling_sigma_min"):
        dataclasses.replace(ac, sampling_sigma_min=100.0)


OBS, ACT, BATCH = 3, 2, 8


def _tiny(name):
    return agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)


def _batch(key, lead=(3,)):
    obs_key, action_key, reward_key = jr.split(key, 3)
    obs = jr.normal(obs_key, (*lead, BATCH, OBS))
    actions = jr.uniform(action_key, (*lead, BATCH, ACT), minval=-1, maxval=1)
    ones = jnp.ones((*lead, BATCH))
    return ir.data.Batch(obs, actions, jr.normal(reward_key, (*lead, BATCH)), ones, obs, ones)


@pytest.fixture(scope="module")
def trained():
    """Both agents built through the registry and updated once (three steps), shared by the
    tests below so that each compiles once."""
    out = {}
    for name in ("consistency_bc", "consistency_ac"):
        agent = agents.make_agent(name, OBS, ACT, jr.key(0), _tiny(name))
        new, metrics = agent.update(_batch(jr.key(1)), jr.key(2))
        out[name] = (agent, new, metrics)
    return out


@pytest.mark.parametrize("name", ["consistency_bc", "consistency_ac"])
def test_agents_build_update_and_act_through_the_registry(trained, name):
    agent, new, metrics = trained[name]
    assert isinstance(new, consistency_ac.ConsistencyAC)
    assert int(new.step) == 3
    np.testing.assert_array_equal(metrics["num_scales"], [2, 3, 3])  # N(0), N(1), N(2)
    assert np.all(np.isfinite(metrics["bc_loss"]))
    assert ("q_loss" in metrics) == (name == "consistency_ac")
    assert hasattr(new.critic, "online") == (name == "consistency_ac")
    changed = jax.tree.leaves(eqx.filter(new.actor.model, eqx.is_inexact_array))
    before = jax.tree.leaves(eqx.filter(agent.actor.model, eqx.is_inexact_array))
    assert not all(np.allclose(a, b) for a, b in zip(changed, before, strict=True))
    actions = new.act(jr.normal(jr.key(3), (5, OBS)), jr.key(4))
    assert actions.shape == (5, ACT) and np.all(np.abs(np.asarray(actions)) <= 1.0)


def test_actor_loss_is_consistency_training_plus_the_normalised_q_of_its_samples(trained):
    agent = trained["consistency_ac"][1]
    batch = jax.tree.map(lambda x: x[0], _batch(jr.key(5)))
    key = jr.key(6)
    bc_key, sample_key = jr.split(key)
    function = agent.actor.model
    bc = consistency_training_loss(
        function, agent.target, SCHEDULE, batch.actions, batch.observations, bc_key,
        num_scales=agent.num_scales(), weights=batch.valid,
    )  # fmt: skip
    policy = consistency_ac.ConsistencyPolicy(function, agent.config.sampling_times, ACT)
    sampled = policy(batch.observations, sample_key)
    q = normalised_q_loss(agent.critic.mean_values(batch.observations, sampled))
    _, metrics = agent.actor_step(batch, key)
    np.testing.assert_allclose(metrics["bc_loss"], bc, rtol=1e-5)
    np.testing.assert_allclose(metrics["q_loss"], q, rtol=1e-5)
    assert int(metrics["num_scales"]) == int(consistency_scales(3, 50_000))


def test_the_schedule_restarts_every_k_updates_as_in_the_code(trained):
    agent = trained["consistency_bc"][1]
    config = dataclasses.replace(agent.config, schedule_updates=10)
    at = lambda k, c: int(dataclasses.replace(agent, step=jnp.asarray(k), config=c).num_scales())  # noqa: E731
    assert at(10, config) == 2 and at(9, config) == int(consistency_scales(9, 10))
    held = dataclasses.replace(config, schedule_restarts=False)
    assert at(10, held) == 151 and at(25, held) == 151


# ---------------------------------------------------------------------------------------------
# Consistency-BC on a Gaussian mixture

MIXTURE = GaussianMixture(
    [0.4, 0.6],
    [np.array([-0.4, 0.1]), np.array([0.35, -0.1])],
    [np.array([[0.02, 0.005], [0.005, 0.03]]), np.array([[0.03, -0.01], [-0.01, 0.02]])],
)


def test_consistency_bc_reproduces_a_gaussian_mixture():
    """Consistency training alone (eta = 0), sampled in Ding & Jin's two steps (sigma = 80,
    then 2): the samples' mean and covariance match the mixture's. Tolerances: 5 Monte-Carlo
    standard errors of the check (20 000 samples), plus a fitting allowance of 0.03 on the mean
    and 25 % of the largest covariance entry on the covariance, for a 3 x 128 network after
    6000 updates (consistency training is slow to converge; measured errors are about half)."""
    config = dataclasses.replace(
        consistency_ac.consistency_bc_config(),
        actor=agents.NetworkConfig(128, 3),
        learning_rate=1e-3,
        scale_input=True,
        interval_weight=None,
        target_rate=0.05,
        schedule_updates=3000,
        schedule_restarts=False,
    )
    agent = agents.make_agent("consistency_bc", 1, 2, jr.key(0), config)
    data = np.asarray(MIXTURE.sample(jr.key(1), 50_000))
    weights, means = np.asarray(MIXTURE.weights), np.asarray(MIXTURE.means)
    mean = weights @ means
    cov = sum(
        w * (np.asarray(c) + np.outer(m - mean, m - mean))
        for w, m, c in zip(weights, means, MIXTURE.covs, strict=True)
    )
    steps, size = 6000, 512
    index = jr.randint(jr.key(2), (steps, size), 0, data.shape[0])
    obs = jnp.zeros((steps, size, 1))
    ones = jnp.ones((steps, size))
    batch = ir.data.Batch(obs, jnp.asarray(data)[index], 0 * ones, ones, obs, ones)
    agent, metrics = agent.update(batch, jr.key(3))
    assert int(metrics["num_scales"][-1]) == 151
    samples = np.asarray(agent.act(np.zeros((20_000, 1), np.float32), jr.key(4)))
    errors = moment_errors(samples, mean, cov)
    mean_tol = 5 * errors.mean_standard_error + 0.03
    cov_tol = 5 * errors.cov_standard_error + 0.25 * np.abs(cov).max()
    assert np.all(np.abs(errors.mean_error) < mean_tol), errors
    assert np.all(np.abs(errors.cov_error) < cov_tol), errors
