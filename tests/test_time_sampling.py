"""Time samplers (issue 16, item 4): the adaptive samplers' importance weights keep every loss's
expectation equal to the uniform one's, their laws keep their floor, the uniform default
reproduces the losses as they were, the look-ahead law moves mass toward the bins whose loss
falls most, the variance-minimising law toward p_k proportional to sqrt(E[loss^2 | bin k]), and
the gradient-norm law toward p_k proportional to sqrt(E[|grad_theta loss|^2 | bin k])."""

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
# the variance-minimising law in a lopsided state: bins 0 and 6 favoured, bin 2 starved, bin 5
# never probed (it takes the mean root moment)
SKEWED_VARIANCE = obj.VarianceMinimisingTimeSampler(
    jnp.array([4.0, 0.05, 0.0, 0.2, 0.5, 0.0, 3.0, 0.5]),
    jnp.array([0.5, 0.5, 0.5, 0.5, 0.25, 0.0, 0.3, 0.5]),
    floor=0.1,
)
# the gradient-norm law in the same lopsided state (its state has the same shape and law)
SKEWED_GRADIENT = obj.GradientNormTimeSampler(
    SKEWED_VARIANCE.second_moments, SKEWED_VARIANCE.mass, floor=0.1
)
SKEWED_LAWS = {
    "look_ahead": SKEWED,
    "variance_minimising": SKEWED_VARIANCE,
    "gradient_norm": SKEWED_GRADIENT,
}


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


# Every loss under one law; the other laws on two losses only: the importance weights are the
# shared base class's (a law only changes the probabilities), so the loss x law grid adds
# compilations, not coverage
UNBIASED_CASES = [(name, "look_ahead") for name in _losses((None,) * 4)] + [
    (name, law)
    for law in SKEWED_LAWS
    if law != "look_ahead"
    for name in ("flow_matching", "denoising")
]


@pytest.mark.parametrize(("name", "law"), UNBIASED_CASES)
def test_weighted_objective_is_unbiased(problem, name, law):
    """(a) On a fixed network, E[importance-weighted loss] under a skewed adaptive law (each
    adaptation law's sampler) equals the uniform-time loss's expectation, within 5 standard
    errors of the Monte-Carlo difference."""
    sampler = SKEWED_LAWS[law]
    loss = _losses(problem)[name]
    draws = 600
    many = jax.jit(jax.vmap(loss, in_axes=(0, None)))
    uniform = np.asarray(many(jr.split(jr.key(1), draws), obj.UniformTimes()))
    adaptive = np.asarray(many(jr.split(jr.key(2), draws), sampler))
    se = np.sqrt(uniform.var(ddof=1) / draws + adaptive.var(ddof=1) / draws)
    assert abs(uniform.mean() - adaptive.mean()) < 5 * se, (uniform.mean(), adaptive.mean(), se)
    # and the law really is skewed: draws follow the bin law, far from uniform (flow matching
    # only: the check does not depend on the loss)
    if name == "flow_matching":
        t = sampler(jr.key(3), (20000,))
        counts = np.bincount(np.asarray(jnp.floor(t * 8), int), minlength=8) / 20000
        p = np.asarray(sampler.probabilities())
        np.testing.assert_allclose(counts, p, atol=0.02)
        assert p.max() > 2 * p.min() and p.max() > 0.2


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
    with pytest.raises(ValueError, match="floor"):
        obj.VarianceMinimisingTimeSampler.uniform(4, floor=1.5)
    with pytest.raises(ValueError, match="rate"):
        obj.VarianceMinimisingTimeSampler.uniform(4, rate=0)
    with pytest.raises(ValueError, match="num_bins"):
        obj.VarianceMinimisingTimeSampler.uniform(0)
    with pytest.raises((ValueError, TypeError), match="mass"):  # TypeError: the jaxtyping hook
        obj.VarianceMinimisingTimeSampler(jnp.zeros(4), jnp.zeros(3))
    with pytest.raises(ValueError, match="floor"):
        obj.GradientNormTimeSampler.uniform(4, floor=0.0)
    with pytest.raises(ValueError, match="rate"):
        obj.GradientNormTimeSampler.uniform(4, rate=1.5)
    with pytest.raises((ValueError, TypeError), match="max_probes"):
        obj.GradientNormTimeSampler.uniform(4, max_probes=0)
    with pytest.raises((ValueError, TypeError), match="mass"):
        obj.GradientNormTimeSampler(jnp.zeros(4), jnp.zeros(5))
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


@pytest.mark.parametrize(
    "name, kind",
    [
        ("adaptive", obj.AdaptiveTimeSampler),
        ("variance_minimising", obj.VarianceMinimisingTimeSampler),
        ("gradient_norm", obj.GradientNormTimeSampler),
    ],
)
def test_fql_carries_and_adapts_the_sampler(name, kind):
    """The agent holds the sampler's state and updates it every step (tiny FQL), for each
    adaptive `time_sampler` setting."""
    config = override(
        default_config("fql"),
        width=8,
        depth=1,
        flow_steps=2,
        num_critics=2,
        time_sampler=name,
    )
    agent = make_agent("fql", OBS, DIM, jr.key(0), config)
    assert isinstance(agent.time_sampler, kind)
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
    state = np.concatenate([np.asarray(leaf) for leaf in jax.tree.leaves(updated.time_sampler)])
    assert np.all(np.isfinite(state)) and not np.allclose(state, 0.0)
    assert not np.allclose(updated.time_sampler.probabilities(), 0.1)  # no longer uniform
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


@given(
    moments=st.sampled_from([1, 5, 12]).flatmap(  # few sizes: few compilations
        lambda k: st.lists(
            st.tuples(st.floats(0.0, 1e6), st.sampled_from([0.0, 1e-3, 0.5, 1.0])),
            min_size=k,
            max_size=k,
        )
    ),
    floor=st.floats(0.01, 1.0),
    kind=st.sampled_from([obj.VarianceMinimisingTimeSampler, obj.GradientNormTimeSampler]),
)
def test_variance_minimising_floor_and_bounded_weights(moments, floor, kind):
    """(b) The variance-minimising and gradient-norm laws, from any state (unprobed bins, zero
    moments): p_k >= floor/K, sum p = 1, weights (1/K)/p <= 1/floor."""
    second, mass = (jnp.asarray(column, dtype=jnp.float32) for column in zip(*moments, strict=True))
    sampler = kind(second, mass, floor=floor)
    k = len(moments)
    p = np.asarray(sampler.probabilities())
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(p >= floor / k * (1 - 1e-5))
    w = np.asarray(sampler.importance_weights(sampler(jr.key(0), (256,))))
    assert np.all(w <= (1 / floor) * (1 + 1e-5)) and np.all(w > 0)


def test_variance_minimising_law_follows_root_second_moment():
    """(d) The variance-minimising law in closed form: after updates on per-bin losses that
    differ strongly across bins, p = (1 - floor) sqrt(m) / sum sqrt(m) + floor / K, with m the
    bias-corrected moving average of the loss's second moment (Adam's correction)."""
    k, rate, floor = 8, 0.1, 0.2
    scale = jnp.array([0.01, 0.1, 0.3, 1.0, 3.0, 1.0, 0.3, 0.1])  # per-bin loss, 300x apart
    other = scale[::-1] ** 0.5

    def closed_form(root):
        return (1 - floor) * root / root.sum() + floor / k

    def errors(per_bin, times):  # a deterministic loss, constant inside each bin
        return per_bin[jnp.clip(jnp.floor(times * k).astype(int), 0, k - 1)]

    fresh = obj.VarianceMinimisingTimeSampler.uniform(k, rate=rate, floor=floor)
    np.testing.assert_allclose(fresh.probabilities(), np.full(k, 1 / k), rtol=1e-6)
    # one step already sees the losses' scale: m = scale^2, p proportional to scale (+ floor)
    adapt = jax.jit(lambda s, key, per_bin: s.adapt(errors, per_bin, None, key, 64))
    once = adapt(fresh, jr.key(0), scale)
    np.testing.assert_allclose(once.moments(), scale**2, rtol=1e-5)
    np.testing.assert_allclose(once.probabilities(), closed_form(scale), rtol=1e-5)

    # then the losses change: after n more steps m_hat = (a m_old + (1 - a^n) ... ) / mass
    sampler, distances = once, []
    for step, key in enumerate(jr.split(jr.key(1), 30), start=1):
        sampler = adapt(sampler, key, other)
        decay = (1 - rate) ** step
        mass = decay * rate + (1 - decay)
        expected = (decay * rate * scale**2 + (1 - decay) * other**2) / mass
        np.testing.assert_allclose(sampler.mass, np.full(k, mass), rtol=1e-5)
        np.testing.assert_allclose(sampler.moments(), expected, rtol=1e-4)
        p = np.asarray(sampler.probabilities())
        np.testing.assert_allclose(p, closed_form(jnp.sqrt(expected)), rtol=1e-4)
        distances.append(np.abs(p - closed_form(other)).sum())
    assert np.all(np.diff(distances) < 0) and distances[-1] < 0.05 * distances[0]

    # noisy losses loss = scale_k * z, z ~ N(0, 1): E[loss^2 | k] = scale_k^2. A stationary EMA
    # of per-step means of n probes has variance rate / (2 - rate) * Var(loss^2) / n, with
    # Var(loss^2) = 2 scale^4: relative sd of m_hat sqrt(rate / (2 - rate) * 2 / n), half that
    # for sqrt(m_hat); 5 sd, doubled for the ratio sqrt(m_k) / sum_j sqrt(m_j)
    probes = 1024
    per_bin = probes // k

    def noisy(key, times):
        return errors(scale, times) * jr.normal(key, times.shape)

    step = jax.jit(lambda s, key: s.adapt(noisy, jr.fold_in(key, 1), None, key, probes))
    sampler = fresh
    for key in jr.split(jr.key(2), 300):
        sampler = step(sampler, key)
    sd = 0.5 * np.sqrt(rate / (2 - rate) * 2 / per_bin)
    np.testing.assert_allclose(np.sqrt(sampler.moments()), scale, rtol=5 * sd)
    np.testing.assert_allclose(sampler.probabilities(), closed_form(scale), rtol=10 * sd)


def test_variance_minimising_sampler_adapts_inside_the_behaviour_step(problem):
    """The agents' behaviour step carries the variance-minimising sampler's state and updates it
    (one probe per row, every bin probed), and its loss is the importance-weighted one."""
    field, actions, cond, valid = problem
    trained = ir.agents.Trained.create(field, ir.agents.adam(1e-3))
    batch = Batch(cond, actions, valid, valid, cond, valid)
    sampler = obj.VarianceMinimisingTimeSampler.uniform(8)
    _, adapted, loss = ir.agents.sampled_flow_matching_step(trained, sampler, batch, jr.key(5))
    assert np.all(np.asarray(adapted.mass) == pytest.approx(sampler.rate))
    assert np.all(np.asarray(adapted.moments()) > 0)
    expected = obj.flow_matching_loss(
        LINEAR, field, actions, cond, jr.key(5), weights=valid, time_sampler=sampler
    )
    assert loss == pytest.approx(float(expected), rel=1e-6)


def _bin_of(times, k):
    return jnp.clip(jnp.floor(times * k).astype(int), 0, k - 1)


def test_gradient_norm_law_follows_root_gradient_second_moment():
    """(d) The gradient-norm law in closed form on linear models, where the per-sample
    parameter gradient is analytic: p = (1 - floor) sqrt(G) / sum sqrt(G) + floor / K with G_k
    the bias-corrected moving average of E[|grad_theta loss|^2 | bin k]."""
    k, dim, rate, floor = 8, 3, 0.1, 0.2
    # per-bin directions whose norms differ 30x: loss = (c_k + e_row) . theta, gradient c_k + e_row
    norms = jnp.array([0.1, 0.3, 1.0, 3.0, 1.0, 0.5, 0.2, 2.0])
    directions = jr.normal(jr.key(0), (k, dim))
    c = norms[:, None] * directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    theta = jr.normal(jr.key(1), (dim,))

    def closed_form(root):
        return (1 - floor) * root / root.sum() + floor / k

    # rows >= 16 would add a huge offset: only max_probes = 16 rows may be used
    offsets = jnp.where(jnp.arange(64)[:, None] < 16, 0.0, 100.0) * jnp.ones(dim)

    def linear(theta, times, rows=None):
        rows = jnp.arange(times.shape[0]) if rows is None else rows
        return jnp.sum((c[_bin_of(times, k)] + offsets[rows]) * theta, axis=-1)

    fresh = obj.GradientNormTimeSampler.uniform(k, rate=rate, floor=floor, max_probes=16)
    once = jax.jit(lambda s, key: s.adapt(linear, theta, None, key, 64))(fresh, jr.key(2))
    np.testing.assert_allclose(once.mass, np.full(k, rate), rtol=1e-6)  # 2 probes per bin
    np.testing.assert_allclose(once.moments(), norms**2, rtol=1e-5)
    np.testing.assert_allclose(once.probabilities(), closed_form(norms), rtol=1e-5)

    # a squared residual with fresh per-row noise each step: loss = (c_k . theta + s z_row)^2 / 2,
    # gradient (c_k . theta + s z) c_k, so G_k = ((c_k . theta)^2 + s^2) |c_k|^2. The bin mean
    # of n probes of (a + s z)^2 has variance (4 a^2 s^2 + 2 s^4) / n; a stationary EMA of such
    # means multiplies it by rate / (2 - rate). Relative sd of G_hat from that, half for its
    # root; 5 sd per bin, doubled for the ratio sqrt(G_k) / sum_j sqrt(G_j).
    s_noise, probes = 0.5, 512
    per_bin = probes // k
    mean = c @ theta
    expected = (mean**2 + s_noise**2) * norms**2

    def step(sampler, key):
        z = s_noise * jr.normal(jr.fold_in(key, 1), (probes,))

        def residual(theta, times, rows=None):
            rows = jnp.arange(times.shape[0]) if rows is None else rows
            return 0.5 * (c[_bin_of(times, k)] @ theta + z[rows]) ** 2

        return sampler.adapt(residual, theta, None, key, probes)

    step = jax.jit(step)
    sampler = obj.GradientNormTimeSampler.uniform(k, rate=rate, floor=floor, max_probes=probes)
    for key in jr.split(jr.key(3), 300):
        sampler = step(sampler, key)
    variance = 4 * mean**2 * s_noise**2 + 2 * s_noise**4
    sd = 0.5 * np.sqrt(rate / (2 - rate) * variance / per_bin) / (mean**2 + s_noise**2)
    np.testing.assert_array_less(np.abs(np.sqrt(sampler.moments()) / np.sqrt(expected) - 1), 5 * sd)
    p = np.asarray(sampler.probabilities())
    np.testing.assert_allclose(p, closed_form(jnp.sqrt(expected)), rtol=10 * float(sd.max()))
    assert p.argmax() == int(jnp.argmax(expected)) and p.argmin() == int(jnp.argmin(expected))


def test_gradient_norm_sampler_adapts_inside_the_behaviour_step(problem):
    """The agents' behaviour step gives the gradient-norm law the flow's per-sample gradients:
    after one step from a fresh state its per-bin averages are the bin means of
    |grad_theta loss_i|^2 over the probes, recomputed here from the rows of the Jacobian of the
    whole probe batch's errors (errors are row-wise, so row i is sample i's gradient)."""
    from interpolant_rl.objectives._time_sampling import _shifted_probes

    field, actions, cond, valid = problem
    trained = ir.agents.Trained.create(field, ir.agents.adam(1e-3))
    batch = Batch(cond, actions, valid, valid, cond, valid)
    sampler = obj.GradientNormTimeSampler.uniform(8, max_probes=24)
    key = jr.key(5)
    _, adapted, loss = ir.agents.sampled_flow_matching_step(trained, sampler, batch, key)
    expected_loss = obj.flow_matching_loss(
        LINEAR, field, actions, cond, key, weights=valid, time_sampler=sampler
    )
    assert loss == pytest.approx(float(expected_loss), rel=1e-6)

    probe_key, noise_key = jr.split(jr.fold_in(key, 1))
    bins, times = _shifted_probes(probe_key, 8, 24)
    noise = jr.normal(noise_key, actions.shape)[:24]
    params, static = eqx.partition(field, eqx.is_inexact_array)

    def errors(params):
        model = eqx.combine(params, static)
        per_sample = obj.flow_matching_errors(LINEAR, model, actions[:24], cond[:24], times, noise)
        return per_sample * valid[:24]

    jacobian = jax.jacrev(errors)(params)
    square = sum(
        np.sum(np.asarray(j).reshape(24, -1) ** 2, axis=1) for j in jax.tree.leaves(jacobian)
    )
    per_bin = np.array([square[np.asarray(bins) == b].mean() for b in range(8)])
    np.testing.assert_allclose(adapted.mass, np.full(8, sampler.rate), rtol=1e-6)
    np.testing.assert_allclose(adapted.moments(), per_bin, rtol=1e-4)


def test_diffusion_bc_carries_the_sampler_and_probes_its_grid():
    """Diffusion-BC with `time_sampler="variance_minimising"` holds the sampler and adapts it in
    its actor step, and its probes are the denoising errors at the DDPM grid times the loss
    trains at: after one step from a fresh state the per-bin second moments are the bin means
    of the squared errors recomputed here at `on_grid(times, T)` (continuous probe times would
    give other values)."""
    from interpolant_rl.objectives._time_sampling import _shifted_probes

    config = override(
        default_config("diffusion_bc"), width=8, depth=1, time_sampler="variance_minimising"
    )
    agent = make_agent("diffusion_bc", OBS, DIM, jr.key(0), config)
    assert isinstance(agent.time_sampler, obj.VarianceMinimisingTimeSampler)
    keys = jr.split(jr.key(1), 2)
    observations = jr.normal(keys[0], (16, OBS))
    actions = jnp.tanh(jr.normal(keys[1], (16, DIM)))
    ones = jnp.ones(16)
    batch = Batch(observations, actions, 0 * ones, ones, observations, ones)
    key = jr.key(3)
    updated, metrics = agent.actor_step(batch, key)
    assert np.isfinite(float(metrics["bc_loss"]))

    probe_key, noise_key = jr.split(jr.fold_in(key, 1))
    bins, times = _shifted_probes(probe_key, 10, 16)
    noise = jr.normal(noise_key, actions.shape)
    grid = obj.on_grid(times, config.diffusion_steps)
    errors = obj.denoising_errors(
        agent.diffusion.interpolant,
        agent.diffusion.network.model,
        actions,
        observations,
        grid,
        noise,
    )
    bins = np.asarray(bins)
    per_bin = np.array([np.mean(np.asarray(errors)[bins == b] ** 2) for b in range(10)])
    np.testing.assert_allclose(updated.time_sampler.moments(), per_bin, rtol=1e-5)
    continuous = obj.denoising_errors(
        agent.diffusion.interpolant,
        agent.diffusion.network.model,
        actions,
        observations,
        times,
        noise,
    )
    assert not np.allclose(np.asarray(continuous), np.asarray(errors), rtol=1e-3)
