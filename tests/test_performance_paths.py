"""The fast paths give the same numbers as the straightforward ones they replace.

- `agent.act` (the agent's acting-policy sub-module under `eqx.filter_jit`, holding only the
  arrays a decision reads) equals `agent.policy` run through `eqx.filter_jit` on the whole agent, for NumPy and JAX inputs, one observation or a
  batch, on new agents of a known structure (no compilation) and inside `jit`;
- agents built from equal configurations share their compiled `update` and `act` (the
  optimiser from `adam` is one object per configuration);
- `CriticEnsemble.batch_values` equals the vmapped per-sample ensemble, values and gradients,
  and the critic's TD step equals the per-sample formulation;
- with `alpha = 0` FQL's one-step policy step never runs the teacher and matches the full
  distillation loss at `alpha = 0` (loss, metrics and the updated policy). (QAM-FQL at
  `alpha = 0` is plain QAM, without a one-step policy: its tiny configuration here uses
  `alpha = 30`, a Table 4 value, so that its one-step path is the one exercised.)
"""

import dataclasses

import equinox as eqx
import helpers
import jax
import jax.monitoring
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents, nn
from interpolant_rl.agents import FixedCritic, LearnedCritic, OneStepDistilled
from interpolant_rl.objectives import one_step_distillation_loss


OBS_DIM, ACTION_DIM, BATCH = 3, 2, 8
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


# QAM-FQL's default alpha = 0 (and alpha = inf) and QAM-EDIT's default edit_scale = 0 build plain
# QAM; these finite values (Table 4's cube-triple cells) keep the one-step and edit paths.
VARIANT_DEFAULTS = {"qam_fql": dict(alpha=30.0), "qam_edit": dict(edit_scale=0.1)}


def tiny_config(name, width=16, **changes):
    config = agents.resize(agents.default_config(name), width=width, depth=1, num_critics=2)
    config = dataclasses.replace(config, **VARIANT_DEFAULTS.get(name, {}))
    if name in ("qam_fql", "qam_edit"):
        config = dataclasses.replace(config, qam=dataclasses.replace(config.qam, flow_steps=2))
    elif name in ("qam", "ifql", "fql"):
        config = dataclasses.replace(config, flow_steps=2)
    return dataclasses.replace(config, **changes)


def random_batch(key, lead=()):
    return helpers.random_batch(key, lead, BATCH, OBS_DIM, ACTION_DIM)


def arrays(tree):
    return jax.tree.leaves(eqx.filter(tree, eqx.is_array))


@eqx.filter_jit
def reference_act(agent, observations, key):
    """The previous `act`: the whole agent through `filter_jit`."""
    if observations.ndim == 1:
        return agent.policy(observations[None], key)[0]
    return agent.policy(observations, key)


class CountCompilations:
    """Counts XLA compilations in a `with` block (JAX's monitoring events)."""

    def __enter__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if event == COMPILE_EVENT:
            self.count += 1

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)


# --------------------------------------------------------------------------------------------
# act


# ofql, qam_fql: one-step policies; ifql: best-of-N flow samples scored by the critic
@pytest.mark.parametrize("name", ["ofql", "qam_fql", "ifql"])
def test_act_equals_the_whole_agent_policy(name):
    agent = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), tiny_config(name))
    one = np.asarray(jr.normal(jr.key(3), (OBS_DIM,)), dtype=np.float32)
    many = jr.normal(jr.key(4), (5, OBS_DIM))
    key = jr.key(5)
    for observations in (one, jnp.asarray(one), many, np.asarray(many, dtype=np.float64)):
        expected = reference_act(agent, jnp.asarray(observations, dtype=jnp.float32), key)
        actions = agent.act(observations, key)
        assert actions.shape == expected.shape
        np.testing.assert_array_equal(np.asarray(actions), np.asarray(expected))

    if name == "qam_fql":  # the one-step policy, not plain QAM (alpha = 30 in tiny_config)
        assert isinstance(agent, agents.qam_fql.QAMFQL), type(agent)
    # acting reads the policy's networks alone, never the critic's or the optimisers' arrays
    acting = arrays(type(agent).acting_policy(agent))
    if name in ("ofql", "qam_fql"):  # the policy network alone: 2 layers x (weight, bias)
        assert len(acting) == 4, len(acting)
    if name == "ifql":  # the behaviour flow and the online ensemble, no target or Adam state
        critic = agent.critic
        expected = arrays(agent.behaviour.model) + arrays(critic.online.model)
        assert len(acting) == len(expected), (len(acting), len(expected))
    assert len(acting) < len(arrays(agent))


def test_acting_leaves_the_agent_unchanged():
    # whatever act remembers must not live on the agent: its tree (the scan carry of update)
    agent = agents.make_agent("ofql", OBS_DIM, ACTION_DIM, jr.key(0), tiny_config("ofql"))
    before = jax.tree.structure(agent)
    agent.act(jnp.ones(OBS_DIM), jr.key(1))
    assert jax.tree.structure(agent) == before
    agent.update(random_batch(jr.key(2), lead=(2,)), jr.key(3))


def test_act_reuses_the_program_across_agents_and_tells_shapes_apart():
    agent = agents.make_agent("ofql", OBS_DIM, ACTION_DIM, jr.key(0), tiny_config("ofql"))
    obs, key = jnp.ones(OBS_DIM), jr.key(1)
    np.testing.assert_array_equal(agent.act(obs, key), reference_act(agent, obs, key))
    updated = jax.tree.map(  # a new agent of the same structure, other values
        lambda x: x + 0.1 if eqx.is_inexact_array(x) else x, agent
    )
    other = agents.make_agent("ofql", OBS_DIM, ACTION_DIM, jr.key(4), tiny_config("ofql"))
    with CountCompilations() as counter:
        for new in (updated, other):  # new instances, same structure: no compilation
            np.testing.assert_array_equal(new.act(obs, key), reference_act(new, obs, key))
    assert counter.count == 0, counter.count
    assert not np.array_equal(updated.act(obs, key), agent.act(obs, key))
    # a raw uint32 key
    raw = jr.PRNGKey(6)
    np.testing.assert_array_equal(agent.act(obs, raw), reference_act(agent, obs, raw))
    # inside jit (the agent's arrays are tracers)
    dynamic, static = eqx.partition(agent, eqx.is_array)
    jitted = jax.jit(lambda dynamic, obs, key: eqx.combine(dynamic, static).act(obs, key))
    np.testing.assert_array_equal(jitted(dynamic, obs, key), agent.act(obs, key))
    # same tree, other array shapes (width is not a static field): its own program
    wide = agents.make_agent("ofql", OBS_DIM, ACTION_DIM, jr.key(0), tiny_config("ofql", 24))
    np.testing.assert_array_equal(wide.act(obs, key), reference_act(wide, obs, key))


# --------------------------------------------------------------------------------------------
# Compilation shared by equal configurations


@pytest.mark.parametrize("name", ["ofql"])
def test_equal_configurations_share_the_compiled_update(name):
    batch = random_batch(jr.key(1), lead=(2,))
    first = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), tiny_config(name))
    jax.block_until_ready(first.update(batch, jr.key(2)))
    first.act(jnp.ones(OBS_DIM), jr.key(3))
    # an equal (not identical) configuration, other initial parameters
    second = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(7), tiny_config(name))
    assert second.critic.online.optimiser == first.critic.online.optimiser
    with CountCompilations() as counter:
        jax.block_until_ready(second.update(batch, jr.key(2)))
        second.act(jnp.ones(OBS_DIM), jr.key(3))
    assert counter.count == 0, f"{name}: {counter.count} compilations for an equal config"


def test_adam_is_one_object_per_configuration():
    # equal settings: equal (and equally hashed) optimisers, one optax transformation, so jit
    # caches on them; other settings: unequal
    assert agents.adam(3e-4) == agents.adam(0.0003)
    assert hash(agents.adam(3e-4)) == hash(agents.adam(0.0003))
    assert agents.adam(3e-4).transformation() is agents.adam(0.0003).transformation()
    assert agents.adam(3e-4, 1.0) != agents.adam(3e-4)
    assert agents.adam(3e-4) != agents.adam(1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        agents.adam(0.0)


# --------------------------------------------------------------------------------------------
# Critic ensemble on a batch


@pytest.mark.parametrize("obs_dim", [OBS_DIM, 0])
def test_batch_values_equal_the_vmapped_ensemble(obs_dim):
    # the tiny agents' critic sizes: networks of these shapes are already built (faster)
    ensemble = nn.CriticEnsemble(ACTION_DIM, obs_dim, 16, 1, num_critics=2, key=jr.key(0))
    obs = jr.normal(jr.key(1), (BATCH, obs_dim)) if obs_dim else None
    actions = jr.normal(jr.key(2), (BATCH, ACTION_DIM))
    targets = jr.normal(jr.key(3), (BATCH, 2))

    def per_sample(ensemble, actions):
        in_axes = (0, 0) if obs_dim else (None, 0)
        return jax.vmap(ensemble, in_axes=in_axes)(obs, actions)

    def batched(ensemble, actions):
        return ensemble.batch_values(obs, actions)

    @eqx.filter_jit
    def values_and_grads(values_fn):  # gradients in the parameters and the actions
        def loss(both):
            return jnp.sum((values_fn(*both) - targets) ** 2)

        return values_fn(ensemble, actions), eqx.filter_grad(loss)((ensemble, actions))

    (values, new), (expected, old) = values_and_grads(batched), values_and_grads(per_sample)
    assert values.shape == (BATCH, 2)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(arrays(new), arrays(old), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_values_check_shapes():
    ensemble = nn.CriticEnsemble(ACTION_DIM, OBS_DIM, 16, 1, num_critics=2, key=jr.key(0))
    with pytest.raises(ValueError, match="actions of shape"):
        ensemble.batch_values(jnp.zeros((4, OBS_DIM)), jnp.zeros((4, ACTION_DIM + 1)))
    with pytest.raises(ValueError, match="cond of shape"):
        ensemble.batch_values(jnp.zeros((4, OBS_DIM + 1)), jnp.zeros((4, ACTION_DIM)))
    with pytest.raises(ValueError, match="cond must be given"):
        ensemble.batch_values(None, jnp.zeros((4, ACTION_DIM)))


def test_learned_critic_step_equals_the_per_sample_formulation():
    config = agents.CriticConfig(width=16, depth=1, num_critics=2, rho=0.5)
    critic = LearnedCritic.create(OBS_DIM, ACTION_DIM, config, jr.key(0))
    critic = eqx.tree_at(  # a target distinct from the online ensemble
        lambda c: c.target, critic, nn.ema_update(critic.target, critic.online.model, 0.0)
    )
    batch = random_batch(jr.key(1))
    next_actions = jr.uniform(jr.key(2), (BATCH, ACTION_DIM), minval=-1)

    def reference_step(critic):  # the previous LearnedCritic.step
        next_values = jax.vmap(critic.target)(batch.next_observations, next_actions)
        targets = jax.vmap(
            lambda r, m, q: nn.td_target(r, m, q, discount=config.discount, rho=config.rho)
        )(batch.rewards, batch.masks, next_values)

        def loss_fn(ensemble):
            values = jax.vmap(ensemble)(batch.observations, batch.actions)
            errors = jnp.mean((values - targets[:, None]) ** 2, axis=-1)
            loss = jnp.sum(batch.valid * errors) / jnp.sum(batch.valid)
            return loss, dict(critic_loss=loss, q_mean=jnp.mean(values))

        return critic.online.minimise(loss_fn)

    def step_and_means(critic):
        means = jax.vmap(critic.values)(batch.observations, next_actions).mean(-1)
        return (
            critic.step(batch, next_actions),
            critic.mean_values(batch.observations, next_actions),
            means,
        )

    (new, metrics), mean_values, expected_mean_values = eqx.filter_jit(step_and_means)(critic)
    online, expected = eqx.filter_jit(reference_step)(critic)
    for name in ("critic_loss", "q_mean"):
        np.testing.assert_allclose(metrics[name], expected[name], rtol=1e-5)
    for a, b in zip(arrays(new.online), arrays(online), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mean_values, expected_mean_values, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# alpha = 0: no teacher


def quadratic_critic(cond, action):
    return jnp.stack([-jnp.sum((action - 0.3) ** 2), -jnp.sum(action**2) + jnp.sum(cond)])


@pytest.mark.parametrize("normalise_q", [False, True])
def test_zero_alpha_skips_the_teacher_and_keeps_the_loss(normalise_q):
    net = agents.NetworkConfig(width=16, depth=1)
    one_step = OneStepDistilled.create(
        OBS_DIM, ACTION_DIM, net, agents.adam(1e-2), 0.0, normalise_q, jr.key(0)
    )
    critic = FixedCritic(quadratic_critic)
    batch, key = random_batch(jr.key(1)), jr.key(2)

    def teacher(observations, noise):
        raise AssertionError("the teacher ran at alpha = 0")

    new, metrics = eqx.filter_jit(one_step.step)(critic, batch, teacher, key)
    assert set(metrics) == {"q_loss"}

    # the full loss at alpha = 0 with some teacher: same loss, same update
    @eqx.filter_jit
    def reference_step(one_step):
        noise = jr.normal(key, batch.actions.shape)
        teacher_actions = jr.uniform(jr.key(3), noise.shape, minval=-1)
        return one_step.policy.minimise(
            lambda p: one_step_distillation_loss(
                p,
                teacher_actions,
                noise,
                batch.observations,
                critic.mean_values,
                0.0,
                normalise_q=normalise_q,
            )
        )

    policy, expected = reference_step(one_step)
    np.testing.assert_allclose(metrics["q_loss"], expected["q_loss"], rtol=1e-6)
    for a, b in zip(arrays(new.policy), arrays(policy), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["qam_fql", "fql"])
def test_agents_report_distillation_only_when_alpha_is_positive(name):
    # (QAM-FQL at alpha = 0 is plain QAM, which has no distillation either)
    batch = random_batch(jr.key(1))
    for alpha in (0.0, 3.0):
        config = tiny_config(name, alpha=alpha)
        agent = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), config)
        _, metrics = eqx.filter_eval_shape(agent.update_step, batch, jr.key(2))  # traced only
        assert ("distillation_loss" in metrics) == (alpha > 0), (name, alpha, sorted(metrics))
