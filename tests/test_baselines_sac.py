"""The QAM paper's SAC-family baselines and FEdit: the SAC pieces (tanh-Gaussian density and
entropy estimate, temperature direction, soft TD rewards), DSRL's noise bound and distillation
target, FEdit's L-infinity edit ball, and RLPD's online-only schedule (random actions, exact
resume, run.py defaults)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st
from scipy import stats
from test_train import _rows, DATA, eqx_arrays, PointMass

from interpolant_rl import agents, train
from interpolant_rl.agents import AbstractAgent, AbstractPolicy, FixedCritic, SoftActor
from interpolant_rl.nn import TanhGaussianPolicy
from interpolant_rl.objectives import (
    sac_actor_loss,
    soft_td_rewards,
    Temperature,
    temperature_loss,
)
from interpolant_rl.testing import QuadraticCritic


OBS_DIM, ACTION_DIM = 3, 2


def tiny(name, **changes):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    if hasattr(config, "flow_steps"):
        config = dataclasses.replace(config, flow_steps=3)
    return dataclasses.replace(config, **changes)


def with_output_bias(network, bias):
    """`network` (anything with an `mlp`) with all weights zero and the output bias `bias`: a
    constant function."""
    arrays, rest = eqx.partition(network, eqx.is_array)
    network = eqx.combine(jax.tree.map(jnp.zeros_like, arrays), rest)
    return eqx.tree_at(lambda n: n.mlp.layers[-1].bias, network, jnp.asarray(bias, jnp.float32))


# ---------------------------------------------------------------------------------------------
# SAC pieces


def test_tanh_gaussian_entropy_estimate_matches_the_change_of_variables():
    # a constant 1-d policy u ~ N(0.4, 0.7^2), a = tanh(u)
    mean, std = 0.4, 0.7
    policy = with_output_bias(TanhGaussianPolicy(1, 1, 16, 1, key=jr.key(0)), [mean, np.log(std)])
    # the density integrates to one over (-1, 1): substitute a = tanh(u), da = (1 - a^2) du
    u = np.linspace(mean - 9 * std, mean + 9 * std, 20001)
    a = np.tanh(u)
    log_p = np.asarray(jax.vmap(lambda x: policy.log_prob(jnp.zeros(1), x[None]))(jnp.asarray(a)))
    density_u = np.exp(log_p) * (1 - a**2)
    assert abs(np.trapezoid(density_u, u) - 1.0) < 1e-3
    # entropy of a = tanh(u): H = -E log pi(a), by quadrature against the Gaussian in float64
    gauss = stats.norm(mean, std)
    log_pi = gauss.logpdf(u) - np.log1p(-(np.tanh(u) ** 2))
    exact_entropy = -np.trapezoid(gauss.pdf(u) * log_pi, u)
    # the SAC loss's Monte-Carlo estimate, from reparameterised samples
    n = 20000
    _, metrics = sac_actor_loss(
        policy, jnp.zeros((n, 1)), lambda s, x: jnp.zeros(s.shape[0]), 0.0, jr.key(1)
    )
    spread = np.sqrt(np.trapezoid(gauss.pdf(u) * log_pi**2, u) - exact_entropy**2)
    assert abs(float(metrics["entropy"]) - exact_entropy) < 5 * spread / np.sqrt(n)
    # and the actions follow the law of tanh(u): empirical CDF vs Phi((atanh c - mean) / std)
    keys = jr.split(jr.key(1), n)
    actions, _ = jax.vmap(policy.sample_and_log_prob)(jnp.zeros((n, 1)), keys)
    for c in (-0.5, 0.0, 0.3, 0.8):
        empirical = float(np.mean(np.asarray(actions[:, 0]) <= c))
        assert abs(empirical - gauss.cdf(np.arctanh(c))) < 5 * 0.5 / np.sqrt(n)


@eqx.filter_jit
def sac_step(actor, observations, key):
    return actor.step(lambda s, a: jnp.sum(a, -1), observations, key)


def test_temperature_moves_toward_the_target_entropy():
    # the loss's gradient in log alpha is the entropy gap: below the target, gradient descent
    # raises alpha; above it, lowers alpha
    temperature = Temperature(0.5)
    for entropy, target in ((-3.0, -1.0), (2.0, -1.0)):
        grad = jax.grad(temperature_loss)(temperature, entropy, target)
        assert float(grad.log_alpha) == pytest.approx(entropy - target)
    # through a SAC step: a nearly deterministic policy (log-std at its floor) has an entropy
    # far below the target -d/2, so alpha rises
    key = jr.key(2)
    actor = SoftActor.create(
        OBS_DIM, ACTION_DIM, agents.NetworkConfig(16, 1), 3e-4, None, 1.0, -0.5, key
    )
    policy = with_output_bias(actor.policy.model, [0.1, -0.2, -5.0, -5.0])
    actor = eqx.tree_at(lambda a: a.policy.model, actor, policy)
    new, metrics = sac_step(actor, jr.normal(key, (64, OBS_DIM)), key)
    assert actor.target_entropy == -1.0 and float(metrics["entropy"]) < -1.0
    assert float(new.alpha) > float(actor.alpha)


def test_soft_td_rewards_give_the_soft_target():
    key1, key2, key3 = jr.split(jr.key(3), 3)
    r, log_pi, q_next = jr.normal(key1, (5,)), jr.normal(key2, (5,)), jr.normal(key3, (5,))
    mask, alpha, gamma = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0]), 0.3, 0.99**5
    soft = soft_td_rewards(r, mask, log_pi, alpha, gamma) + gamma * mask * q_next
    np.testing.assert_allclose(soft, r + gamma * mask * (q_next - alpha * log_pi), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# DSRL


@eqx.filter_jit
def distillation_targets(agents_, obs, noise):
    return [agent.distillation_targets(obs, noise) for agent in agents_]


def test_dsrl_distillation_target_is_the_critic_at_the_flow_action():
    agent = agents.make_agent("dsrl", OBS_DIM, ACTION_DIM, jr.key(4), tiny("dsrl"))
    # a constant velocity c: the 3-step Euler map is exactly z -> z + c
    shift = jnp.array([0.3, -0.7])
    agent = eqx.tree_at(lambda a: a.flow, agent, with_output_bias(agent.flow, shift))
    obs, noise = jr.normal(jr.key(5), (16, OBS_DIM)), 1.5 * jr.normal(jr.key(6), (16, ACTION_DIM))
    actions = jnp.clip(noise + shift, -1.0, 1.0)
    quadratic = QuadraticCritic(jnp.eye(ACTION_DIM), jnp.array([1.0, -2.0]))
    known = eqx.tree_at(lambda a: a.critic, agent, FixedCritic(quadratic))
    learned_targets, known_targets = distillation_targets((agent, known), obs, noise)
    # the learned critic: member k of the target is member k of Q at clip(z + c)
    expected = jax.vmap(agent.critic.online.model)(obs, actions)
    np.testing.assert_allclose(learned_targets, expected, atol=1e-5)
    # a known critic: Q(a) = -|a|^2 / 2 + b.a
    expected = jax.vmap(lambda a: -0.5 * a @ a + a @ jnp.array([1.0, -2.0]))(actions)
    np.testing.assert_allclose(known_targets[:, 0], expected, atol=1e-5)


@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.05, 2.0),
    magnitude=st.sampled_from([1.0, 100.0]),
)
def test_dsrl_noise_is_bounded_by_the_noise_scale(seed, scale, magnitude):
    config = tiny("dsrl", noise_scale=scale)
    agent = agents.make_agent("dsrl", OBS_DIM, ACTION_DIM, jr.key(seed), config)
    obs = magnitude * jr.normal(jr.key(seed + 1), (64, OBS_DIM))  # large inputs saturate tanh
    noise = np.asarray(agent.noise_actions(obs, jr.key(seed + 2)))
    assert np.all(np.abs(noise) <= scale) and np.all(np.isfinite(noise))


def test_dsrl_acts_through_the_flow_of_its_bounded_noise():
    agent = agents.make_agent("dsrl", OBS_DIM, ACTION_DIM, jr.key(7), tiny("dsrl", noise_scale=0.4))
    # the zero velocity field: the flow is the identity, so actions are the noises themselves
    agent = eqx.tree_at(lambda a: a.flow, agent, with_output_bias(agent.flow, jnp.zeros(2)))
    obs = 10.0 * jr.normal(jr.key(8), (256, OBS_DIM))
    actions = np.asarray(agent.act(obs, jr.key(9)))
    np.testing.assert_allclose(actions, agent.noise_actions(obs, jr.key(9)), atol=1e-6)
    assert np.all(np.abs(actions) <= 0.4)


# ---------------------------------------------------------------------------------------------
# FEdit


@eqx.filter_jit
def base_and_edited(agent, obs, key):
    flow_key, _ = jr.split(key)  # as FEdit.policy splits its key
    return agent.base_actions(obs, flow_key), agent.policy(obs, key)


@given(
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([0.0, 0.2, 1.0]),  # a static field: one compilation each
    saturate=st.sampled_from([0.0, 30.0, -30.0]),
)
def test_fedit_edit_stays_in_its_linf_ball(seed, scale, saturate):
    config = tiny("fedit", edit_scale=scale)
    agent = agents.make_agent("fedit", OBS_DIM, ACTION_DIM, jr.key(seed), config)
    if saturate:  # an edit policy at the edge of its range: e = +-(1 - ulp)
        edit = agent.edit.policy.model
        bias = edit.mlp.layers[-1].bias.at[:ACTION_DIM].set(saturate)
        edit = eqx.tree_at(lambda p: p.mlp.layers[-1].bias, edit, bias)
        agent = eqx.tree_at(lambda a: a.edit.policy.model, agent, edit)
    obs = 3.0 * jr.normal(jr.key(seed + 1), (32, OBS_DIM))
    base, actions = map(np.asarray, base_and_edited(agent, obs, jr.key(seed + 2)))
    assert np.all(np.abs(base) <= 1.0) and np.all(np.abs(actions) <= 1.0)
    assert np.all(np.abs(actions - base) <= scale + 1e-6)
    if saturate:  # unclipped coordinates sit on the sphere of radius lambda
        inside = np.abs(base + np.sign(saturate) * scale) < 1.0
        np.testing.assert_allclose(
            np.abs(actions - base)[inside], scale, atol=1e-5 * max(scale, 1.0) + 1e-6
        )


# ---------------------------------------------------------------------------------------------
# RLPD and the online schedule


class ConstantAgent(AbstractAgent):
    """Acts 0.5 everywhere and counts its updates."""

    critic: FixedCritic
    updates: jax.Array

    def actor_step(self, batch, key):
        return ConstantAgent(self.critic, self.updates + 1), dict(updates=self.updates + 1.0)

    def acting_policy(self):
        return ConstantPolicy()


class ConstantPolicy(AbstractPolicy):
    def __call__(self, observations, key):
        return jnp.full((observations.shape[0], 2), 0.5)  # horizon 2, one-dimensional actions


class Recording(PointMass):
    def reset(self, *, seed=None, options=None):
        self.__dict__.setdefault("actions", [])
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(float(action[0]))
        return super().step(action)


def test_random_action_steps_are_uniform_then_the_agent_acts(tmp_path):
    critic = FixedCritic(QuadraticCritic(jnp.eye(2), jnp.zeros(2)), horizon=2)
    agent = ConstantAgent(critic, jnp.asarray(0.0))
    config = train.TrainConfig(
        offline_steps=0,
        online_steps=300,
        random_action_steps=201,  # odd: one chunk of horizon 2 is half random, half the agent's
        batch_size=8,
        eval_interval=10_000,
        eval_episodes=1,
        checkpoint_interval=10_000,
        seed=3,
    )
    env = Recording()
    agent, _ = train.train(agent, DATA, env, config, tmp_path)
    actions = np.asarray(env.actions[:300])  # (evaluation steps follow)
    random, acted = actions[:201], actions[201:]
    assert np.all(acted == 0.5) and not np.any(random == 0.5)
    assert np.all(np.abs(random) <= 1.0)
    assert stats.kstest(random, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert int(agent.updates) == 300 - 201  # utd 1: one update per non-random step
    assert min(row["step"] for row in _rows(tmp_path, "train")) > 201


def test_rlpd_online_only_with_random_steps_resumes_exactly(tmp_path):
    # horizon 1: every online call makes one update, so it compiles once
    config = agents.override(tiny("rlpd"), horizon=1, discount=0.99)
    schedule = train.TrainConfig(
        offline_steps=0,
        online_steps=40,
        random_action_steps=20,
        batch_size=16,
        eval_interval=20,
        eval_episodes=1,
        checkpoint_interval=10,
        seed=1,
    )

    # one initial agent for the three runs: its optimisers' static functions key the jit caches
    initial = agents.make_agent("rlpd", 1, 1, jax.random.key(0), config)
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full, _ = train.train(initial, DATA, PointMass(), schedule, full_dir)

    def crash(steps, info):  # a crash, not Ctrl-C: the last episode-end checkpoint survives
        crash.done += steps
        if crash.done >= 25:
            raise RuntimeError("crash")

    crash.done = 0
    with pytest.raises(RuntimeError, match="crash"):
        train.train(initial, DATA, PointMass(), schedule, cut_dir, progress=crash)
    saved = train.read_checkpoint_header(cut_dir / "checkpoint.eqx")["step"]
    assert 10 <= saved < 25  # inside the random phase or just after it
    resumed, _ = train.train(initial, DATA, PointMass(), schedule, cut_dir, resume=True)
    for a, b in zip(
        jax.tree.leaves(eqx_arrays(full)), jax.tree.leaves(eqx_arrays(resumed)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert _rows(full_dir, "train") == _rows(cut_dir, "train")
    assert _rows(full_dir, "eval") == _rows(cut_dir, "eval")
    assert min(row["step"] for row in _rows(full_dir, "train")) > 20


def test_run_py_trains_rlpd_online_only():
    from experiments import run

    cpu = run.resolve(run.RunConfig(agent="rlpd"))
    assert (cpu.offline_steps, cpu.online_steps, cpu.random_action_steps) == (0, 20_000, 1000)
    paper = run.resolve(run.RunConfig(agent="rlpd", preset="paper"))
    assert (paper.offline_steps, paper.online_steps, paper.random_action_steps) == (
        0,
        500_000,
        5000,
    )
    mine = run.resolve(run.RunConfig(agent="rlpd", offline_steps=10, random_action_steps=7))
    assert (mine.offline_steps, mine.random_action_steps) == (10, 7)
    other = run.resolve(run.RunConfig(agent="fql"))
    assert (other.offline_steps, other.online_steps, other.random_action_steps) == (20_000, 0, 0)
    with pytest.raises(ValueError, match="random_action_steps"):
        train.TrainConfig(random_action_steps=-1)
