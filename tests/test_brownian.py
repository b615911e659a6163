"""GridBrownianPath: increment laws, Lévy areas, coarsening (Chen's relation), directions,
vmap and reverse-mode differentiation through `sample`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import interpolant_rl as ir


def test_increments_and_levy_areas_have_the_right_law():
    n = 20000
    ts = jnp.array([0.0, 0.1, 0.4, 1.0])
    keys = jax.random.split(jax.random.key(0), n)
    paths = jax.vmap(lambda k: ir.GridBrownianPath.draw(k, ts, (2,), diffrax.SpaceTimeLevyArea))(
        keys
    )
    dts = np.diff(np.asarray(ts))
    w = np.asarray(paths.increments)  # (n, 3, 2)
    h = np.asarray(paths.levy_increments)
    # Sample variances: relative standard error sqrt(2/n) ~ 1%; allow 5 of them.
    np.testing.assert_allclose(
        w.var(axis=0), dts[:, None] * np.ones((1, 2)), rtol=5 * np.sqrt(2 / n)
    )
    np.testing.assert_allclose(
        h.var(axis=0), dts[:, None] / 12 * np.ones((1, 2)), rtol=5 * np.sqrt(2 / n)
    )
    # Independence of W and H (correlation standard error 1/sqrt(n)).
    corr = np.mean(w * h, axis=0) / np.sqrt(w.var(axis=0) * h.var(axis=0))
    assert np.max(np.abs(corr)) < 5 / np.sqrt(n)


def test_evaluate_returns_cell_increments_in_both_directions():
    ts = jnp.linspace(0.0, 1.0, 5)
    path = ir.GridBrownianPath.draw(jax.random.key(1), ts, (3,), diffrax.SpaceTimeLevyArea)
    for i in range(4):
        np.testing.assert_allclose(path.evaluate(ts[i], ts[i + 1]), path.increments[i])
        np.testing.assert_allclose(path.evaluate(ts[i + 1], ts[i]), -path.increments[i])
        levy = path.evaluate(ts[i], ts[i + 1], use_levy=True)
        assert isinstance(levy, diffrax.SpaceTimeLevyArea)
        np.testing.assert_allclose(levy.H, path.levy_increments[i])
    np.testing.assert_allclose(
        path.evaluate(ts[2]), path.increments[0] + path.increments[1], rtol=1e-6
    )


def test_coarsen_is_chens_relation():
    """With zero fine Lévy areas the path is piecewise linear, so the coarse space-time Lévy area
    H = (1/T) int (W_u - W_start) du - W_T/2 is exactly a trapezoid integral of the nodes."""
    ts = jnp.linspace(0.0, 1.0, 65)
    drawn = ir.GridBrownianPath.draw(jax.random.key(2), ts, (3,), diffrax.SpaceTimeLevyArea)
    piecewise_linear = ir.GridBrownianPath(
        ts, drawn.increments, jnp.zeros_like(drawn.increments), diffrax.SpaceTimeLevyArea
    )
    coarse = piecewise_linear.coarsen(8)
    nodes = jnp.concatenate([jnp.zeros((1, 3)), jnp.cumsum(drawn.increments, axis=0)])
    for j in range(8):
        segment = nodes[8 * j : 8 * j + 9] - nodes[8 * j]
        cell = ts[8 * j : 8 * j + 9]
        expected = jnp.trapezoid(segment, cell, axis=0) / (cell[-1] - cell[0]) - segment[-1] / 2
        np.testing.assert_allclose(coarse.levy_increments[j], expected, atol=1e-6)
        np.testing.assert_allclose(coarse.increments[j], segment[-1], atol=1e-6)
    # With random fine areas the coarse ones have the right variance, T/12.
    keys = jax.random.split(jax.random.key(3), 20000)
    paths = jax.vmap(
        lambda k: ir.GridBrownianPath.draw(k, ts, (1,), diffrax.SpaceTimeLevyArea).coarsen(16)
    )(keys)
    np.testing.assert_allclose(np.var(paths.levy_increments), 0.25 / 12, rtol=0.05)


def test_invalid_paths_raise():
    ts = jnp.linspace(0.0, 1.0, 5)
    with pytest.raises(ValueError, match="one increment per grid cell"):
        ir.GridBrownianPath(ts, jnp.zeros((3, 2)), None, diffrax.BrownianIncrement)
    with pytest.raises(ValueError, match="levy_increments"):
        ir.GridBrownianPath(ts, jnp.zeros((4, 2)), None, diffrax.SpaceTimeLevyArea)
    with pytest.raises(ValueError, match="coarsen"):
        ir.GridBrownianPath.draw(jax.random.key(0), ts, (2,)).coarsen(3)
    with pytest.raises(ValueError, match="levy_area"):
        ir.GridBrownianPath.draw(jax.random.key(0), ts, (2,), diffrax.SpaceTimeTimeLevyArea)


def test_sample_is_differentiable_in_reverse_mode_and_vmaps():
    interp = ir.LinearInterpolant()
    sde = ir.MemorylessSDE(interp, lambda t, x, cond: cond * (1.0 - x))

    def mean_final(cond, keys):
        x1 = jax.vmap(lambda k: ir.sample(sde, jnp.zeros(2), key=k, cond=cond))(keys)
        return jnp.mean(x1)

    keys = jax.random.split(jax.random.key(4), 64)
    grad = jax.jit(jax.grad(mean_final))(jnp.asarray(0.7), keys)
    eps = 1e-2
    finite = (mean_final(0.7 + eps, keys) - mean_final(0.7 - eps, keys)) / (2 * eps)
    assert float(grad) == pytest.approx(float(finite), rel=1e-2, abs=1e-3)
