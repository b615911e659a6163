"""Time samplers (issue 16, item 4): the adaptive sampler's importance weights keep every loss's
expectation equal to the uniform one's, its law keeps its floor, the uniform default reproduces
the losses as they were, and adaptation moves mass toward the bins whose loss falls most."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from hypothesis import given, strategies as st

import interpolant_rl as ir
import interpolant_rl.objectives as obj
from interpolant_rl import nn
from interpolant_rl.agents import Batch, default_config, flow_matching_step, make_agent, override


LINEAR = ir.LinearInterpolant()
VP = ir.VariancePreservingInterpolant()
BATCH, DIM, OBS = 32, 2, 3
# a deliberately lopsided state: bin 0 and the last bins favoured, bin 2 starved
SKEWED = obj.AdaptiveTimeSampler(jnp.array([2.0, 0.0, -3.0, 0.0, 1.0, 0.0, 0.5, 2.5]), floor=0.2)


@pytest.fixture(scope="module")
def problem():
    keys = jr.split(jr.key(0), 4)
    field = nn.VelocityField(DIM, OBS, 16, 2, key=keys[0])
    actions = jnp.tanh(jr.normal(keys[1], (BATCH, DIM)))
    cond = jr.normal(keys[2], (BATCH, OBS))
    valid = (jr.uniform(keys[3], (BATCH,)) > 0.2).astype(jnp.float32)
    return field, actions, cond, valid


def _average_field(field):
    return lambda t, s, x, c: field(t, x, c) * (1.0 + s - t)


def _jump_field(field):
    return lambda t, s, x, c: jnp.tanh(field(t, x, c)) * (1.0 + s - t)


def _losses(problem):
    """Each loss as `(key, time_sampler) -> scalar` on the fixed network and batch."""
    field, actions, cond, valid = problem
    gradient = lambda c, a: -a  # noqa: E731
    return {
        "flow_matching": lambda k, ts: obj.flow_matching_loss(
            LINEAR, field, actions, cond, k, weights=valid, time_sampler=ts
        ),
        "denoising": lambda k, ts: obj.denoising_loss(
            VP, field, actions, cond, k, weights=valid, time_sampler=ts
        ),
        "denoising_grid": lambda k, ts: obj.denoising_loss(
            VP, field, actions, cond, k, num_steps=5, time_sampler=ts
        ),
        "q_score_matching": lambda k, ts: obj.q_score_matching_loss(
            VP, field, actions, cond, gradient, k, q_scale=0.5, bc_weight=0.5, time_sampler=ts
        )[0],
        "soft_q_guidance": lambda k, ts: obj.soft_q_guidance_loss(
            VP, field, actions, cond, gradient, k, bc_weight=1.0, time_sampler=ts
        )[0],
        "meanflow": lambda k, ts: obj.meanflow_loss(
            LINEAR, _average_field(field), actions, cond, k, time_sampler=ts
        ),
        # groups of 4 particles of one state each; (t, r, s) from two draws of the sampler
        "moment_matching": lambda k, ts: obj.moment_matching_loss(
            LINEAR,
            _jump_field(field),
            _jump_field(field),
            actions[:, None],
            cond,
            k,
            noises=4,
            times=obj.SampledJumpTimes(ts, gap=0.5),
            weights=valid,
        ),
    }


@pytest.mark.parametrize("name", list(_losses((None,) * 4)))
def test_weighted_objective_is_unbiased(problem, name):
    """(a) On a fixed network, E[importance-weighted loss] under a skewed adaptive law equals the
    uniform-time loss's expectation, within 5 standard errors of the Monte-Carlo difference."""
    loss = _losses(problem)[name]
    draws = 600
    many = jax.jit(jax.vmap(loss, in_axes=(0, None)))
    uniform = np.asarray(many(jr.split(jr.key(1), draws), obj.UniformTimes()))
    adaptive = np.asarray(many(jr.split(jr.key(2), draws), SKEWED))
    se = np.sqrt(uniform.var(ddof=1) / draws + adaptive.var(ddof=1) / draws)
    assert abs(uniform.mean() - adaptive.mean()) < 5 * se, (uniform.mean(), adaptive.mean(), se)
    # and the law really is skewed: without the weights the mean moves (flow matching only,
    # whose error varies most with t)
    if name == "flow_matching":
        field, actions, cond, valid = problem
        t = SKEWED(jr.key(3), (20000,))
        counts = np.bincount(np.asarray(jnp.floor(t * 8), int), minlength=8) / 20000
        np.testing.assert_allclose(counts, SKEWED.probabilities(), atol=0.02)


@given(
    logits=st.sampled_from([1, 5, 12]).flatmap(  # few sizes: few compilations
        lambda k: st.lists(st.floats(-40.0, 40.0), min_size=k, max_size=k)
    ),
    floor=st.floats(0.01, 1.0),
)
def test_floor_and_bounded_weights(logits, floor):
    """(b) p_k >= floor/K, sum p = 1, weights (1/K)/p <= 1/floor, draws in [0, 1]."""
    sampler = obj.AdaptiveTimeSampler(jnp.asarray(logits, dtype=jnp.float32), floor=floor)
    k = len(logits)
    p = np.asarray(sampler.probabilities())
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(p >= floor / k * (1 - 1e-5))
    t = sampler(jr.key(0), (256,))
    assert np.all((t >= 0) & (t <= 1))
    w = np.asarray(sampler.importance_weights(t))
    assert np.all(w <= (1 / floor) * (1 + 1e-5)) and np.all(w > 0)
    grid, gw = sampler.grid_times(jr.key(1), (64,), 7)
    assert np.all(np.isin(np.round(np.asarray(grid) * 7), np.arange(7)))
    assert np.all(np.asarray(gw) <= (1 / floor) * (1 + 1e-5))


def test_invalid_settings():
    with pytest.raises(ValueError, match="floor"):
        obj.AdaptiveTimeSampler.uniform(4, floor=0.0)
    with pytest.raises(ValueError, match="num_bins"):
        obj.AdaptiveTimeSampler.uniform(0)
    # (under the tests' jaxtyping hook the Literal annotation rejects it first, as a TypeError)
    for name in ("fql", "qam_fql"):
        with pytest.raises((ValueError, TypeError), match="time_sampler"):
            override(default_config(name), time_sampler="beta")


def test_uniform_default_is_unchanged(problem):
    """(c) The default sampler reproduces the losses' former draws exactly (same key)."""
    field, actions, cond, valid = problem
    key = jr.key(7)
    time_key, noise_key = jr.split(key)
    x0 = jr.normal(noise_key, actions.shape)

    # flow matching as it was written before time samplers: t ~ jr.uniform(time_key)
    t = jr.uniform(time_key, (BATCH,))
    x_t = jax.vmap(LINEAR.interpolate)(x0, actions, t)
    target = jax.vmap(LINEAR.velocity_target)(x0, actions, t)
    prediction = jax.vmap(field)(t, x_t, cond)
    former = jnp.mean(valid * jnp.mean((prediction - target) ** 2, axis=-1))
    assert obj.flow_matching_loss(LINEAR, field, actions, cond, key, weights=valid) == former

    # denoising on the DDPM grid: t = randint(0, T) / T
    t = jr.randint(time_key, (BATCH,), 0, 5).astype(jnp.float32) / 5
    x_t = jax.vmap(VP.interpolate)(x0, actions, t)
    former = jnp.mean(jnp.mean((jax.vmap(field)(t, x_t, cond) - x0) ** 2, axis=-1))
    assert obj.denoising_loss(VP, field, actions, cond, key, num_steps=5) == former

    # MeanFlow: the default is still its logit-normal law, drawn as before
    u = _average_field(field)
    draws = jax.nn.sigmoid(0.4 + jr.normal(jr.split(key, 3)[1], (2, BATCH)))
    assert jnp.array_equal(obj.LogitNormalTimes()(jr.split(key, 3)[1], (2, BATCH)), draws)
    assert obj.meanflow_loss(LINEAR, u, actions, cond, key) == obj.meanflow_loss(
        LINEAR, u, actions, cond, key, time_sampler=obj.LogitNormalTimes()
    )
    for sampler in (obj.UniformTimes(), obj.LogitNormalTimes()):
        assert sampler.importance_weights(t) is None


def test_flow_matching_step_is_unchanged(problem):
    """(c) The agents' behaviour step with the uniform sampler is the former step."""
    field, actions, cond, valid = problem
    trained = ir.agents.Trained.create(field, ir.agents.adam(1e-3))
    batch = Batch(cond, actions, valid, valid, cond, valid)
    key = jr.key(4)

    def former(model):
        loss = obj.flow_matching_loss(LINEAR, model, actions, cond, key, weights=valid)
        return loss, loss

    expected, expected_loss = trained.minimise(former)
    stepped, loss = flow_matching_step(trained, batch, key)
    assert loss == expected_loss
    assert all(
        jnp.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(eqx.filter(stepped, eqx.is_array)),
            jax.tree.leaves(eqx.filter(expected, eqx.is_array)),
            strict=True,
        )
    )
    same, calls = obj.UniformTimes(), []
    assert same.adapt(lambda m, t: calls.append(1), None, None, key, 4) is same and not calls


def test_adaptation_prefers_larger_decrease():
    """(d) Bins whose loss falls most gain probability; at a stationary reward the logits
    approach r / entropy (the EMA's fixed point)."""
    sampler = obj.AdaptiveTimeSampler.uniform(8, learning_rate=0.1, entropy=1.0)

    # the "model" is a scale: loss(t) = scale * (1 + 4 t); a step halves the scale, so the
    # decrease is largest on the late bins
    def errors(scale, times):
        return scale * (1.0 + 4.0 * times)

    adapted = sampler.adapt(errors, 1.0, 0.5, jr.key(0), 64)
    p = np.asarray(adapted.probabilities())
    assert np.all(np.diff(p) > 0), p  # monotone in the decrease
    assert p[-1] > 1 / 8 > p[0]

    # a constant per-bin reward: two bins decrease, the rest do not
    bins = jnp.arange(64) % 8
    decrease = jnp.where((bins == 2) | (bins == 5), 1.0, 0.0)
    step = jax.jit(lambda s: s.with_decrease(bins, decrease))
    for _ in range(200):
        sampler = step(sampler)
    reward = np.where(np.isin(np.arange(8), [2, 5]), 1.0, 0.0) / (2 / 8)
    np.testing.assert_allclose(sampler.logits, reward - reward.mean(), atol=1e-3)
    p = np.asarray(sampler.probabilities())
    assert np.argsort(p)[-2:].tolist() in ([2, 5], [5, 2])
    assert p.min() >= sampler.floor / 8


def test_fql_carries_and_adapts_the_sampler():
    """The agent holds the sampler's state and updates it every step (tiny FQL)."""
    config = override(
        default_config("fql"),
        width=8,
        depth=1,
        flow_steps=2,
        num_critics=2,
        time_sampler="adaptive",
    )
    agent = make_agent("fql", OBS, DIM, jr.key(0), config)
    assert isinstance(agent.time_sampler, obj.AdaptiveTimeSampler)
    keys = jr.split(jr.key(1), 3)
    n, b = 3, 16
    batch = Batch(
        jr.normal(keys[0], (n, b, OBS)),
        jnp.tanh(jr.normal(keys[1], (n, b, DIM))),
        jnp.zeros((n, b)),
        jnp.ones((n, b)),
        jr.normal(keys[2], (n, b, OBS)),
        jnp.ones((n, b)),
    )
    updated, metrics = agent.update(batch, jr.key(2))
    logits = np.asarray(updated.time_sampler.logits)
    assert np.all(np.isfinite(logits)) and not np.allclose(logits, 0.0)
    assert np.all(np.isfinite(np.asarray(metrics["flow_matching_loss"])))


def test_sampled_jump_times_are_ordered_and_weighted():
    """SampledJumpTimes: t <= r <= s from two draws; uniform draws carry no weights, adaptive
    ones the product of the two draws' weights."""
    uniform = obj.SampledJumpTimes(obj.UniformTimes(), gap=0.25)
    t, r, s = jax.vmap(uniform)(jr.split(jr.key(0), 1000))
    assert bool(jnp.all((t <= r) & (r <= s))) and uniform.importance_weight(t[0], s[0]) is None
    np.testing.assert_allclose(np.asarray(r), np.asarray(t + 0.25 * (s - t)), rtol=1e-6)
    skewed = obj.SampledJumpTimes(SKEWED)
    w = SKEWED.importance_weights(jnp.array([0.05, 0.3]))
    np.testing.assert_allclose(skewed.importance_weight(0.05, 0.3), w[0] * w[1], rtol=1e-6)
    with pytest.raises(ValueError, match="gap must lie in"):
        obj.SampledJumpTimes(gap=1.5)
