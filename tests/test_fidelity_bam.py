"""BAM is QAM with the basic adjoint and nothing else (QAM paper, §5): same scheme (the reference
discretisation), same τ; its basic adjoint on that scheme is backpropagation through the very
forward pass QAM samples."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from interpolant_rl import agents, objectives as obj


DIM, OBS, T = 2, 3, 6
TAU = 1.5


def _field(key):
    net = eqx.nn.MLP(DIM + OBS + 1, DIM, 16, 2, activation=jnp.tanh, key=key)
    return lambda t, x, cond: net(jnp.concatenate([x, cond, jnp.atleast_1d(t)]))


FINE, BASE = _field(jax.random.key(0)), _field(jax.random.key(1))


def q_value(a):
    return -0.5 * jnp.sum((a - jnp.array([0.3, -0.2])) ** 2) + a[0]


def test_bam_config_is_qam_config_with_the_basic_adjoint():
    bam, qam = agents.default_config("bam"), agents.default_config("qam")
    assert bam == dataclasses.replace(qam, basic_adjoint=True)
    assert bam.adjoint_scheme == obj.QAMReferenceAdjointMatching(qam.flow_steps)


def test_reference_basic_adjoint_is_backprop_through_the_reference_forward_pass():
    scheme = obj.QAMReferenceAdjointMatching(T)
    cond = jnp.array([0.2, -0.5, 0.7])
    x0 = jax.random.normal(jax.random.key(2), (DIM,))
    ts, xs = scheme.trajectory(FINE, BASE, x0, jax.random.key(3), cond)
    terminal = -TAU * jax.grad(q_value)(xs[-1])
    states = scheme.adjoint(FINE, BASE, ts, xs, terminal, cond, lean=False)

    h = 1.0 / T
    noises = [
        xs[i + 1] - xs[i] - h * (2 * FINE(ts[i], xs[i], cond) - xs[i] / (ts[i] + h))
        for i in range(T - 1)
    ]

    def cost(perturbations):
        """sum_{i<T-1} h |u_i|^2 / 2 - tau Q(x_T) along the reference recursion with the sampled
        noise held fixed; perturbation i is added to x_i, so dJ/d(perturbation_i) = dJ/dx_i."""
        x, total = x0, 0.0
        for i in range(T):
            x = x + perturbations[i]
            t = ts[i]
            if i < T - 1:
                sigma = jnp.sqrt(2 * (1 - t + h) / (t + h))
                control = 2 * (FINE(t, x, cond) - BASE(t, x, cond)) / sigma
                total = total + h * 0.5 * jnp.sum(control**2)
                x = x + h * (2 * FINE(t, x, cond) - x / (t + h)) + noises[i]
            else:  # the last step: a deterministic ODE step of the base flow
                x = x + h * BASE(t, x, cond)
        return total - TAU * q_value(x + perturbations[T])

    grads = jax.grad(cost)(jnp.zeros((T + 1, DIM)))
    np.testing.assert_allclose(states, grads, rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(states))


def test_reference_basic_adjoint_equals_lean_terminal_and_runs_in_the_loss():
    scheme = obj.QAMReferenceAdjointMatching(T)
    cond = jnp.zeros((4, OBS))
    args = (lambda c, a: jax.grad(q_value)(a), TAU, 4, DIM, cond, jax.random.key(4))
    basic, (metrics, actions) = obj.basic_adjoint_matching_loss(scheme, FINE, BASE, *args)
    lean, (lean_metrics, lean_actions) = obj.adjoint_matching_loss(scheme, FINE, BASE, *args)
    # same forward pass and terminal condition; different adjoints, hence different losses
    np.testing.assert_array_equal(actions, lean_actions)
    np.testing.assert_allclose(
        metrics["terminal_adjoint_norm"], lean_metrics["terminal_adjoint_norm"], rtol=1e-6
    )
    assert np.isfinite(basic) and not np.isclose(basic, lean)
