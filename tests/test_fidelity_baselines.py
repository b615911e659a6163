"""Baselines as their papers specify them: ReBRAC's delayed actor (every second critic update)
and target-noise clip 0.5; FQL's teacher actions clipped to the action box (eq. 39)."""

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from interpolant_rl import agents
from interpolant_rl.agents import OneStepDistilled


def _arrays(module):
    return jax.tree.leaves(eqx.filter(module, eqx.is_array))


def _changed(before, after):
    return any(
        not np.array_equal(u, v) for u, v in zip(_arrays(before), _arrays(after), strict=True)
    )


def test_rebrac_moves_its_actor_and_target_actor_every_second_critic_update():
    config = agents.resize(agents.default_config("rebrac"), width=8, depth=1, num_critics=2)
    assert config.actor_delay == 2 and config.noise_clip == 0.5
    agent = agents.make_agent("rebrac", 3, 2, jr.key(0), config)
    batch = helpers.random_batch(jr.key(1), lead=(1,))
    history = [agent]
    for step in range(4):
        agent, metrics = agent.update(batch, jr.key(10 + step))
        assert np.isfinite(metrics["bc_loss"]).all()  # reported on skipped steps too
        history.append(agent)
    for step, (before, after) in enumerate(zip(history, history[1:], strict=False)):
        moves = step % 2 == 0  # steps 0 and 2 update the actor, 1 and 3 do not
        assert _changed(before.actor.model, after.actor.model) == moves, step
        assert _changed(before.target_actor, after.target_actor) == moves, step
        assert _changed(before.critic, after.critic)  # the critic learns every step
    assert int(agent.steps) == 4


def test_fql_distils_the_clipped_teacher():
    net = agents.NetworkConfig(width=8, depth=1)
    distilled = OneStepDistilled.create(3, 2, net, agents.adam(1e-3), 1.0, False, jr.key(0))
    batch = jax.tree.map(lambda x: x[0], helpers.random_batch(jr.key(1), lead=(1,)))
    critic = agents.FixedCritic(lambda cond, action: jnp.zeros((2,)))
    key = jr.key(2)

    def teacher(observations, noise):  # an ODE action far outside the box
        return jnp.full(noise.shape, 5.0)

    _, metrics = distilled.step(critic, batch, teacher, key)
    noise = jr.normal(key, batch.actions.shape)  # the noise `step` draws from its key
    policy_actions = jax.vmap(distilled.policy.model)(noise, batch.observations)
    expected = jnp.mean((policy_actions - 1.0) ** 2)  # distance to clip(5) = 1, not to 5
    np.testing.assert_allclose(metrics["distillation_loss"], expected, rtol=1e-5)
