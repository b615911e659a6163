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
    actions = jax.vmap(lambda x: obj.meanflow_one_step(u_exact, x))(x0)
    np.testing.assert_allclose(actions, DATA_MEAN + math.sqrt(DATA_VAR) * x0, rtol=1e-5, atol=1e-5)
    errors = moment_errors(actions, np.array([DATA_MEAN]), np.array([[DATA_VAR]]))
    assert errors.max_z() < 4.5


# ----------------------------------------------------------------------------------------------
# Moment matching


def test_jump_times_and_bandwidths():
    times = obj.UniformJumpTimes(gap=0.3, epsilon=0.05)
    t, r, s = jax.vmap(times)(jr.split(jr.key(3), 2000))
    assert bool(jnp.all((0.0 <= t) & (t <= r) & (r < s) & (s <= 1.0) & (s > 0.05)))
    np.testing.assert_allclose(r, t + 0.3 * (s - t), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        obj.UniformJumpTimes(gap=1.0)
    # IMM's width: |c_out| = (s - t)/(1 - t) for the linear interpolant, floored.
    width = obj.JumpScaledBandwidth(LINEAR, scale=2.0, minimum=0.05)
    assert float(width(0.2, 0.6)) == pytest.approx(2.0 * 0.4 / 0.8, rel=1e-6)
    assert float(width(0.5, 0.5)) == pytest.approx(0.05)
    assert float(obj.ConstantBandwidth(0.7)(0.1, 0.9)) == pytest.approx(0.7)


def test_multi_jump_sample_with_the_exact_jump_reproduces_the_data():
    field = _exact_jump()
    x0 = jr.normal(jr.key(4), (4000, 1))
    for num_jumps in (1, 2, 4):
        actions = jax.jit(
            jax.vmap(lambda x, n=num_jumps: obj.multi_jump_sample(LINEAR, field, x, None, n))
        )(x0)
        # The flow maps compose: any number of exact jumps is the flow map from 0 to 1.
        np.testing.assert_allclose(
            actions, DATA_MEAN + math.sqrt(DATA_VAR) * x0, rtol=1e-4, atol=1e-4
        )
        assert moment_errors(actions, np.array([DATA_MEAN]), np.array([[DATA_VAR]])).max_z() < 4.5
    # Two jumps of a field that is not a flow map: the composition of the two DDIM jumps.
    constant, x = ConstantJump(0.3), jnp.array([0.8, -0.1])
    two = obj.multi_jump_sample(LINEAR, constant, x, None, 2)
    manual = obj.jump(LINEAR, constant, obj.jump(LINEAR, constant, x, 0.0, 0.5), 0.5, 1.0)
    np.testing.assert_allclose(two, manual, rtol=1e-6)
    with pytest.raises(ValueError):
        obj.multi_jump_sample(LINEAR, constant, x, None, 0)


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
        kwargs = dict(times=times, bandwidth=obj.ConstantBandwidth(width))
        return (
            obj.moment_matching_loss(LINEAR, field, target_field, actions, None, key, **kwargs),
            obj.moment_matching_loss(
                LINEAR, field, target_field, actions, None, key, unbiased=True, **kwargs
            ),
        )

    return jax.vmap(both)(keys)


def test_moment_matching_loss_at_the_exact_flow_map():
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
        online_grad, target_grad = jax.grad(loss, argnums=(0, 1))(0.9, DATA_MEAN, kernel)
        assert float(target_grad) == 0.0
        assert abs(float(online_grad)) > 1e-3


def test_per_particle_states_and_weights():
    # Per-particle states equal to the group's state give the per-group loss; weights scale
    # groups (all ones: unchanged; a zero drops that group's term).
    actions = DATA_MEAN + math.sqrt(DATA_VAR) * jr.normal(jr.key(10), (6, 4, 1))
    cond = jr.normal(jr.key(11), (6, 3))

    def field(t, s, x, c):
        return x * (1.0 + jnp.sum(c) * t) + s

    def loss(cond, **kwargs):
        return obj.moment_matching_loss(LINEAR, field, field, actions, cond, jr.key(12), **kwargs)

    per_group = loss(cond)
    per_particle = loss(jnp.repeat(cond[:, None], 4, axis=1), cond_per_particle=True)
    assert np.isclose(per_group, per_particle, rtol=1e-6)
    assert np.isclose(loss(cond, weights=jnp.ones(6)), per_group, rtol=1e-6)
    dropped = jnp.ones(6).at[2].set(0.0)
    assert loss(cond, weights=dropped) < per_group
    assert np.isclose(loss(cond, weights=jnp.zeros(6)), 0.0)

    batch = actions.reshape(-1, 1)

    def meanflow(**kwargs):
        return obj.meanflow_loss(LINEAR, _tanh_field, batch, None, jr.key(13), **kwargs)

    assert np.isclose(meanflow(weights=jnp.ones(24)), meanflow(), rtol=1e-6)
    assert np.isclose(meanflow(weights=jnp.zeros(24)), 0.0)
