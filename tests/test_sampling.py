"""`sample`: grids, trajectories, conditioning, solvers and clear errors on bad input."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interpolant_rl as ir


INTERP = ir.LinearInterpolant()


def conditioned_velocity(t, x, cond):
    return cond - x  # flows toward `cond`


def test_grid_options_and_trajectory():
    ode = ir.ProbabilityFlowODE(INTERP, conditioned_velocity)
    x0 = jnp.zeros(2)
    cond = jnp.array([1.0, -2.0])
    ts, traj = ir.sample(ode, x0, cond=cond, num_steps=4, save_trajectory=True)
    np.testing.assert_allclose(ts, jnp.linspace(0, 1, 5))
    assert traj.shape == (5, 2)
    np.testing.assert_allclose(traj[0], x0)
    np.testing.assert_allclose(traj[-1], ir.sample(ode, x0, cond=cond, num_steps=4))
    # Euler on x' = c - x: x_{k+1} = x_k + h (c - x_k), so x_n = c (1 - (1 - h)^n).
    np.testing.assert_allclose(traj[-1], cond * (1 - 0.75**4), rtol=1e-6)
    # Explicit, non-uniform grid.
    grid = jnp.array([0.0, 0.1, 0.5, 1.0])
    ts, traj = ir.sample(ode, x0, cond=cond, ts=grid, save_trajectory=True)
    expected = cond * (1 - 0.9 * 0.6 * 0.5)
    np.testing.assert_allclose(traj[-1], expected, rtol=1e-6)
    # Default step count.
    assert (
        ir.sample(ode, x0, cond=cond, save_trajectory=True)[1].shape[0] == ir.DEFAULT_NUM_STEPS + 1
    )
    # Exact solution with a 5th-order solver.
    exact = cond * (1 - np.exp(-1.0))
    np.testing.assert_allclose(
        ir.sample(ode, x0, cond=cond, solver=diffrax.Tsit5()), exact, rtol=1e-5
    )


def test_sde_needs_a_key_and_is_reproducible():
    sde = ir.MemorylessSDE(INTERP, conditioned_velocity)
    cond = jnp.array([0.5, 0.5])
    with pytest.raises(ValueError, match="key"):
        ir.sample(sde, jnp.zeros(2), cond=cond)
    a = ir.sample(sde, jnp.zeros(2), key=jax.random.key(0), cond=cond)
    b = ir.sample(sde, jnp.zeros(2), key=jax.random.key(0), cond=cond)
    c = ir.sample(sde, jnp.zeros(2), key=jax.random.key(1), cond=cond)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=-3), "num_steps"),
        (dict(num_steps=4, ts=jnp.linspace(0, 1, 3)), "either num_steps or ts"),
        (dict(ts=jnp.array([0.0, 0.5, 0.5, 1.0])), "monotonic"),
        (dict(ts=jnp.array([0.0])), "at least 2"),
        (dict(ts=jnp.array([0.0, jnp.nan, 1.0])), "finite"),
    ],
)
def test_bad_grids_raise(kwargs, message):
    ode = ir.ProbabilityFlowODE(INTERP, conditioned_velocity)
    with pytest.raises(ValueError, match=message):
        ir.sample(ode, jnp.zeros(2), cond=jnp.zeros(2), **kwargs)


def test_integer_initial_state_is_promoted():
    ode = ir.ProbabilityFlowODE(INTERP, conditioned_velocity)
    out = ir.sample(ode, jnp.array([0, 0]), cond=jnp.ones(2), num_steps=2)
    assert jnp.issubdtype(out.dtype, jnp.floating)


def test_any_diffrax_solver_runs_the_sde():
    sde = ir.MarginalPreservingSDE(INTERP, conditioned_velocity, ir.ConstantNoise(0.5))
    for solver in (diffrax.Euler(), diffrax.Heun(), diffrax.SRA1(), diffrax.ShARK()):
        out = ir.sample(sde, jnp.zeros(2), key=jax.random.key(0), cond=jnp.ones(2), solver=solver)
        assert out.shape == (2,) and bool(jnp.all(jnp.isfinite(out)))
