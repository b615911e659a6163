"""QAM's fine-tuned flow: the residual parametrisation of the paper's Algorithm 1."""

import dataclasses

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from interpolant_rl import agents, nn


def _tiny(**fields):
    config = agents.resize(agents.default_config("qam"), width=16, depth=1, num_critics=2)
    return dataclasses.replace(config, flow_steps=3, **fields)


def test_residual_flow_starts_at_its_base_and_trains_only_the_correction():
    agent = agents.qam.create(3, 2, jr.key(0), _tiny(residual=True))
    flows = agent.flows
    velocity = flows.velocity()
    assert isinstance(velocity, nn.ResidualField)
    t, x, cond = 0.3, jnp.array([0.2, -0.1]), jnp.array([1.0, 0.0, -1.0])
    np.testing.assert_array_equal(velocity(t, x, cond), flows.base(t, x, cond))
    # acting = the base flow's ODE until the correction is trained
    observations = jr.normal(jr.key(1), (5, 3))
    base_actions = jnp.clip(
        agents.flow_actions(
            agents.qam.LinearInterpolant(),
            flows.base,
            observations,
            jr.normal(jr.key(2), (5, 2)),
            3,
        ),
        -1,
        1,
    )
    np.testing.assert_allclose(
        flows.sample(observations, None, noise=jr.normal(jr.key(2), (5, 2))),
        base_actions,
        rtol=1e-6,
    )

    batch = helpers.random_batch(jr.key(3), lead=(2,), batch=8, obs_dim=3, action_dim=2)
    new, _ = agent.update(batch, jr.key(4))
    new_flows = new.flows
    # the fine-tuned velocity is always the *current* EMA base plus the trained correction
    np.testing.assert_allclose(
        new_flows.velocity()(t, x, cond),
        new_flows.base(t, x, cond) + new_flows.fine.model(t, x, cond),
        rtol=1e-6,
    )
    correction = jax.tree.leaves(eqx.filter(new_flows.fine.model, eqx.is_array))
    assert any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in correction[-2:])  # output layer moved


def test_separate_flow_is_the_default_network():
    agent = agents.qam.create(3, 2, jr.key(0), _tiny())
    assert isinstance(agent.flows.velocity(), nn.VelocityField)
    assert agent.flows.velocity() is agent.flows.fine.model
