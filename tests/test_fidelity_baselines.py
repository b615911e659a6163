"""Baselines as their papers specify them: ReBRAC's delayed actor (every second critic update)
and target-noise clip 0.5; FQL's teacher actions clipped to the action box (eq. 39)."""

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents, objectives
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


def test_critic_bc_rewards_by_hand():
    rewards, masks = jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 1.0])
    next_actions = jnp.array([[0.5, 0.0], [1.0, 1.0], [0.0, -1.0]])
    data_actions = jnp.array([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    shifted = objectives.critic_bc_rewards(
        rewards, masks, next_actions, data_actions, 0.5, 0.9, weights=jnp.array([1.0, 1.0, 0.0])
    )
    # row 0: 1 - 0.9 * 0.5 * 0.25; row 1 terminated (m = 0); row 2's next action unknown (w = 0)
    np.testing.assert_allclose(shifted, [1 - 0.9 * 0.5 * 0.25, 2.0, 3.0], rtol=1e-6)


def _penalised_rebrac():
    config = agents.resize(agents.default_config("rebrac"), width=8, depth=1, num_critics=2)
    config = agents.override(config, critic_alpha=0.3, actor_noise=0.2)
    return agents.make_agent("rebrac", 3, 2, jr.key(0), config)


def test_rebrac_critic_penalty_is_the_td_target_of_its_paper():
    # y = r + gamma m (Q'(s', a') - beta_2 ||a' - a'_D||^2): the same critic step as an unpenalised
    # TD step on rewards shifted by hand, with a' the target policy's noised action
    agent = _penalised_rebrac()
    batch = jax.tree.map(lambda x: x[0], helpers.random_batch(jr.key(1), lead=(1,)))
    data_next = jnp.clip(jr.normal(jr.key(2), batch.actions.shape), -1, 1)
    next_valid = jnp.ones(batch.rewards.shape).at[1].set(0.0)
    batch = eqx.tree_at(
        lambda b: (b.next_actions, b.next_valid),
        batch,
        (data_next, next_valid),
        is_leaf=lambda x: x is None,
    )
    key = jr.key(3)
    updated, _ = agent.update_step(batch, key)
    target_key, _ = jr.split(key)
    next_actions = agent.target_policy(batch.next_observations, target_key)
    penalty = jnp.sum((next_actions - data_next) ** 2, axis=-1) * next_valid
    assert float(jnp.sum(penalty)) > 0.1  # the penalty is not negligible here
    shifted = eqx.tree_at(lambda b: b.rewards, batch, batch.rewards - 0.99 * 0.3 * penalty)
    by_hand, _ = agent.critic.step(shifted, next_actions)
    for u, v in zip(_arrays(updated.critic), _arrays(by_hand), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-7)
    unpenalised, _ = agent.critic.step(batch, next_actions)
    assert _changed(unpenalised, updated.critic)


def test_rebrac_critic_penalty_needs_the_datas_next_actions():
    batch = helpers.random_batch(jr.key(1), lead=(1,))  # hand-made: no next actions
    with pytest.raises(ValueError, match="needs the data's next actions"):
        _penalised_rebrac().update(batch, jr.key(2))


def test_rebrac_acts_deterministically_and_with_noise_as_the_reference_code():
    config = agents.resize(agents.default_config("rebrac"), width=8, depth=1, num_critics=2)
    config = agents.override(config, actor_noise=0.2)
    observations = jr.normal(jr.key(1), (64, 3))
    paper = agents.make_agent("rebrac", 3, 2, jr.key(0), config)
    mean = jax.vmap(paper.actor.model)(observations)
    np.testing.assert_array_equal(paper.policy(observations, jr.key(2)), mean)
    reference = agents.domain_config("rebrac", None, "reference", config=config)
    assert reference.act_with_noise and not config.act_with_noise
    noisy = agents.make_agent("rebrac", 3, 2, jr.key(0), reference)
    key = jr.key(2)
    noise = jnp.clip(0.2 * jr.normal(key, mean.shape), -0.5, 0.5)
    np.testing.assert_allclose(
        noisy.policy(observations, key), jnp.clip(mean + noise, -1, 1), rtol=1e-6
    )
