"""MoMa QL (MMD moment matching of one-jump samplers), MeanFlow (OFQL) and the normalised Q term,
checked against the closed-form flow of 1-D Gaussian data under the linear interpolant.

For data $N(m, c)$ and $x_0 \\sim N(0, 1)$ the marginal at time $t$ is $N(tm, \\sigma_t^2)$ with
$\\sigma_t^2 = t^2 c + (1 - t)^2$, and the probability-flow ODE map from $t$ to $s$ is the affine
$\\phi_{t\\to s}(x) = sm + (\\sigma_s/\\sigma_t)(x - tm)$ (it maps $N(tm, \\sigma_t^2)$ to
$N(sm, \\sigma_s^2)$ monotonically, which in 1-D characterises the deterministic transport map).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from jaxtyping import Array, Float

import interpolant_rl as ir
import interpolant_rl.objectives as obj
from interpolant_rl import nn
from interpolant_rl.testing import GaussianMixture, moment_errors


LINEAR = ir.LinearInterpolant()
DATA_MEAN, DATA_VAR = 0.5, 0.25


def _sigma(t, var):
    return jnp.sqrt(t**2 * var + (1.0 - t) ** 2)


def _flow_map(x, t, s, mean, var):
    return s * mean + _sigma(s, var) / _sigma(t, var) * (x - t * mean)


class ExactGaussianJump(eqx.Module):
    """The jump field whose DDIM jump is the exact flow map: solves
    `ddim(x, x1_hat, t, s) = phi_{t->s}(x)` for `x1_hat` (needs `s != t`)."""

    mean: Float[Array, ""]
    var: Float[Array, ""]

    def __call__(self, t, s, x, cond):
        c_out = LINEAR.alpha(s) - LINEAR.beta(s) * LINEAR.alpha(t) / LINEAR.beta(t)
        skip = LINEAR.beta(s) / LINEAR.beta(t)
        return (_flow_map(x, t, s, self.mean, self.var) - skip * x) / c_out


class ExactGaussianAverageVelocity(eqx.Module):
    """$u(x, t, s) = (\\phi_{t\\to s}(x) - x)/(s - t)$ (needs `s != t`)."""

    mean: Float[Array, ""]
    var: Float[Array, ""]

    def __call__(self, t, s, x, cond):
        return (_flow_map(x, t, s, self.mean, self.var) - x) / (s - t)


class ConstantJump(eqx.Module):
    """Predicts the same $\\hat x_1$ whatever its input."""

    value: float

    def __call__(self, t, s, x, cond):
        return jnp.full_like(x, self.value)


class FixedJumpTimes(obj.AbstractJumpTimes):
    t: float
    r: float
    s: float

    def __call__(self, key):
        return jnp.asarray(self.t), jnp.asarray(self.r), jnp.asarray(self.s)


def _exact_jump(mean=DATA_MEAN, var=DATA_VAR):
    return ExactGaussianJump(jnp.asarray(mean), jnp.asarray(var))


# ----------------------------------------------------------------------------------------------
# Normalised Q term


def test_normalised_q_loss_value_and_gradient():
    q = jnp.array([1.0, -2.0, 3.0])
    # -mean(q)/mean|q| = -(2/3)/2.
    assert float(obj.normalised_q_loss(q)) == pytest.approx(-1.0 / 3.0, rel=1e-6)
    assert float(obj.normalised_q_loss(jnp.array([0.5, 4.0]))) == pytest.approx(-1.0)
    assert float(obj.normalised_q_loss(jnp.array([-0.5, -4.0]))) == pytest.approx(1.0)
    # The denominator is a stop-gradient: d/dq_i = -1/(n mean|q|), not the quotient rule.
    np.testing.assert_allclose(jax.grad(obj.normalised_q_loss)(q), -jnp.ones(3) / 6.0, rtol=1e-6)
    # Through a parameter: q_i = theta * a_i gives -mean(a)/mean|q|.
    a = jnp.array([2.0, -1.0, 4.0, 0.5])
    theta = 1.5
    grad = jax.grad(lambda th: obj.normalised_q_loss(th * a))(theta)
    expected = -jnp.mean(a) / jnp.mean(jnp.abs(theta * a))
    assert float(grad) == pytest.approx(float(expected), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# MeanFlow


def _tanh_field(t, s, x, cond):
    return jnp.tanh(1.3 * x + 0.7 * t - 0.4 * s) + s * t * x


def test_meanflow_target_at_equal_times_is_the_velocity():
    x, v = jnp.array([0.3, -1.1]), jnp.array([0.9, 0.2])
    for t in (0.0, 0.35, 0.8):
        u, target = obj.meanflow_target(_tanh_field, x, v, t, t)
        np.testing.assert_allclose(target, v, rtol=1e-6)
        np.testing.assert_allclose(u, _tanh_field(t, t, x, None), rtol=1e-6)


def test_meanflow_target_tangents_and_stop_gradient():
    # u = g(x, t) + (s - t) h: du/dt = d_x g v + d_t g - h, independent of s (tangent 0 on s).
    h = jnp.array([0.7, -0.3])

    def field(t, s, x, cond):
        return jnp.sin(x) * t + (s - t) * cond

    x, v, t, s = jnp.array([0.4, -0.2]), jnp.array([1.5, 0.5]), 0.3, 0.9
    _, target = obj.meanflow_target(field, x, v, t, s, h)
    du_dt = jnp.cos(x) * v * t + jnp.sin(x) - h
    np.testing.assert_allclose(target, v + (s - t) * du_dt, rtol=1e-5, atol=1e-6)
    target_grad = jax.grad(lambda c: jnp.sum(obj.meanflow_target(field, x, v, t, s, c)[1]))(h)
    np.testing.assert_array_equal(target_grad, jnp.zeros(2))


@pytest.mark.parametrize("power", [0.0, 1.0])
def test_meanflow_loss_closed_form_on_the_conditional_path(power):
    """cond = x1 and u = (x1 - x)/(1 - t) + d is the conditional average velocity of the point
    mass at x1 (independent of s) plus an offset: along the conditional path du/dt = 0, so the
    target is exactly v_cond = x1 - x0 for every (t, s) and each sample's error is mean(d^2).
    With equal_time_fraction=1 the extra term (s - t) w of the field drops out: flow matching."""
    d = jnp.array([0.2, -0.4])
    w = jnp.array([1.0, 3.0])
    eps = 1e-3
    error = float(jnp.mean(d**2))
    expected = error / (error + eps) ** power
    actions = jr.normal(jr.key(0), (16, 2))

    def point_mass(t, s, x, x1):
        return (x1 - x) / (1.0 - t) + d

    def point_mass_plus_s_term(t, s, x, x1):
        return point_mass(t, s, x, x1) + (s - t) * w

    @jax.jit
    def losses(key):
        kwargs = dict(adaptive_weight_power=power, adaptive_weight_eps=eps)
        return (
            obj.meanflow_loss(LINEAR, point_mass, actions, actions, key, **kwargs),
            obj.meanflow_loss(
                LINEAR,
                point_mass_plus_s_term,
                actions,
                actions,
                key,
                equal_time_fraction=1.0,
                **kwargs,
            ),
        )

    mixed, equal = losses(jr.key(1))
    assert float(mixed) == pytest.approx(expected, rel=1e-3)
    assert float(equal) == pytest.approx(expected, rel=1e-3)


def test_meanflow_presets_are_the_published_settings():
    """ImageNet: r != t for 25 % of pairs, logit-normal(-0.4, 1), p = 1; CIFAR-10: 75 %,
    logit-normal(-2, 2), p = 0.75 -- the means' signs flipped for t = 1 data."""
    imagenet, cifar = obj.meanflow_preset("imagenet"), obj.meanflow_preset("cifar10")
    assert imagenet.equal_time_fraction == 0.75 and imagenet.adaptive_weight_power == 1.0
    assert imagenet.time_sampler == obj.LogitNormalTimes(0.4, 1.0)
    assert cifar.equal_time_fraction == 0.25 and cifar.adaptive_weight_power == 0.75
    assert cifar.time_sampler == obj.LogitNormalTimes(2.0, 2.0)
    assert set(imagenet.loss_kwargs()) == {
        "equal_time_fraction",
        "time_sampler",
        "adaptive_weight_power",
    }
    # the data side: both put most of the mass above 1/2, CIFAR-10's much more
    taus = jax.jit(lambda k: cifar.time_sampler(k, (20000,)))(jr.key(3))
    assert float(jnp.mean(taus > 0.5)) > 0.75
    with pytest.raises(ValueError, match="cifar10"):
        obj.meanflow_preset("mnist")


def test_meanflow_adaptive_weight_does_not_depend_on_the_action_dimension():
    """The error is averaged over dimensions before the weight 1/(e + eps)^p: repeating every
    coordinate (the same per-coordinate errors in twice the dimension) leaves the loss as is."""
    d = jnp.array([0.2, -0.4])
    actions = jr.normal(jr.key(4), (16, 2))

    def field(t, s, x, x1):
        return (x1 - x) / (1.0 - t) + jnp.tile(d, x.shape[0] // 2)

    @jax.jit
    def loss(actions):
        return obj.meanflow_loss(
            LINEAR,
            field,
            actions,
            actions,
            jr.key(5),
            **obj.meanflow_preset("cifar10").loss_kwargs(),
        )

    assert float(loss(actions)) == pytest.approx(float(loss(jnp.tile(actions, (1, 2)))), rel=1e-4)


def test_meanflow_identity_holds_for_the_exact_average_velocity():
    """The exact average velocity of N(m, c) data is a fixed point of the target built from the
    exact marginal velocity; the opposite sign (the other time direction) is not."""
    u_exact = ExactGaussianAverageVelocity(jnp.asarray(DATA_MEAN), jnp.asarray(DATA_VAR))
    mixture = GaussianMixture([1.0], [[DATA_MEAN]], [[[DATA_VAR]]])
    ts = jnp.array([0.0, 0.1, 0.3, 0.5, 0.2, 0.6])
    ss = jnp.array([1.0, 0.4, 0.9, 0.7, 0.25, 0.95])
    xs = jnp.array([[0.3], [-1.2], [2.0], [0.0], [0.8], [-0.5]])

    @jax.jit
    def check(x, t, s):
        v = mixture.velocity(LINEAR, t, x)
        u, target = obj.meanflow_target(u_exact, x, v, t, s)
        du_dt = (target - v) / (s - t)
        return u, target, v - (s - t) * du_dt

    u, target, wrong_sign = jax.vmap(check)(xs, ts, ss)
    np.testing.assert_allclose(target, u, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(wrong_sign - u))) > 0.1


def test_meanflow_one_step_maps_noise_to_data():
    u_exact = ExactGaussianAverageVelocity(jnp.asarray(DATA_MEAN), jnp.asarray(DATA_VAR))
    x0 = jr.normal(jr.key(2), (4000, 1))
    actions = jax.vmap(lambda x: ir.meanflow_one_step(u_exact, x))(x0)
    np.testing.assert_allclose(actions, DATA_MEAN + math.sqrt(DATA_VAR) * x0, rtol=1e-5, atol=1e-5)
    errors = moment_errors(actions, np.array([DATA_MEAN]), np.array([[DATA_VAR]]))
    assert errors.max_z() < 4.5


# ----------------------------------------------------------------------------------------------
# Moment matching


def test_jump_times_and_bandwidths():
    times = obj.UniformJumpTimes(gap=0.3, epsilon=0.05)
    t, r, s = jax.jit(jax.vmap(times))(jr.split(jr.key(3), 2000))
    assert bool(jnp.all((0.0 <= t) & (t <= r) & (r < s) & (s <= 1.0) & (s > 0.05)))
    np.testing.assert_allclose(r, t + 0.3 * (s - t), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        obj.UniformJumpTimes(gap=1.5)
    # IMM's width: |c_out| = (s - t)/(1 - t) for the linear interpolant, floored.
    z = jnp.zeros((4, 2))
    width = obj.JumpScaledBandwidth(LINEAR, scale=2.0, minimum=0.05)
    assert float(width(0.2, 0.6, z)) == pytest.approx(2.0 * 0.4 / 0.8, rel=1e-6)
    assert float(width(0.5, 0.5, z)) == pytest.approx(0.05)
    assert float(obj.ConstantBandwidth(0.7)(0.1, 0.9, z)) == pytest.approx(0.7)
    # The sampler's own jumps: with grid_fraction 1 every draw is (k/K, (k+1)/K).
    grid = obj.UniformJumpTimes(gap=0.5, grid_fraction=1.0, num_jumps=4)
    t, r, s = jax.jit(jax.vmap(grid))(jr.split(jr.key(4), 400))
    np.testing.assert_allclose(s - t, 0.25, atol=1e-6)
    np.testing.assert_allclose(jnp.round(4 * t), 4 * t, atol=1e-5)
    assert set(np.round(4 * np.asarray(t)).astype(int)) == {0, 1, 2, 3}
    np.testing.assert_allclose(r, t + 0.125, atol=1e-6)
    half = obj.UniformJumpTimes(grid_fraction=0.5)
    t, _, s = jax.jit(jax.vmap(half))(jr.split(jr.key(5), 4000))
    corner = np.asarray((t == 0.0) & (s == 1.0))
    assert abs(corner.mean() - 0.5) < 4 * math.sqrt(0.25 / 4000)
    with pytest.raises(ValueError):
        obj.UniformJumpTimes(grid_fraction=1.5)


def test_multi_jump_sample_with_the_exact_jump_reproduces_the_data():
    field = _exact_jump()
    x0 = jr.normal(jr.key(4), (4000, 1))
    for num_jumps in (1, 2, 4):
        actions = jax.jit(
            jax.vmap(lambda x, n=num_jumps: ir.multi_jump_sample(LINEAR, field, x, None, n))
        )(x0)
        # The flow maps compose: any number of exact jumps is the flow map from 0 to 1.
        np.testing.assert_allclose(
            actions, DATA_MEAN + math.sqrt(DATA_VAR) * x0, rtol=1e-4, atol=1e-4
        )
        assert moment_errors(actions, np.array([DATA_MEAN]), np.array([[DATA_VAR]])).max_z() < 4.5
    # Two jumps of a field that is not a flow map: the composition of the two DDIM jumps.
    constant, x = ConstantJump(0.3), jnp.array([0.8, -0.1])
    two = ir.multi_jump_sample(LINEAR, constant, x, None, 2)
    manual = ir.jump(LINEAR, constant, ir.jump(LINEAR, constant, x, 0.0, 0.5), 0.5, 1.0)
    np.testing.assert_allclose(two, manual, rtol=1e-6)
    with pytest.raises(ValueError):
        ir.multi_jump_sample(LINEAR, constant, x, None, 0)


def _expected_mmd(t, r, s, width, particles):
    """E[V] = 2/M (1 - rho), E[U] = 2/M (kappa - rho) for the exact flow map (RBF kernel):
    rho = E k(phi(x_t^i), phi(x_r^i)) for partners from the same (x0, x1), kappa = E k(y, y') for
    independent y, y' ~ p_s; E exp(-D^2/(2 l^2)) = (1 + Var D/l^2)^(-1/2) for Gaussian D."""
    sig = lambda u: math.sqrt(u**2 * DATA_VAR + (1 - u) ** 2)
    var_pair = sig(s) ** 2 * (
        (t / sig(t) - r / sig(r)) ** 2 * DATA_VAR + ((1 - t) / sig(t) - (1 - r) / sig(r)) ** 2
    )
    rho = 1.0 / math.sqrt(1.0 + var_pair / width**2)
    kappa = 1.0 / math.sqrt(1.0 + 2.0 * sig(s) ** 2 / width**2)
    return 2.0 / particles * (1.0 - rho), 2.0 / particles * (kappa - rho)


@eqx.filter_jit
def _mmd_losses(field, target_field, keys, times, width, groups, particles):
    """V- and U-statistic losses, one pair per key, each on fresh data `(groups, particles, 1)`."""

    def both(key):
        data_key, key = jr.split(key)
        actions = DATA_MEAN + jnp.sqrt(DATA_VAR) * jr.normal(data_key, (groups, particles, 1))
        kwargs = dict(times=times, bandwidth=obj.ConstantBandwidth(width), shared_noise=True)
        return (
            obj.moment_matching_loss(
                LINEAR, field, target_field, actions, None, key, unbiased=False, **kwargs
            ),
            obj.moment_matching_loss(
                LINEAR, field, target_field, actions, None, key, unbiased=True, **kwargs
            ),
        )

    return jax.vmap(both)(keys)


def test_moment_matching_loss_at_the_exact_flow_map_with_shared_noise():
    """Inductive moment matching's pairs (x_t^i and x_r^i from one (x0, x1)): dependent sets,
    so even the U-statistic averages (2/M)(kappa - rho) != 0 at the exact flow map."""
    groups, particles, width = 256, 4, 0.5
    times = FixedJumpTimes(0.2, 0.5, 0.9)
    keys = jr.split(jr.key(6), 32)
    exact = _exact_jump()
    v_stat, u_stat = _mmd_losses(exact, exact, keys, times, width, groups, particles)
    expected_v, expected_u = _expected_mmd(0.2, 0.5, 0.9, width, particles)
    for estimates, expected in ((v_stat, expected_v), (u_stat, expected_u)):
        standard_error = float(jnp.std(estimates)) / math.sqrt(len(keys))
        assert abs(float(jnp.mean(estimates)) - expected) < 4.0 * standard_error + 1e-4
    # A field that ignores its input: clearly larger, with either estimator.
    constant = ConstantJump(DATA_MEAN)
    v_const, u_const = _mmd_losses(constant, exact, keys, times, width, groups, particles)
    assert float(jnp.mean(v_const)) > 2.0 * float(jnp.mean(v_stat))
    assert float(jnp.mean(u_const)) - float(jnp.mean(u_stat)) > 10.0 * float(
        jnp.std(u_stat - u_const)
    ) / math.sqrt(len(keys))


def _rbf_mean(variance, width):
    """E exp(-D^2/(2 l^2)) for D ~ N(0, variance)."""
    return 1.0 / math.sqrt(1.0 + variance / width**2)


def _expected_mmd_one_action(t, r, s, width, particles):
    """E[V], E[U] at the exact flow map for one action x1 per group and independent noises: given
    x1 the online jumps are N(a(x1), vP), the target's N(b(x1), vQ), a - b = k (x1 - m)."""
    sig = lambda u: math.sqrt(u**2 * DATA_VAR + (1 - u) ** 2)
    v_p = (sig(s) / sig(t) * (1 - t)) ** 2
    v_q = (sig(s) / sig(r) * (1 - r)) ** 2
    k = sig(s) * (t / sig(t) - r / sig(r))
    within_p, within_q = _rbf_mean(2 * v_p, width), _rbf_mean(2 * v_q, width)
    cross = _rbf_mean(v_p + v_q + k**2 * DATA_VAR, width)
    u_stat = within_p + within_q - 2 * cross
    return u_stat + (2.0 - within_p - within_q) / particles, u_stat


@eqx.filter_jit
def _independent_losses(field, keys, times, width, groups, n, noises):
    def both(key):
        data_key, key = jr.split(key)
        actions = DATA_MEAN + jnp.sqrt(DATA_VAR) * jr.normal(data_key, (groups, n, 1))
        kwargs = dict(times=times, bandwidth=obj.ConstantBandwidth(width), noises=noises)
        return tuple(
            obj.moment_matching_loss(
                LINEAR, field, field, actions, None, key, unbiased=unbiased, **kwargs
            )
            for unbiased in (False, True)
        )

    return jax.vmap(both)(keys)


def _assert_mean(estimates, expected, keys):
    standard_error = float(jnp.std(estimates)) / math.sqrt(len(keys))
    assert abs(float(jnp.mean(estimates)) - expected) < 4.0 * standard_error + 1e-4


def test_u_statistic_is_unbiased_with_independent_target_noise():
    """The default construction (target particles with their own noises): the U-statistic's
    expectation is the population MMD^2 of the two laws. M distinct actions of one law, one
    noise each: the exact flow map pushes p_t and p_r to the same p_s, so E[U] = 0 (the shared
    noises of inductive moment matching give (2/M)(kappa - rho) instead); the V-statistic adds
    (2/M)(1 - kappa). One action with M noises (offline data): the conditional closed form."""
    width, t, r, s = 0.5, 0.2, 0.5, 0.9
    times = FixedJumpTimes(t, r, s)
    keys = jr.split(jr.key(14), 32)
    exact = _exact_jump()
    v_stat, u_stat = _independent_losses(exact, keys, times, width, 256, 4, 1)
    kappa = _rbf_mean(2 * (s**2 * DATA_VAR + (1 - s) ** 2), width)
    _assert_mean(u_stat, 0.0, keys)
    _assert_mean(v_stat, 2.0 / 4 * (1.0 - kappa), keys)
    # one action per group, M = 4 noises
    v_stat, u_stat = _independent_losses(exact, keys, times, width, 256, 1, 4)
    expected_v, expected_u = _expected_mmd_one_action(t, r, s, width, 4)
    assert expected_u > 1e-3  # the conditional laws differ: a genuine (known) positive value
    _assert_mean(u_stat, expected_u, keys)
    _assert_mean(v_stat, expected_v, keys)
    # at t = 0 the online jumps forget x1: same closed form with k = sigma_s (0 - r/sigma_r)
    v_stat, u_stat = _independent_losses(exact, keys, FixedJumpTimes(0.0, r, s), width, 256, 1, 4)
    _assert_mean(u_stat, _expected_mmd_one_action(0.0, r, s, width, 4)[1], keys)
    with pytest.raises(ValueError, match="2 particles"):
        obj.moment_matching_loss(
            LINEAR, exact, exact, jnp.zeros((3, 1, 1)), None, jr.key(0), noises=1
        )


def test_gap_one_uses_the_interpolant_itself_as_the_target():
    """r = s: the target set is x_s = alpha_s x1 + beta_s eps' (no target network), also at
    s = 1 where the target jump would divide by beta_1 = 0."""
    actions = DATA_MEAN + math.sqrt(DATA_VAR) * jr.normal(jr.key(17), (5, 1, 1))
    exact = _exact_jump()
    nan_target = ConstantJump(float("nan"))

    @eqx.filter_jit
    def loss(target, times):
        return obj.moment_matching_loss(
            LINEAR, exact, target, actions, None, jr.key(18), noises=4, times=times
        )

    for times in (FixedJumpTimes(0.3, 0.8, 0.8), obj.UniformJumpTimes(gap=1.0, grid_fraction=1.0)):
        value = loss(nan_target, times)
        assert np.isfinite(float(value))
        assert float(value) == pytest.approx(float(loss(exact, times)), rel=1e-6)


def test_median_bandwidth_is_the_pooled_median_under_stop_gradient():
    """One group: the loss with MedianBandwidth equals, in value and in gradient, the loss with
    the constant bandwidth set to the median pairwise distance of the group's pooled jumps."""
    actions = DATA_MEAN + math.sqrt(DATA_VAR) * jr.normal(jr.key(15), (1, 1, 2))
    times, key, noises = FixedJumpTimes(0.3, 0.5, 0.8), jr.key(16), 5

    class Scaled(eqx.Module):
        w: Float[Array, ""]

        def __call__(self, t, s, x, cond):
            return self.w * x + s

    target = Scaled(jnp.asarray(0.7))

    @eqx.filter_jit
    def loss(w, bandwidth):
        return obj.moment_matching_loss(
            LINEAR,
            Scaled(w),
            target,
            actions,
            None,
            key,
            noises=noises,
            times=times,
            bandwidth=bandwidth,
        )

    # the pooled jumps, rebuilt from the documented key split
    _, noise_key, target_key = jr.split(key, 3)
    eps = jr.normal(noise_key, (1, noises, 2))[0]
    eps_t = jr.normal(target_key, (1, noises, 2))[0]
    w = jnp.asarray(1.3)

    def jumps(w, t, noise):
        x_t = t * actions[0, 0] + (1.0 - t) * noise
        return 0.8 * (w * x_t + 0.8) + 0.2 * (x_t - t * (w * x_t + 0.8)) / (1.0 - t)

    online, tgt = jumps(1.3, 0.3, eps), jumps(0.7, 0.5, eps_t)
    pooled = np.asarray(jnp.concatenate([online, tgt]))
    distances = [np.linalg.norm(a - b) for i, a in enumerate(pooled) for b in pooled[i + 1 :]]
    median = float(np.median(distances))
    assert float(obj.MedianBandwidth()(0.3, 0.8, jnp.asarray(pooled))) == pytest.approx(
        median, rel=1e-5
    )
    fixed = obj.ConstantBandwidth(median)
    assert float(loss(w, obj.MedianBandwidth())) == pytest.approx(float(loss(w, fixed)), rel=1e-4)
    grad_median = eqx.filter_jit(jax.grad(loss))(w, obj.MedianBandwidth())
    grad_fixed = eqx.filter_jit(jax.grad(loss))(w, fixed)
    assert float(grad_median) == pytest.approx(float(grad_fixed), rel=1e-3)
    # a floor for coincident particles
    assert float(obj.MedianBandwidth(minimum=0.01)(0.0, 1.0, jnp.zeros((4, 2)))) == pytest.approx(
        0.01
    )


def test_preconditioned_jump_has_the_boundary_condition():
    """c_skip x is the posterior mean of N(0, sigma_d^2) data and at t = 1 the jump field returns
    x whatever the network: the jump from the data is the identity."""
    sigma = 0.5
    zero = nn.PreconditionedJump(LINEAR, lambda t, s, x, c: jnp.zeros_like(x), sigma)
    wild = nn.PreconditionedJump(LINEAR, lambda t, s, x, c: 7.0 + x**3, sigma)
    gaussian = GaussianMixture([1.0], [[0.0, 0.0]], [[[sigma**2, 0.0], [0.0, sigma**2]]])
    x = jnp.array([0.4, -1.3])
    for t in (0.1, 0.5, 0.9):
        np.testing.assert_allclose(
            zero(jnp.asarray(t), 1.0, x, None), gaussian.denoiser(LINEAR, t, x), rtol=1e-5
        )
    np.testing.assert_allclose(wild(jnp.asarray(1.0), 1.0, x, None), x, rtol=1e-6)
    # at t = 0 the prediction is sigma_d * F (x carries no information)
    np.testing.assert_allclose(
        wild(jnp.asarray(0.0), 1.0, x, None), sigma * (7.0 + x**3), rtol=1e-6
    )


def test_moment_matching_gradient_reaches_only_the_online_field():
    actions = DATA_MEAN + math.sqrt(DATA_VAR) * jr.normal(jr.key(7), (8, 4, 1))
    cond = jr.normal(jr.key(8), (8, 3))  # one state per group

    def loss(online_mean, target_mean, kernel):
        return obj.moment_matching_loss(
            LINEAR,
            _exact_jump(mean=online_mean),
            _exact_jump(mean=target_mean),
            actions,
            cond,
            jr.key(9),
            kernel=kernel,
        )

    for kernel in (ir.RBFKernel, ir.LaplaceKernel):
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
        online_grad, target_grad = grads(0.9, DATA_MEAN, kernel)
        assert float(target_grad) == 0.0
        assert abs(float(online_grad)) > 1e-3


def test_group_weights_and_states():
    # Weights scale groups (all ones: unchanged; a zero drops that group's term); a group's term
    # depends on its own state only (changing the other groups' states leaves it unchanged).
    actions = DATA_MEAN + math.sqrt(DATA_VAR) * jr.normal(jr.key(10), (6, 4, 1))
    cond = jr.normal(jr.key(11), (6, 3))

    def field(t, s, x, c):
        return x * (1.0 + jnp.sum(c) * t) + s

    @jax.jit
    def loss(cond, weights=jnp.ones(6)):
        return obj.moment_matching_loss(
            LINEAR, field, field, actions, cond, jr.key(12), weights=weights
        )

    per_group = loss(cond)
    only_2 = jnp.zeros(6).at[2].set(1.0)
    moved = cond.at[jnp.array([0, 1, 3, 4, 5])].add(1.7)
    assert np.isclose(loss(cond, weights=only_2), loss(moved, weights=only_2), rtol=1e-6)
    assert not np.isclose(loss(cond), loss(moved), rtol=1e-3)
    assert np.isclose(loss(cond, weights=jnp.ones(6)), per_group, rtol=1e-6)
    dropped = jnp.ones(6).at[2].set(0.0)
    assert np.isclose(
        loss(cond, weights=dropped), per_group - loss(cond, weights=only_2), atol=1e-6
    )
    assert np.isclose(loss(cond, weights=jnp.zeros(6)), 0.0)

    batch = actions.reshape(-1, 1)

    def meanflow(**kwargs):
        return obj.meanflow_loss(LINEAR, _tanh_field, batch, None, jr.key(13), **kwargs)

    assert np.isclose(meanflow(weights=jnp.ones(24)), meanflow(), rtol=1e-6)
    assert np.isclose(meanflow(weights=jnp.zeros(24)), 0.0)
