"""Adjoint ODEs: the basic adjoint is backpropagation through the discretised SDE; the lean
adjoint equals the basic one when the fine-tuned velocity is the base; the QAM reference
discretisation is reproduced exactly; the continuous adjoint converges for higher-order solvers."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interpolant_rl as ir
from interpolant_rl.testing import GaussianMixture


DIM, OBS = 3, 2
MIXTURE = GaussianMixture(
    [0.5, 0.5], [[-1.0, 0.0, 0.5], [1.0, 0.5, -0.5]], [0.3 * np.eye(3), 0.2 * np.eye(3) + 0.05]
)
INTERP = ir.LinearInterpolant()


class PerturbedVelocity(eqx.Module):
    """The exact mixture velocity plus a small state-conditioned network (a 'fine-tuned' field)."""

    base: ir.testing.ExactVelocity
    net: eqx.nn.MLP
    scale: float

    def __call__(self, t, x, cond):
        features = jnp.concatenate([x, jnp.atleast_1d(t), cond])
        return self.base(t, x, None) + self.scale * self.net(features)


BASE_VELOCITY = PerturbedVelocity(
    MIXTURE.velocity_field(INTERP),
    eqx.nn.MLP(DIM + 1 + OBS, DIM, 16, 2, activation=jnp.tanh, key=jax.random.key(0)),
    0.1,
)
FINE_VELOCITY = eqx.tree_at(
    lambda v: v.net,
    BASE_VELOCITY,
    eqx.nn.MLP(DIM + 1 + OBS, DIM, 16, 2, activation=jnp.tanh, key=jax.random.key(1)),
)
FINE_VELOCITY = eqx.tree_at(lambda v: v.scale, FINE_VELOCITY, 0.5)
A = jnp.array([[1.0, 0.2, 0.0], [0.2, 0.5, 0.0], [0.0, 0.0, 2.0]])
B = jnp.array([0.5, -0.3, 0.2])
TAU = 2.0


def terminal_cost(x):
    """g(x) = -tau Q(x) with Q(a) = -a^T A a / 2 + b^T a."""
    return -TAU * (-0.5 * x @ A @ x + B @ x)


@pytest.mark.parametrize("delta", [0.1, 0.3])
def test_basic_adjoint_is_backprop_through_euler_maruyama(delta):
    T = 10
    cond = jnp.array([0.3, -0.4])
    fine = ir.MemorylessSDE(INTERP, FINE_VELOCITY, regularisation=delta)
    base = ir.MemorylessSDE(INTERP, BASE_VELOCITY, regularisation=delta)
    adjoint = ir.BasicAdjointODE(fine, base)
    ts = jnp.linspace(0.0, 1.0, T + 1)
    path = ir.GridBrownianPath.draw(jax.random.key(2), ts, (DIM,))
    x0 = jax.random.normal(jax.random.key(3), (DIM,))
    h = 1.0 / T

    @jax.jit
    def adjoint_states():
        _, xs = ir.sample(fine, x0, cond=cond, ts=ts, brownian=path, save_trajectory=True)
        return xs, ir.solve_adjoint(adjoint, ts, xs, jax.grad(terminal_cost)(xs[-1]), cond=cond)

    xs, states = adjoint_states()

    def total_cost(perturbations):
        """J = h sum_i f(x_i, t_i) + g(x_T) along Euler-Maruyama with the same noise, with a
        perturbation added to each state so that dJ/d(perturbation_i) = dJ/dx_i."""
        x, cost = x0, 0.0
        for i in range(T):
            x = x + perturbations[i]
            cost = cost + h * adjoint.running_cost(ts[i], x, cond)
            x = x + h * fine.drift(ts[i], x, cond) + fine.diffusion(ts[i]) * path.increments[i]
        return cost + terminal_cost(x + perturbations[T])

    grads = jax.jit(jax.grad(total_cost))(jnp.zeros((T + 1, DIM)))
    np.testing.assert_allclose(states, grads, rtol=1e-4, atol=1e-4)

    # The same gradient at t = 0 through the library's own `sample` (Diffrax solver steps).
    def cost_through_sample(x):
        _, traj = ir.sample(fine, x, cond=cond, ts=ts, brownian=path, save_trajectory=True)
        running = jax.vmap(adjoint.running_cost, in_axes=(0, 0, None))(ts[:-1], traj[:-1], cond)
        return h * jnp.sum(running) + terminal_cost(traj[-1])

    np.testing.assert_allclose(
        states[0], jax.jit(jax.grad(cost_through_sample))(x0), rtol=1e-4, atol=1e-4
    )
    # And the trajectory really is the sampled one.
    assert xs.shape == (T + 1, DIM)


def test_lean_adjoint_equals_basic_when_fine_tuned_is_base():
    T = 10
    cond = jnp.array([0.1, 0.2])
    base = ir.MemorylessSDE(INTERP, BASE_VELOCITY)
    ts, xs = ir.sample(
        base, jnp.ones(DIM), key=jax.random.key(4), cond=cond, num_steps=T, save_trajectory=True
    )
    terminal = jax.grad(terminal_cost)(xs[-1])
    lean = ir.solve_adjoint(ir.LeanAdjointODE(base), ts, xs, terminal, cond=cond)
    basic = ir.solve_adjoint(ir.BasicAdjointODE(base, base), ts, xs, terminal, cond=cond)
    np.testing.assert_allclose(lean, basic, rtol=1e-5, atol=1e-6)
    # ...and differs once the fine-tuned drift differs (the running cost matters).
    fine = ir.MemorylessSDE(INTERP, FINE_VELOCITY)
    other = ir.solve_adjoint(ir.BasicAdjointODE(fine, base), ts, xs, terminal, cond=cond)
    assert float(jnp.max(jnp.abs(other[0] - lean[0]))) > 1e-3


def test_reference_discretisation_matches_hand_written_loop():
    """QAMReferenceSDE + LeanAdjointODE(memoryless, delta = 0) + QAMReferenceEvaluation reproduce
    the QAM reference code's loops (time-shifted singular terms, base-flow last step, adjoint
    with the base drift at t_i + h) to 1e-5."""
    T = 10
    h = 1.0 / T
    cond = jnp.array([0.5, -0.5])
    x0 = jax.random.normal(jax.random.key(5), (DIM,))
    ts = jnp.linspace(0.0, 1.0, T + 1)
    path = ir.GridBrownianPath.draw(jax.random.key(6), ts, (DIM,))
    process = ir.QAMReferenceSDE(FINE_VELOCITY, BASE_VELOCITY, num_steps=T)

    def terminal_from(x_final):
        return -TAU * jax.grad(lambda a: -0.5 * a @ A @ a + B @ a)(jnp.clip(x_final, -1.0, 1.0))

    @jax.jit
    def library():
        _, xs = ir.sample(process, x0, cond=cond, ts=ts, brownian=path, save_trajectory=True)
        lean = ir.LeanAdjointODE(ir.MemorylessSDE(INTERP, BASE_VELOCITY, regularisation=0.0))
        adjoints = ir.solve_adjoint(
            lean, ts, xs, terminal_from(xs[-1]), cond=cond, evaluation=ir.QAMReferenceEvaluation()
        )
        return xs, adjoints

    @jax.jit
    def hand_written():
        noise = path.increments / jnp.sqrt(h)
        x, xs = x0, [x0]
        for i in range(T):
            t = i / T
            if i != T - 1:
                sigma = jnp.sqrt(2 * (1 - t + h) / (t + h))
                v = FINE_VELOCITY(t, x, cond)
                x = x + h * (2 * v - x / (t + h)) + jnp.sqrt(h) * sigma * noise[i]
            else:
                x = x + h * BASE_VELOCITY(t, x, cond)
            xs.append(x)
        adj, adjs = terminal_from(x), []
        for i in reversed(range(T)):
            t = i / T

            def drift(y, t=t):
                return 2 * BASE_VELOCITY(t + h, y, cond) - y / (t + h)

            adj = adj + h * jax.vjp(drift, xs[i])[1](adj)[0]
            adjs.append(adj)
        return jnp.stack(xs), jnp.stack(adjs[::-1])

    xs, adjoints = library()
    ref_xs, ref_adjoints = hand_written()
    np.testing.assert_allclose(xs, ref_xs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(adjoints[:-1], ref_adjoints, atol=1e-5, rtol=1e-5)


def test_continuous_adjoint_converges_with_higher_order_solver():
    """Probability-flow ODE: a(0) = (dX_1/dX_0)^T grad g(X_1). Tsit5 backwards with interpolated
    trajectory states converges at order 2 (the linear interpolation's order)."""
    cond = jnp.array([0.2, 0.1])
    ode = ir.ProbabilityFlowODE(INTERP, BASE_VELOCITY)
    x0 = jnp.array([0.3, -0.5, 0.8])

    def flow_map(x):
        return ir.sample(ode, x, cond=cond, solver=diffrax.Tsit5(), num_steps=256)

    exact = jax.grad(lambda x: terminal_cost(flow_map(x)))(x0)

    @eqx.filter_jit
    def adjoint_at_zero(num_steps):
        ts, xs = ir.sample(
            ode, x0, cond=cond, solver=diffrax.Tsit5(), num_steps=num_steps, save_trajectory=True
        )
        states = ir.solve_adjoint(
            ir.LeanAdjointODE(ode),
            ts,
            xs,
            jax.grad(terminal_cost)(xs[-1]),
            cond=cond,
            solver=diffrax.Tsit5(),
            evaluation=ir.InterpolatedEvaluation(),
        )
        return states[0]

    errors = [float(jnp.linalg.norm(adjoint_at_zero(n) - exact)) for n in (8, 16, 32, 64)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 1e-2 * float(jnp.linalg.norm(exact))
    assert np.polyfit(np.log([8, 16, 32, 64]), np.log(errors), 1)[0] < -1.7, errors


def test_adjoint_vmaps_over_a_batch():
    base = ir.MemorylessSDE(INTERP, BASE_VELOCITY)
    n = 8
    keys = jax.random.split(jax.random.key(7), n)
    x0s = jax.random.normal(jax.random.key(8), (n, DIM))
    conds = jax.random.normal(jax.random.key(9), (n, OBS))

    @jax.jit
    def batch(keys, x0s, conds):
        def one(key, x0, cond):
            ts, xs = ir.sample(base, x0, key=key, cond=cond, save_trajectory=True)
            return ir.solve_adjoint(ir.LeanAdjointODE(base), ts, xs, -xs[-1], cond=cond)

        return jax.vmap(one)(keys, x0s, conds)

    states = batch(keys, x0s, conds)
    assert states.shape == (n, ir.DEFAULT_NUM_STEPS + 1, DIM)
    assert bool(jnp.all(jnp.isfinite(states)))
    one = jax.jit(
        lambda k, x, c: ir.solve_adjoint(
            ir.LeanAdjointODE(base),
            *ir.sample(base, x, key=k, cond=c, save_trajectory=True),
            -ir.sample(base, x, key=k, cond=c),
            cond=c,
        )
    )(keys[3], x0s[3], conds[3])
    np.testing.assert_allclose(states[3], one, rtol=1e-5, atol=1e-6)
