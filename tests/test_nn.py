"""`interpolant_rl.nn`: shapes, batching, the critic ensemble against its members, the pessimistic
and TD targets in closed form, EMA updates, and the tanh-Gaussian log-density against the change
of variables computed independently in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import nn


WIDTH, DEPTH = 16, 2
ACTION_DIM, OBS_DIM, NUM_CRITICS = 3, 4, 5


def member(ensemble, index):
    """The `index`-th critic of a stacked ensemble, sliced from the array leaves."""
    return jax.tree_util.tree_map(
        lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, ensemble.critics
    )


def test_mlp_layers_and_depth_zero():
    key = jr.PRNGKey(0)
    mlp = nn.MLP(3, 2, WIDTH, DEPTH, layer_norm=True, key=key)
    assert len(mlp.layers) == DEPTH + 1 and len(mlp.norms) == DEPTH
    assert mlp(jnp.ones(3)).shape == (2,)
    assert not nn.MLP(3, 2, WIDTH, DEPTH, key=key).norms
    # depth=0: one affine map; biases start at zero; final_scale scales the output layer.
    linear = nn.MLP(3, 2, WIDTH, 0, key=key)
    x = jnp.array([0.5, -1.0, 2.0])
    (layer,) = linear.layers
    np.testing.assert_allclose(linear(x), layer.weight @ x + layer.bias, rtol=1e-6)
    np.testing.assert_array_equal(layer.bias, 0.0)
    scaled = nn.MLP(3, 2, WIDTH, 0, final_scale=0.1, key=key)
    np.testing.assert_allclose(scaled.layers[0].weight, 0.1 * layer.weight, rtol=1e-6)
    with pytest.raises(ValueError, match="in_size"):
        nn.MLP(0, 2, WIDTH, DEPTH, key=key)
    with pytest.raises(ValueError, match="depth"):
        nn.MLP(3, 2, WIDTH, -1, key=key)


def networks(key):
    keys = jr.split(key, 5)
    return (
        nn.VelocityField(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=keys[0]),
        nn.TwoTimeField(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=keys[1]),
        nn.OneStepPolicy(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=keys[2]),
        nn.TanhGaussianPolicy(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=keys[3]),
        nn.CriticEnsemble(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, num_critics=NUM_CRITICS, key=keys[4]),
    )


def apply_all(nets, obs, x, t, s, key):
    field, two_time, one_step, gaussian, critic = nets
    action, log_prob = gaussian.sample_and_log_prob(obs, key)
    return (
        field(t, x, obs),
        two_time(t, s, x, obs),
        one_step(x, obs),
        action,
        log_prob,
        gaussian.mode(obs),
        critic(obs, x),
    )


def test_shapes_and_jit_vmap_over_a_batch():
    nets = networks(jr.PRNGKey(1))
    batch = 6
    k_obs, k_x, k_t, k_sample = jr.split(jr.PRNGKey(2), 4)
    obs = jr.normal(k_obs, (batch, OBS_DIM))
    x = jr.normal(k_x, (batch, ACTION_DIM))
    t = jr.uniform(k_t, (batch,))
    s = 0.5 * (1.0 + t)
    keys = jr.split(k_sample, batch)

    batched = eqx.filter_jit(jax.vmap(apply_all, in_axes=(None, 0, 0, 0, 0, 0)))
    outputs = batched(nets, obs, x, t, s, keys)
    shapes = [(batch, ACTION_DIM)] * 4 + [(batch,), (batch, ACTION_DIM), (batch, NUM_CRITICS)]
    assert [out.shape for out in outputs] == shapes
    # Batched under jit = one sample at a time, eagerly.
    single = apply_all(nets, obs[3], x[3], t[3], s[3], keys[3])
    for out, one in zip(outputs, single, strict=True):
        np.testing.assert_allclose(out[3], one, rtol=1e-5, atol=1e-5)
    # The two times of a TwoTimeField are distinct inputs.
    two_time = nets[1]
    assert not np.allclose(two_time(0.2, 0.7, x[0], obs[0]), two_time(0.7, 0.2, x[0], obs[0]))


def test_conditioning_errors_and_unconditional_networks():
    key = jr.PRNGKey(3)
    field = nn.VelocityField(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=key)
    x = jnp.zeros(ACTION_DIM)
    with pytest.raises(ValueError, match="cond must be given"):
        field(0.5, x, None)
    with pytest.raises(ValueError, match="cond of shape"):
        field(0.5, x, jnp.zeros(OBS_DIM + 1))
    with pytest.raises(ValueError, match="input vector of shape"):
        field(0.5, jnp.zeros(ACTION_DIM + 1), jnp.zeros(OBS_DIM))
    unconditional = nn.VelocityField(ACTION_DIM, 0, WIDTH, DEPTH, key=key)
    assert unconditional(0.5, x, None).shape == (ACTION_DIM,)
    with pytest.raises(ValueError, match="obs_dim=0"):
        unconditional(0.5, x, jnp.zeros(OBS_DIM))
    critic = nn.CriticEnsemble(ACTION_DIM, 0, WIDTH, DEPTH, num_critics=2, key=key)
    assert critic(None, x).shape == (2,)
    with pytest.raises(ValueError, match="obs_dim >= 1"):
        nn.TanhGaussianPolicy(ACTION_DIM, 0, WIDTH, DEPTH, key=key)
    with pytest.raises(ValueError, match="log_std_min < log_std_max"):
        nn.TanhGaussianPolicy(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, log_std_min=3.0, key=key)
    with pytest.raises(ValueError, match="num_critics"):
        nn.CriticEnsemble(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, num_critics=0, key=key)


def test_critic_ensemble_equals_its_members():
    critic = nn.CriticEnsemble(
        ACTION_DIM, OBS_DIM, WIDTH, DEPTH, num_critics=NUM_CRITICS, key=jr.PRNGKey(4)
    )
    assert critic.critics.layers[0].weight.shape == (NUM_CRITICS, WIDTH, OBS_DIM + ACTION_DIM)
    assert len(critic.critics.norms) == DEPTH  # LayerNorm on by default
    obs = jnp.linspace(-1.0, 1.0, OBS_DIM)
    action = jnp.array([0.3, -0.2, 0.9])
    values = critic(obs, action)
    members = [member(critic, k)(jnp.concatenate([obs, action]))[0] for k in range(NUM_CRITICS)]
    np.testing.assert_allclose(values, np.array(members), rtol=1e-5, atol=1e-6)
    # Different initialisations: every member differs from every other.
    weights = np.asarray(critic.critics.layers[0].weight).reshape(NUM_CRITICS, -1)
    assert np.all(np.abs(weights[:, None] - weights[None]).max(-1) + np.eye(NUM_CRITICS) > 0)
    assert len(np.unique(np.round(np.asarray(values), 6))) == NUM_CRITICS


def test_pessimistic_and_td_target():
    values = np.array([[1.0, 2.0, 4.0, -0.5], [0.3, 0.3, 0.3, 0.3]], dtype=np.float32)
    rho = 0.7
    expected = values.mean(-1) - rho * values.std(-1)
    np.testing.assert_allclose(nn.pessimistic(jnp.asarray(values), rho), expected, rtol=1e-6)
    np.testing.assert_allclose(nn.pessimistic(jnp.asarray(values[0]), 0.0), values[0].mean())

    next_values = jnp.asarray(values[0])
    target = nn.td_target(2.0, 1.0, next_values, discount=0.9, horizon=5, rho=rho)
    np.testing.assert_allclose(target, 2.0 + 0.9**5 * expected[0], rtol=1e-6)
    assert nn.td_target(2.0, 0.0, next_values, discount=0.9, horizon=5, rho=rho) == 2.0
    one_step = nn.td_target(-1.0, jnp.array(True), next_values, discount=0.99)
    np.testing.assert_allclose(one_step, -1.0 + 0.99 * values[0].mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="horizon"):
        nn.td_target(0.0, 1.0, next_values, discount=0.9, horizon=0)


def test_ema_update():
    target = nn.CriticEnsemble(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, num_critics=2, key=jr.PRNGKey(5))
    online = nn.CriticEnsemble(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, num_critics=2, key=jr.PRNGKey(6))

    def arrays(module):
        return jax.tree_util.tree_leaves(eqx.filter(module, eqx.is_array))

    for rate, expected in [
        (1.0, lambda a, b: b),
        (0.0, lambda a, b: a),
        (0.5, lambda a, b: 0.5 * (a + b)),
    ]:
        updated = nn.ema_update(target, online, rate)
        assert updated.critics.activation is target.critics.activation
        for new, a, b in zip(arrays(updated), arrays(target), arrays(online), strict=True):
            np.testing.assert_allclose(new, expected(a, b), rtol=1e-6, atol=1e-7)
    # Integer array leaves are kept from the target.
    counters = nn.ema_update(
        {"w": jnp.ones(2), "step": jnp.array(3)}, {"w": jnp.zeros(2), "step": jnp.array(7)}, 0.5
    )
    assert int(counters["step"]) == 3
    np.testing.assert_allclose(counters["w"], 0.5)


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
    action_dim = 2
    policy = nn.TanhGaussianPolicy(action_dim, OBS_DIM, WIDTH, DEPTH, key=jr.PRNGKey(7))
    obs = jnp.array([0.5, -1.0, 0.25, 2.0])
    n = 4000
    keys = jr.split(jr.PRNGKey(8), n)
    sample = eqx.filter_jit(jax.vmap(policy.sample_and_log_prob, in_axes=(None, 0)))
    actions, log_probs = sample(obs, keys)
    actions, log_probs = np.asarray(actions), np.asarray(log_probs)
    assert actions.shape == (n, action_dim) and log_probs.shape == (n,)
    assert np.all(np.abs(actions) < 1.0)

    mean, log_std = (np.asarray(a, dtype=np.float64) for a in policy(obs))
    std = np.exp(log_std)
    # log pi(a) = log N(atanh a; mean, std) - log(1 - a^2), in float64 from the actions alone.
    a = actions.astype(np.float64)
    u = np.arctanh(a)
    log_normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    reference = np.sum(log_normal - np.log1p(-(a**2)), axis=-1)
    inside = np.all(np.abs(a) < 0.99, axis=-1)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(log_probs[inside], reference[inside], atol=1e-4, rtol=1e-4)
    # `log_prob` of a given action agrees with the sampled log-density.
    given = jax.vmap(policy.log_prob, in_axes=(None, 0))(obs, jnp.asarray(actions[:200]))
    np.testing.assert_allclose(
        np.asarray(given)[inside[:200]], log_probs[:200][inside[:200]], atol=2e-3, rtol=1e-3
    )
    # Monte-Carlo: the actions are tanh(mean + std * eps).
    eps = np.random.default_rng(0).standard_normal((200_000, action_dim))
    expected_mean = np.tanh(mean + std * eps).mean(0)
    standard_error = actions.std(0) / np.sqrt(n)
    assert np.all(np.abs(actions.mean(0) - expected_mean) < 5 * standard_error + 1e-3)
    np.testing.assert_allclose(policy.mode(obs), np.tanh(mean), rtol=1e-5, atol=1e-6)


def test_tanh_gaussian_saturated_actions_stay_inside():
    policy = nn.TanhGaussianPolicy(1, OBS_DIM, WIDTH, 0, key=jr.PRNGKey(9))
    # Mean +-30, log-std at its maximum: tanh rounds to +-1 in float32 without the clip.
    policy = eqx.tree_at(
        lambda p: (p.mlp.layers[0].weight, p.mlp.layers[0].bias),
        policy,
        (jnp.zeros((2, OBS_DIM)), jnp.array([30.0, 2.0])),
    )
    obs = jnp.zeros(OBS_DIM)
    for key in jr.split(jr.PRNGKey(10), 3):
        action, log_prob = policy.sample_and_log_prob(obs, key)
        assert np.all(np.abs(action) < 1.0) and np.isfinite(log_prob)
    assert np.all(np.abs(policy.mode(obs)) < 1.0)


def test_velocity_field_drives_sample():
    field = nn.VelocityField(ACTION_DIM, OBS_DIM, WIDTH, DEPTH, key=jr.PRNGKey(11))
    ode = ir.ProbabilityFlowODE(ir.LinearInterpolant(), field)
    obs = jnp.array([0.1, 0.2, -0.3, 1.0])
    x0 = jnp.array([1.0, -0.5, 0.25])
    x1 = ir.sample(ode, x0, cond=obs, num_steps=3)
    # Euler by hand on the grid 0, 1/3, 2/3.
    x, h = x0, 1.0 / 3.0
    for k in range(3):
        x = x + h * field(k * h, x, obs)
    np.testing.assert_allclose(x1, x, rtol=1e-5, atol=1e-6)
