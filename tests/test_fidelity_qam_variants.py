"""Fidelity of the QAM variants to the QAM paper (Table 5) and its reference code.

- QAM-FQL with alpha = 0 or alpha = inf, and QAM-EDIT with edit scale 0, are plain QAM: the same
  agent as `qam.create` with the same key and QAM configuration (parameters and actions after two
  updates agree exactly);
- QAM-FQL's teacher (the fine-tuned flow's ODE) is clipped to [-1, 1];
- the edit policy of QAM-EDIT and FEdit is SAC-style: its loss is mean[alpha log pi(e) - Q(s,
  clip(a0 + lambda e))] (checked by hand against a known linear critic), and its temperature rises
  when the edit's entropy is below the target and falls when above (one step each).
"""

import dataclasses

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents, LinearInterpolant
from interpolant_rl.agents import ActionEdit, FixedCritic, qam, qam_edit, qam_fql


OBS_DIM, ACTION_DIM, BATCH, UPDATES = 3, 2, 8, 2
TINY = agents.NetworkConfig(width=16, depth=1)


def tiny_config(name, **changes):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    if hasattr(config, "qam"):
        config = dataclasses.replace(config, qam=dataclasses.replace(config.qam, flow_steps=3))
    else:
        config = dataclasses.replace(config, flow_steps=3)
    return dataclasses.replace(config, **changes)


def arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


def assert_same_agent_as_qam(agent, config):
    """`agent` trains and acts exactly as `qam.create(..., config.qam)` with the same key."""
    reference = qam.create(OBS_DIM, ACTION_DIM, jr.key(0), config.qam)
    assert type(agent) is type(reference)
    batch = helpers.random_batch(jr.key(1), (UPDATES,), BATCH, OBS_DIM, ACTION_DIM)
    agent, metrics = agent.update(batch, jr.key(2))
    reference, expected = reference.update(batch, jr.key(2))
    assert sorted(metrics) == sorted(expected)
    for a, b in zip(arrays(agent), arrays(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    observations = jr.normal(jr.key(3), (5, OBS_DIM))
    np.testing.assert_array_equal(
        np.asarray(agent.act(observations, jr.key(4))),
        np.asarray(reference.act(observations, jr.key(4))),
    )


# --------------------------------------------------------------------------------------------
# Plain-QAM cells of Table 5


@pytest.mark.parametrize("alpha", [0.0, float("inf")])
def test_qam_fql_at_alpha_zero_or_infinity_is_plain_qam(alpha):
    config = tiny_config("qam_fql", alpha=alpha)
    assert_same_agent_as_qam(qam_fql.create(OBS_DIM, ACTION_DIM, jr.key(0), config), config)


def test_qam_edit_at_edit_scale_zero_is_plain_qam():
    config = tiny_config("qam_edit", edit_scale=0.0)
    assert_same_agent_as_qam(qam_edit.create(OBS_DIM, ACTION_DIM, jr.key(0), config), config)


def test_variants_with_a_positive_weight_are_not_plain_qam():
    fql_config = tiny_config("qam_fql", alpha=3.0)
    edit_config = tiny_config("qam_edit", edit_scale=0.1)
    assert not fql_config.plain_qam
    assert isinstance(qam_fql.create(OBS_DIM, ACTION_DIM, jr.key(0), fql_config), qam_fql.QAMFQL)
    assert isinstance(
        qam_edit.create(OBS_DIM, ACTION_DIM, jr.key(0), edit_config), qam_edit.QAMEdit
    )


def test_qam_fql_teacher_actions_are_clipped():
    config = tiny_config("qam_fql", alpha=3.0)
    agent = qam_fql.create(OBS_DIM, ACTION_DIM, jr.key(0), config)
    observations = jr.normal(jr.key(1), (64, OBS_DIM))
    noise = 20.0 * jr.normal(jr.key(2), (64, ACTION_DIM))  # far outside the box: must be clipped
    teacher = np.asarray(agent.teacher_actions(observations, noise))
    assert np.all(np.abs(teacher) <= 1.0)
    assert np.mean(np.abs(teacher) == 1.0) > 0.5  # most coordinates sit on the box's faces
    unclipped = agents.flow_actions(
        LinearInterpolant(),
        agent.flows.velocity(),
        observations,
        noise,
        config.qam.flow_steps,
    )
    np.testing.assert_array_equal(teacher, np.clip(np.asarray(unclipped), -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# SAC-style edit policy


def linear_critic(weights, offset):
    """Two members `Q_k(s, a) = w . a + c . s + k`: ensemble mean `w . a + c . s + 1/2`."""

    def function(cond, action):
        q = weights @ action + offset @ cond
        return jnp.stack([q, q + 1.0])

    return FixedCritic(function)


def edit_policy(key=0, **kwargs):
    return ActionEdit.create(
        OBS_DIM, ACTION_DIM, TINY, agents.adam(1e-2), 0.3, jr.key(key), **kwargs
    )


def test_edit_loss_is_temperature_times_log_density_minus_q():
    edit = edit_policy(initial_temperature=0.7)
    weights, offset = jnp.array([1.5, -2.0]), jnp.array([0.1, 0.2, -0.3])
    critic = linear_critic(weights, offset)
    batch = helpers.random_batch(jr.key(1), (), BATCH, OBS_DIM, ACTION_DIM)
    base = jnp.clip(1.2 * jr.normal(jr.key(2), (BATCH, ACTION_DIM)), -1.0, 1.0)
    key = jr.key(3)

    _, metrics = edit.step(critic, batch, base, key)

    # by hand: one key per row, e ~ pi(.|s, a0) (tanh-Gaussian), its log-density recomputed
    # by the policy's own log_prob, a = clip(a0 + 0.3 e), Q the ensemble mean of the linear critic
    policy = edit.policy.model
    inputs = np.concatenate([np.asarray(batch.observations), np.asarray(base)], axis=-1)
    keys = jr.split(key, BATCH)
    loss, entropy, q_loss = 0.0, 0.0, 0.0
    for i in range(BATCH):
        e, _ = policy.sample_and_log_prob(jnp.asarray(inputs[i]), keys[i])
        log_pi = float(policy.log_prob(jnp.asarray(inputs[i]), e))
        a = np.clip(np.asarray(base[i]) + 0.3 * np.asarray(e), -1.0, 1.0)
        q = float(weights @ a + offset @ batch.observations[i]) + 0.5
        loss += (0.7 * log_pi - q) / BATCH
        entropy -= log_pi / BATCH
        q_loss -= q / BATCH
    np.testing.assert_allclose(metrics["edit_loss"], loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics["edit_q_loss"], q_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["edit_entropy"], entropy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics["edit_temperature"], 0.7, rtol=1e-6)


@pytest.mark.parametrize(
    "target_entropy_per_dim, direction",
    [
        (5.0, +1),  # above any tanh-Gaussian's entropy (at most log 2 per dim): alpha rises
        (-50.0, -1),  # far below the entropy of a fresh policy: alpha falls
    ],
)
def test_temperature_moves_toward_the_target_entropy(target_entropy_per_dim, direction):
    edit = edit_policy(target_entropy_per_dim=target_entropy_per_dim)
    assert edit.target_entropy == target_entropy_per_dim * ACTION_DIM
    critic = linear_critic(jnp.array([1.0, 1.0]), jnp.zeros(OBS_DIM))
    batch = helpers.random_batch(jr.key(1), (), BATCH, OBS_DIM, ACTION_DIM)
    base = jnp.zeros((BATCH, ACTION_DIM))
    new, metrics = edit.step(critic, batch, base, jr.key(2))
    gap = float(metrics["edit_entropy"]) - edit.target_entropy
    assert np.sign(gap) == -direction  # entropy below target <=> alpha must rise
    assert np.sign(float(new.alpha) - float(edit.alpha)) == direction


@pytest.mark.parametrize("name", ["qam_edit", "fedit"])
def test_edit_agents_take_their_temperature_settings_and_log_them(name):
    config = tiny_config(name, initial_temperature=0.25, target_entropy_per_dim=-1.0)
    if name == "qam_edit":
        config = dataclasses.replace(config, edit_scale=0.1)
    agent = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), config)
    np.testing.assert_allclose(agent.edit.alpha, 0.25, rtol=1e-6)
    assert agent.edit.target_entropy == -1.0 * ACTION_DIM
    batch = helpers.random_batch(jr.key(1), (), BATCH, OBS_DIM, ACTION_DIM)
    _, metrics = eqx.filter_eval_shape(agent.update_step, batch, jr.key(2))  # traced only
    assert {"edit_loss", "edit_entropy", "edit_temperature"} <= set(metrics)
