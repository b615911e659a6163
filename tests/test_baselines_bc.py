"""BC: its losses by hand, and its fitted policies against the closed-form optimum of each loss."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents
from interpolant_rl.agents import bc
from interpolant_rl.data import Batch


def _batch(observations, actions, valid=None):
    n = actions.shape[0]
    zeros = jnp.zeros(n)
    valid = jnp.ones(n) if valid is None else valid
    return Batch(observations, actions, zeros, zeros, observations, valid)


def test_losses_by_hand():
    obs = jnp.array([[0.3, -0.2], [1.0, 0.5], [0.0, 0.0]])
    actions = jnp.array([[0.2, -0.5], [0.9, 0.1], [-0.3, 0.4]])
    valid = jnp.array([1.0, 1.0, 0.0])  # the third row is weighted out
    gaussian = agents.make_agent(
        "bc", 2, 2, jr.key(0), bc.BCConfig(actor=agents.NetworkConfig(8, 1))
    )
    network = gaussian.actor.model
    expected = 0.0
    for s, a in zip(obs[:2], actions[:2], strict=True):
        mean, log_std = network(s)
        u = np.arctanh(np.asarray(a))
        z = (u - np.asarray(mean)) / np.exp(np.asarray(log_std))
        log_gauss = -0.5 * z**2 - np.asarray(log_std) - 0.5 * math.log(2 * math.pi)
        expected -= np.sum(log_gauss - np.log(1 - np.tanh(u) ** 2)) / 2
    loss, metrics = bc.bc_loss(network, _batch(obs, actions, valid), deterministic=False)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    config = bc.BCConfig(deterministic=True, actor=agents.NetworkConfig(8, 1))
    deterministic = agents.make_agent("bc", 2, 2, jr.key(1), config).actor.model
    predictions = np.asarray(jax.vmap(deterministic)(obs))
    expected = np.mean(np.sum((predictions[:2] - np.asarray(actions[:2])) ** 2, axis=-1))
    loss, _ = bc.bc_loss(deterministic, _batch(obs, actions, valid), deterministic=True)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("deterministic", [False, True])
def test_bc_fits_the_closed_form_optimum_of_its_loss(deterministic):
    # one state, actions a = tanh(u) with u ~ N(m, s^2): the likelihood's optimum is (m, s) in
    # u-space (the sample's mean and std of atanh a); squared error's is the sample mean of a
    rng = np.random.default_rng(0)
    m, s = np.array([0.3, -0.5]), np.array([0.2, 0.4])
    data = np.tanh(m + s * rng.normal(size=(4096, 2))).astype(np.float32)
    config = bc.BCConfig(
        deterministic=deterministic, actor=agents.NetworkConfig(32, 1), learning_rate=3e-3
    )
    agent = agents.make_agent("bc", 1, 2, jr.key(0), config)
    steps, size = 1500, 256
    index = jr.randint(jr.key(1), (steps, size), 0, data.shape[0])
    actions = jnp.asarray(data)[index]
    obs = jnp.zeros((steps, size, 1))
    batch = Batch(
        obs,
        actions,
        jnp.zeros((steps, size)),
        jnp.ones((steps, size)),
        obs,
        jnp.ones((steps, size)),
    )
    agent, _ = agent.update(batch, jr.key(2))
    if deterministic:
        prediction = np.asarray(agent.act(np.zeros(1, np.float32), jr.key(3)))
        # the optimum, the sample mean, within a few standard errors (plus optimisation noise)
        np.testing.assert_allclose(prediction, data.mean(0), atol=0.02)
    else:
        mean, log_std = agent.actor.model(jnp.zeros(1))
        u = np.arctanh(data)
        np.testing.assert_allclose(mean, u.mean(0), atol=0.03)
        np.testing.assert_allclose(np.exp(log_std), u.std(0), rtol=0.06)
        action = agent.act(np.zeros(1, np.float32), jr.key(3))
        np.testing.assert_allclose(action, np.tanh(mean), atol=1e-6)  # acts with tanh(mu)
        sampling = agents.make_agent(
            "bc", 1, 2, jr.key(0), dataclasses.replace(config, stochastic_acting=True)
        )
        sampling = dataclasses.replace(sampling, actor=agent.actor)
        draws = np.asarray(sampling.act(np.zeros((2048, 1), np.float32), jr.key(4)))
        np.testing.assert_allclose(np.arctanh(draws).mean(0), u.mean(0), atol=0.03)
        np.testing.assert_allclose(np.arctanh(draws).std(0), u.std(0), rtol=0.08)
