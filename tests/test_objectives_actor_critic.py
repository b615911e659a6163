"""The value-gradient baselines' actor losses, the edit's bound, and the known critic."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl import agents, objectives as obj
from interpolant_rl.testing import GaussianMixture, QuadraticCritic, sliced_wasserstein


def linear_q(b):
    return lambda obs, actions: actions @ b


def test_distillation_loss_gradient_is_distillation_plus_critic_ascent():
    # mu(z, s) = w * z: L = alpha * mean((w z - teacher)^2) - mean(b . clip(w z))
    b = jnp.array([1.0, -2.0])
    noise = jnp.array([[0.1, 0.2], [0.3, -0.1]])
    teacher = jnp.array([[0.0, 0.5], [0.2, 0.1]])
    obs = jnp.zeros((2, 1))

    def loss(w, alpha):
        return obj.one_step_distillation_loss(
            lambda z, c: w * z, teacher, noise, obs, linear_q(b), alpha
        )[0]

    w = jnp.array(1.5)
    # alpha = 0: pure ascent, d/dw of -mean_i b . (w z_i) = -mean_i b . z_i
    assert np.isclose(jax.grad(loss)(w, 0.0), -jnp.mean(noise @ b), atol=1e-6)
    alpha = 3.0
    expected = 2 * alpha * jnp.mean((w * noise - teacher) * noise) - jnp.mean(noise @ b)
    assert np.isclose(jax.grad(loss)(w, alpha), expected, atol=1e-5)


def test_bptt_q_loss_differentiates_through_every_flow_step():
    # v(t, x) = theta * x integrates exactly to x1 = x0 * exp(theta); Euler with T steps gives
    # x0 * (1 + theta/T)^T, whose derivative the loss must reproduce.
    b = jnp.array([1.0])
    noise = jnp.array([[0.7]])
    obs = jnp.zeros((1, 1))
    steps = 5

    def loss(theta):
        return obj.bptt_q_loss(
            ir.LinearInterpolant(),
            lambda t, x, c: theta * x,
            noise,
            obs,
            linear_q(b),
            num_steps=steps,
        )

    theta = 0.3
    expected = -0.7 * steps * (1 + theta / steps) ** (steps - 1) / steps
    assert np.isclose(jax.grad(loss)(theta), expected, rtol=1e-5)


def test_td3_bc_loss_normalises_q_and_penalises_distance():
    actions = jnp.array([[0.5, 0.0], [0.0, 0.5]])
    data = jnp.zeros((2, 2))
    q = jnp.array([2.0, 4.0])
    loss, metrics = obj.td3_bc_loss(actions, data, q, alpha=2.0)
    assert np.isclose(metrics["q_loss"], -1.0)
    assert np.isclose(metrics["bc_loss"], 0.25)
    assert np.isclose(loss, -1.0 + 2.0 * 0.25)
    weighted = obj.td3_bc_loss(actions, data, q, 2.0, weights=jnp.array([1.0, 0.0]))[1]
    assert np.isclose(weighted["bc_loss"], 0.25)


def test_td3bc_is_td3_bc_loss_with_its_paper_scale():
    # TD3+BC: -lambda mean Q + mse_loss(pi, a), lambda = 2.5 / mean|Q|, mse over batch and dims
    actions = jnp.array([[0.5, 0.0, 0.2], [0.0, 0.5, -0.4]])
    data = jnp.zeros((2, 3))
    q = jnp.array([2.0, 4.0])
    lam = 2.5 / 3.0
    mse = (0.25 + 0.04 + 0.25 + 0.16) / 6
    paper = -lam * 3.0 + mse
    config = agents.default_config("td3bc")
    loss, metrics = obj.td3_bc_loss(actions, data, q, config.alpha, reduction=config.bc_reduction)
    assert np.isclose(metrics["bc_loss"], mse)
    assert np.isclose(2.5 * loss, paper)  # the same loss up to the constant 2.5
    assert config.critic.num_critics == 2 and config.critic.rho == 1.0
    assert not config.critic.layer_norm and config.actor_noise == 0.2 and config.actor_delay == 2
    with pytest.raises(ValueError, match="reduction"):
        obj.td3_bc_loss(actions, data, q, 1.0, reduction="max")


def test_edit_stays_in_its_linf_ball_and_the_box():
    scale = 0.1
    edit = agents.ActionEdit.create(
        3, 2, agents.NetworkConfig(16, 1), agents.adam(1e-3), scale, jr.key(0)
    )
    obs = jr.normal(jr.key(1), (512, 3))
    base = jnp.clip(jr.normal(jr.key(2), (512, 2)), -1, 1)
    edited = edit.edited(edit.policy.model, obs, base, jr.key(3))
    assert np.all(np.abs(np.asarray(edited - base)) <= scale + 1e-6)
    assert np.all(np.abs(np.asarray(edited)) <= 1.0)


def test_quadratic_critic_is_the_tilt_convention():
    A = jnp.array([[2.0, 0.3], [0.3, 1.0]])
    b = jnp.array([0.5, -1.0])
    critic = QuadraticCritic(A, b)
    base = GaussianMixture([1.0], [[0.1, 0.2]], [[[0.3, 0.05], [0.05, 0.2]]])
    tau = 1.5
    # the tilt's log-density differs from log p + tau Q by a constant
    points = jr.normal(jr.key(0), (6, 2))
    gap = jax.vmap(base.tilt(A, b, tau).log_prob)(points) - (
        jax.vmap(base.log_prob)(points) + tau * jax.vmap(lambda a: critic(None, a)[0])(points)
    )
    assert np.allclose(gap, gap[0], atol=1e-4)


def test_sliced_wasserstein_of_a_shift_and_of_identical_samples():
    x = np.random.default_rng(0).normal(size=(4000, 1))
    assert sliced_wasserstein(x, x) == 0.0
    # in 1-D it is W2 itself, and W2 between N(0,1) and N(0.5,1) samples is 0.5 (same noise)
    assert np.isclose(sliced_wasserstein(x, x + 0.5), 0.5)
    y = np.random.default_rng(1).normal(size=(4000, 3))
    shift = np.array([0.6, 0.0, 0.0])
    # sliced: sqrt(E_theta (theta . shift)^2) = |shift| / sqrt(d)
    assert np.isclose(
        sliced_wasserstein(y, y + shift, num_projections=4000), 0.6 / np.sqrt(3), rtol=0.05
    )
