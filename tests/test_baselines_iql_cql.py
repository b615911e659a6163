"""IQL and CQL: their losses by hand, IQL's policy extraction against the closed-form tilt, and CQL's conservative gap."""

import math

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from interpolant_rl import agents
from interpolant_rl.agents import iql
from interpolant_rl.data import Batch


def test_actor_loss_by_hand():
    config = iql.IQLConfig(actor=agents.NetworkConfig(8, 1), beta=2.0, max_weight=3.0)
    agent = agents.make_agent("iql", 2, 2, jr.key(0), config)
    network = agent.actor.model
    obs = jnp.array([[0.3, -0.2], [1.0, 0.5], [0.0, 0.0]])
    actions = jnp.array([[0.2, -0.5], [0.9, 0.1], [-0.3, 0.4]])
    q, v = jnp.array([1.0, 0.2, 0.5]), jnp.array([0.5, 0.4, 0.0])
    valid = jnp.array([1.0, 1.0, 0.0])
    batch = Batch(obs, actions, jnp.zeros(3), jnp.ones(3), obs, valid)
    expected = 0.0
    for i in range(2):
        mean, log_std = (np.asarray(x) for x in network(obs[i]))
        u = np.arctanh(np.asarray(actions[i]))
        z = (u - mean) / np.exp(log_std)
        log_prob = np.sum(
            -0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(u) ** 2)
        )
        weight = min(math.exp(2.0 * float(q[i] - v[i])), 3.0)  # e^{1.0} = 2.72; e^{-0.4} = 0.67
        expected -= weight * log_prob / 2
    loss, _ = iql.iql_actor_loss(network, batch, q, v, 2.0, 3.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_policy_extraction_reaches_the_tilt_of_a_gaussian_behaviour():
    # behaviour a = tanh(u), u ~ N(m, s^2 I), Q(a) = b.a held fixed (the exact-tilt benchmark's
    # critic); AWR's optimum is the tilt pi_beta e^{beta Q} projected onto the tanh-Gaussians: by
    # maximum likelihood, the tilt's mean and std in u-space, computed here by reweighting
    rng = np.random.default_rng(0)
    m, s, b, beta = np.array([0.1, -0.1]), 0.3, np.array([1.0, -0.6]), 3.0
    u = m + s * rng.normal(size=(8192, 2))
    data = np.tanh(u).astype(np.float32)
    config = iql.IQLConfig(
        actor=agents.NetworkConfig(32, 1), value=agents.NetworkConfig(32, 1), beta=beta
    )
    agent = agents.make_agent("iql", 1, 2, jr.key(0), config)

    def linear_q(cond, action):
        return jnp.dot(jnp.asarray(b, jnp.float32), action)[None]

    fixed = agents.FixedExpectileCritic(linear_q, agent.critic.value, agent.critic.expectile)
    agent = eqx.tree_at(lambda a: a.critic, agent, fixed)
    steps, size = 3000, 256
    index = jr.randint(jr.key(1), (steps, size), 0, data.shape[0])
    obs = jnp.zeros((steps, size, 1))
    batch = Batch(
        obs,
        jnp.asarray(data)[index],
        jnp.zeros((steps, size)),
        jnp.ones((steps, size)),
        obs,
        jnp.ones((steps, size)),
    )
    agent, _ = agent.update(batch, jr.key(2))
    mean, log_std = agent.actor.model(jnp.zeros(1))
    # the exact tilt of the samples, reweighted: its u-space mean and std
    weights = np.exp(beta * data @ b)
    weights /= weights.sum()
    tilted_mean = weights @ u
    tilted_std = np.sqrt(weights @ (u - tilted_mean) ** 2)
    assert np.all(np.abs(tilted_mean - m) > 0.1)  # the tilt moved the mean measurably
    np.testing.assert_allclose(mean, tilted_mean, atol=0.02)
    np.testing.assert_allclose(np.exp(log_std), tilted_std, rtol=0.1)


def test_cql_penalty_by_hand_and_the_agent_lowers_out_of_distribution_values():
    from interpolant_rl.objectives import cql_penalty

    candidates = np.array(
        [[[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]], [[0.5, 0.5], [1.5, 0.0], [-1.0, 2.0]]]
    )
    log_mu = np.array([[-1.0, 0.0, 0.5], [0.2, -0.3, 0.0]])
    data = np.array([[0.5, 1.0], [0.0, 0.2]])
    temperature = 2.0
    expected = 0.0
    for i in range(2):
        for k in range(2):
            shifted = (candidates[i, :, k] - log_mu[i]) / temperature
            expected += temperature * np.log(np.sum(np.exp(shifted))) - data[i, k]
    expected /= 4
    value = cql_penalty(
        jnp.asarray(candidates), jnp.asarray(log_mu), jnp.asarray(data), temperature
    )
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    # with only the penalty to learn from (zero rewards), CQL pushes Q at uniform actions below
    # Q at the dataset's actions, the conservative gap CQL is named for
    config = agents.cql.CQLConfig(
        actor=agents.NetworkConfig(16, 1),
        critic=agents.CriticConfig(width=32, depth=1, num_critics=2, rho=1.0, layer_norm=False),
        lagrange_threshold=1.0,
    )
    agent = agents.make_agent("cql", 2, 2, jr.key(0), config)
    steps, size = 300, 64
    obs = jr.normal(jr.key(1), (steps, size, 2))
    actions = jnp.full((steps, size, 2), 0.5)
    zeros, ones = jnp.zeros((steps, size)), jnp.ones((steps, size))
    agent, metrics = agent.update(Batch(obs, actions, zeros, ones, obs, ones), jr.key(2))
    assert np.all(np.isfinite(np.asarray(metrics["cql_gap"])))
    assert "cql_multiplier" in metrics
    test_obs = jr.normal(jr.key(3), (256, 2))
    q_data = agent.critic.mean_values(test_obs, jnp.full((256, 2), 0.5))
    q_far = agent.critic.mean_values(test_obs, jnp.full((256, 2), -0.9))
    assert float(jnp.mean(q_data - q_far)) > 0.5
