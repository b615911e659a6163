"""Prior Guidance: the latent objective against a hand computation, the optimal latent prior of
a Gaussian behaviour under a quadratic critic (closed form: a Gaussian tilt of N(0, I) pushed
through the exact affine flow map) reached by optimising the objective, and the agent through
the registry (the flow never trained by the critic, the two-phase schedule, acting)."""

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents, LinearInterpolant
from interpolant_rl.agents import prior_guidance
from interpolant_rl.nn import GaussianLatentPrior
from interpolant_rl.objectives import latent_prior_loss
from interpolant_rl.testing import GaussianMixture, QuadraticCritic


def _prior_with_output(bias, noise_dim=2, obs_dim=1, full_covariance=True):
    """A prior whose network outputs `bias` for every state (zero output weights)."""
    prior = GaussianLatentPrior(
        noise_dim, obs_dim, 4, 1, full_covariance=full_covariance, key=jr.key(0)
    )
    return eqx.tree_at(lambda p: p.mlp.layers[-1].bias, prior, jnp.asarray(bias, jnp.float32))


# ---------------------------------------------------------------------------------------------
# The objective against a hand computation


def test_fresh_prior_is_the_standard_normal():
    prior = GaussianLatentPrior(3, 2, 8, 1, key=jr.key(1))
    mean, scale = prior(jnp.ones(2))
    np.testing.assert_array_equal(mean, np.zeros(3))
    np.testing.assert_array_equal(scale, np.eye(3))
    assert float(prior.kl_to_standard(jnp.ones(2))) == 0.0


@pytest.mark.parametrize("normalise_q", [False, True])
def test_latent_objective_matches_a_hand_computation(normalise_q):
    # mu = (0.3, -0.2), L = [[0.5, 0], [0.4, 2]]
    prior = _prior_with_output([0.3, -0.2, np.log(0.5), np.log(2.0), 0.4])
    obs = jnp.array([[1.0], [-2.0]])
    eps = jnp.array([[1.0, -1.0], [0.5, 2.0]])
    S, m = np.array([[1.0, 0.5], [0.0, 2.0]]), np.array([0.1, -0.1])
    A, b = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([1.0, -0.5])

    def decode(observations, z):
        return m + z @ S.T

    def q_function(observations, actions):
        quad = -0.5 * jnp.einsum("bi,ij,bj->b", actions, A, actions) + actions @ b
        return quad + observations[:, 0]

    tau = 0.5
    loss, metrics = latent_prior_loss(
        prior, decode, q_function, obs, eps, tau, normalise_q=normalise_q
    )
    # by hand
    mu, L = np.array([0.3, -0.2]), np.array([[0.5, 0.0], [0.4, 2.0]])
    z = mu + np.asarray(eps) @ L.T  # [[0.8, -1.8], [0.55, 4.0]]
    np.testing.assert_allclose(z, [[0.8, -1.8], [0.55, 4.0]], rtol=1e-6)
    a = m + z @ S.T
    q = -0.5 * np.einsum("bi,ij,bj->b", a, A, a) + a @ b + np.array([1.0, -2.0])
    kl = 0.5 * (0.25 + 0.16 + 4.0 + 0.09 + 0.04 - 2.0) - (np.log(0.5) + np.log(2.0))
    assert kl == pytest.approx(1.27)
    q_term = -q.mean() / np.abs(q).mean() if normalise_q else -q.mean()
    np.testing.assert_allclose(loss, q_term + kl / tau, rtol=1e-5)
    np.testing.assert_allclose(metrics["prior_kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(metrics["prior_q"], q.mean(), rtol=1e-5)
    # the KL agrees with the prior's own log-density: E_q[log q - log N] by the sample mean
    # identity at z = mu + L eps: log q(z) = log N(eps) - sum log L_ii
    log_q = jax.vmap(prior.log_prob)(obs, jnp.asarray(z, jnp.float32))
    log_n = -0.5 * np.sum(np.asarray(eps) ** 2, -1) - np.log(2 * np.pi)
    np.testing.assert_allclose(log_q, log_n - np.log(0.5 * 2.0), rtol=1e-5)


def test_diagonal_prior_has_no_off_diagonal_scale():
    prior = _prior_with_output([0.0, 0.0, 0.1, -0.1], full_covariance=False)
    _, scale = prior(jnp.zeros(1))
    np.testing.assert_allclose(scale, np.diag(np.exp([0.1, -0.1])), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Closed form: Gaussian behaviour, exact (affine) flow map, quadratic critic

MEAN = np.array([0.2, -0.3])
COV = np.array([[0.09, 0.03], [0.03, 0.06]])
A_Q = np.array([[2.0, 0.8], [0.8, 1.0]])
B_Q = np.array([1.0, -0.5])
TAU = 3.0


def _sqrt(cov):
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(values)) @ vectors.T


ROOT = _sqrt(COV)  # T(z) = m + C^{1/2} z: the linear interpolant's exact ODE map


def test_the_exact_flow_of_a_gaussian_is_affine():
    """The probability-flow ODE of the linear interpolant for N(m, C) data: x_t has covariance
    t^2 C + (1 - t)^2 I, which commutes with C, so x_1 = m + C^{1/2} x_0."""
    field = GaussianMixture([1.0], [MEAN], [COV]).velocity_field(LinearInterpolant())
    z = jr.normal(jr.key(0), (4, 2))
    ends = agents.flow_actions(
        LinearInterpolant(), field, jnp.zeros((4, 1)), z, 20, diffrax.Tsit5()
    )
    np.testing.assert_allclose(ends, MEAN + np.asarray(z) @ ROOT.T, atol=1e-4)


def test_optimising_the_latent_objective_reaches_the_exact_tilt():
    # closed form of the optimal prior N(z) exp(tau Q(m + S z)) / Z: a Gaussian with precision
    # I + tau S A S and mean (I + tau S A S)^{-1} tau S (b - A m)   (S = C^{1/2} symmetric)
    precision = np.eye(2) + TAU * ROOT @ A_Q @ ROOT
    latent_cov = np.linalg.inv(precision)
    latent_mean = latent_cov @ (TAU * ROOT @ (B_Q - A_Q @ MEAN))
    assert abs(latent_cov[0, 1]) > 0.05  # a full covariance is needed

    critic = QuadraticCritic(A_Q, B_Q)

    def decode(observations, z):
        return MEAN + z @ ROOT.T

    def q_function(observations, actions):
        return jax.vmap(critic)(observations, actions)[:, 0]

    prior = GaussianLatentPrior(2, 1, 8, 1, key=jr.key(0))
    trained = agents.Trained.create(prior, agents.adam(1e-2))
    obs = jnp.ones((512, 1))

    @eqx.filter_jit
    def train(trained, key):
        arrays, static = eqx.partition(trained, eqx.is_array)

        def step(arrays, key):
            eps = jr.normal(key, (512, 2))
            new, _ = eqx.combine(arrays, static).minimise(
                lambda p: latent_prior_loss(p, decode, q_function, obs, eps, TAU)
            )
            return eqx.filter(new, eqx.is_array), None

        arrays, _ = jax.lax.scan(step, arrays, jr.split(key, 600))
        return eqx.combine(arrays, static)

    trained = train(trained, jr.key(1))
    mean, scale = trained.model(jnp.ones(1))
    cov = scale @ scale.T
    # Adam at 1e-2 with 512 fresh draws a step leaves a jitter of about 1e-2 in the parameters
    np.testing.assert_allclose(mean, latent_mean, atol=0.03)
    np.testing.assert_allclose(cov, latent_cov, atol=0.03)
    # its push-forward is the exact tilt of the behaviour (computed independently)
    tilt = GaussianMixture([1.0], [MEAN], [COV]).tilt(A_Q, B_Q, TAU)
    np.testing.assert_allclose(MEAN + ROOT @ mean, tilt.mean(), atol=0.01)
    np.testing.assert_allclose(ROOT @ cov @ ROOT, tilt.covariance(), atol=0.005)
    # and the closed form itself pushes forward to it exactly
    np.testing.assert_allclose(MEAN + ROOT @ latent_mean, tilt.mean(), atol=1e-5)
    np.testing.assert_allclose(ROOT @ latent_cov @ ROOT, tilt.covariance(), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The agent through the registry

OBS, ACT, BATCH = 3, 2, 8


def _config(**changes):
    config = agents.resize(
        agents.default_config("prior_guidance"), width=16, depth=1, num_critics=2
    )
    return dataclasses.replace(config, flow_steps=3, **changes)


def _batches(key, updates=3):
    keys = jr.split(key, 4)
    shape = (updates, BATCH)
    return agents.Batch(
        observations=jr.normal(keys[0], (*shape, OBS)),
        actions=jnp.clip(jr.normal(keys[1], (*shape, ACT)), -1, 1),
        rewards=jr.normal(keys[2], shape),
        masks=jnp.ones(shape),
        next_observations=jr.normal(keys[3], (*shape, OBS)),
        valid=jnp.ones(shape),
    )


@pytest.fixture(scope="module")
def trained():
    agent = agents.make_agent("prior_guidance", OBS, ACT, jr.key(0), _config())
    new, metrics = agent.update(_batches(jr.key(1)), jr.key(2))
    return agent, new, metrics


def test_agent_builds_updates_and_acts_through_the_registry(trained):
    agent, new, metrics = trained
    assert isinstance(new, prior_guidance.PriorGuidance)
    assert int(new.updates) == 3
    for name in ("critic_loss", "flow_matching_loss", "prior_q", "prior_kl"):
        assert metrics[name].shape == (3,) and np.all(np.isfinite(metrics[name])), name
    before = jax.tree.leaves(eqx.filter(agent.prior.model, eqx.is_inexact_array))
    after = jax.tree.leaves(eqx.filter(new.prior.model, eqx.is_inexact_array))
    assert not all(np.allclose(a, b) for a, b in zip(after, before, strict=True))
    actions = new.act(jr.normal(jr.key(3), (5, OBS)), jr.key(4))
    assert actions.shape == (5, ACT) and np.all(np.abs(np.asarray(actions)) <= 1.0)
    assert new.act(jnp.zeros(OBS), jr.key(5)).shape == (ACT,)


def test_a_fresh_agent_acts_exactly_as_its_behaviour_flow(trained):
    agent = trained[0]
    obs = jr.normal(jr.key(6), (4, OBS))
    np.testing.assert_array_equal(agent.policy(obs, jr.key(7)), agent.flow_policy()(obs, jr.key(7)))


def test_the_flow_is_never_trained_by_the_critic(trained):
    """Same batch and key, two different critics: the same behaviour flow (flow matching
    only), different priors."""
    agent = trained[1]
    batch = jax.tree.map(lambda x: x[0], _batches(jr.key(8)))
    other = eqx.tree_at(
        lambda a: a.critic,
        agent,
        agents.FixedCritic(QuadraticCritic(np.eye(ACT), np.ones(ACT))),
    )
    one, _ = agent.actor_step(batch, jr.key(9))
    two, _ = other.actor_step(batch, jr.key(9))
    for a, b in zip(jax.tree.leaves(one.behaviour), jax.tree.leaves(two.behaviour), strict=True):
        np.testing.assert_array_equal(a, b)
    flow, _ = agents.flow_matching_step(agent.behaviour, batch, jr.split(jr.key(9))[0])
    for a, b in zip(jax.tree.leaves(one.behaviour), jax.tree.leaves(flow), strict=True):
        np.testing.assert_array_equal(a, b)
    prior_one = jax.tree.leaves(eqx.filter(one.prior.model, eqx.is_inexact_array))
    prior_two = jax.tree.leaves(eqx.filter(two.prior.model, eqx.is_inexact_array))
    assert not all(np.allclose(a, b) for a, b in zip(prior_one, prior_two, strict=True))


def test_prior_delay_trains_the_flow_alone_first():
    agent = agents.make_agent("prior_guidance", OBS, ACT, jr.key(0), _config(prior_delay=2))
    new, _ = agent.update(_batches(jr.key(1), updates=2), jr.key(2))
    arrays = [jax.tree.leaves(eqx.filter(a.prior, eqx.is_array)) for a in (new, agent)]
    for a, b in zip(*arrays, strict=True):  # parameters and Adam state untouched
        np.testing.assert_array_equal(a, b)

    def params(module):
        return jax.tree.leaves(eqx.filter(module, eqx.is_inexact_array))

    assert not np.allclose(params(new.behaviour.model)[0], params(agent.behaviour.model)[0])
    later, _ = new.update(_batches(jr.key(3), updates=1), jr.key(4))
    assert not np.allclose(params(later.prior.model)[-1], params(new.prior.model)[-1])


@pytest.mark.parametrize("field, value", [("tau", 0.0), ("flow_steps", 0), ("prior_delay", -1)])
def test_impossible_values_fail_at_configuration(field, value):
    with pytest.raises(ValueError, match=field):
        prior_guidance.PriorGuidanceConfig(**{field: value})
