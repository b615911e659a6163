"""Processes: closed-form drifts, marginal preservation, convergence order, memorylessness and the
sign of the marginal-preserving drift."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import draw_paths, fitted_order, simulate, strong_errors
from hypothesis import given, strategies as st

import interpolant_rl as ir
from interpolant_rl.testing import (
    GaussianMixture,
    mmd_two_sample_threshold,
    moment_errors,
    strategies as irs,
)


# A smooth, well-conditioned 2-D bimodal mixture for the order measurements.
BIMODAL = GaussianMixture(
    [0.4, 0.6],
    [[-1.0, 0.5], [1.0, -0.5]],
    [[[0.3, 0.05], [0.05, 0.4]], [[0.35, 0.0], [0.0, 0.3]]],
)
SAVED_TIMES = (0.25, 0.5, 0.75, 1.0)


# ---------------------------------------------------------------------------------------------
# Closed-form drifts.


@given(irs.interpolants(), st.floats(0.02, 0.98), st.floats(0.0, 0.3), st.integers(0, 1000))
def test_memoryless_sde_is_the_memoryless_member_of_the_family(interp, t, delta, seed):
    mixture = BIMODAL
    v = mixture.velocity_field(interp)
    x = jax.random.normal(jax.random.key(seed), (2,))
    memoryless = ir.MemorylessSDE(interp, v, regularisation=delta)
    family = ir.MarginalPreservingSDE(interp, v, ir.MemorylessNoise(delta), beta_floor=1e-6)
    np.testing.assert_allclose(
        memoryless.drift(t, x, None), family.drift(t, x, None), rtol=2e-4, atol=2e-4
    )
    assert float(memoryless.diffusion(t)) == pytest.approx(float(family.diffusion(t)), rel=1e-5)
    if delta == 0.0:
        # sigma^2 = 2 beta (alpha_dot beta / alpha - beta_dot), the unregularised formula.
        a, b = interp.alpha(t), interp.beta(t)
        expected = 2 * b * (interp.alpha_dot(t) * b / a - interp.beta_dot(t))
        assert float(memoryless.diffusion(t)) ** 2 == pytest.approx(float(expected), rel=1e-4)


def test_linear_closed_forms():
    interp = ir.LinearInterpolant()
    v = BIMODAL.velocity_field(interp)
    x, t = jnp.array([0.4, -0.7]), 0.3
    vt = v(t, x, None)
    memoryless = ir.MemorylessSDE(interp, v, regularisation=0.0)
    np.testing.assert_allclose(memoryless.drift(t, x, None), 2 * vt - x / t, rtol=1e-5)
    assert float(memoryless.diffusion(t)) ** 2 == pytest.approx(2 * (1 - t) / t, rel=1e-5)
    constant = ir.MarginalPreservingSDE(interp, v, ir.ConstantNoise(0.7))
    expected = vt + 0.7**2 * t / (2 * (1 - t)) * (vt - x / t)
    np.testing.assert_allclose(constant.drift(t, x, None), expected, rtol=1e-5)
    zero = ir.MarginalPreservingSDE(interp, v, ir.ZeroNoise())
    np.testing.assert_allclose(zero.drift(t, x, None), vt, rtol=1e-6)


def test_invalid_parameters_raise():
    with pytest.raises(ValueError, match="regularisation"):
        ir.MemorylessSDE(ir.LinearInterpolant(), lambda t, x, c: x, regularisation=-1.0)
    with pytest.raises(ValueError, match="ConstantNoise"):
        ir.ConstantNoise(-0.1)
    with pytest.raises(ValueError, match="num_steps"):
        ir.QAMReferenceSDE(lambda t, x, c: x, lambda t, x, c: x, num_steps=0)


# ---------------------------------------------------------------------------------------------
# Marginal preservation against the exact marginals.

PROCESS_KINDS = [
    # (kind, solver, steps): steps chosen so that the discretisation bias is far below the
    # Monte-Carlo error of 4096 samples (measured orders: Euler 1, Heun/Midpoint 2, Tsit5 5).
    ("ode", diffrax.Euler(), 256),
    ("ode", diffrax.Heun(), 32),
    ("ode", diffrax.Midpoint(), 32),
    ("ode", diffrax.Tsit5(), 8),
    # "schedule": MarginalPreservingSDE with a schedule drawn from the strategies (zero,
    # constant or memoryless, through the general score-based drift).
    ("schedule", diffrax.Euler(), 256),
    ("schedule", diffrax.SRA1(), 64),
    ("memoryless", diffrax.Euler(), 256),
    ("memoryless", diffrax.SRA1(), 64),
]


def _process(kind, interp, velocity, sigma, delta, schedule=None):
    if kind == "schedule":
        return ir.MarginalPreservingSDE(interp, velocity, schedule)
    if kind == "ode":
        return ir.ProbabilityFlowODE(interp, velocity)
    if kind == "constant":
        return ir.MarginalPreservingSDE(interp, velocity, ir.ConstantNoise(sigma))
    return ir.MemorylessSDE(interp, velocity, regularisation=delta)


def _assert_matches_marginals(mixture, interp, trajectories, num_steps, seed, n):
    level = 1e-3
    for t in SAVED_TIMES:
        samples = np.asarray(trajectories[:, round(t * num_steps)])
        marginal = mixture.marginal(interp, t)
        errors = moment_errors(samples, marginal.mean(), marginal.covariance())
        # Bonferroni over 4 times x (d + d^2) <= 80 entries at family level ~1e-3.
        assert errors.max_z() < 4.5, (t, errors)
        exact = marginal.sample(jax.random.key(seed + 7), n)
        bandwidth = float(jnp.sqrt(jnp.trace(marginal.covariance())))
        mmd2 = ir.mmd_squared(ir.RBFKernel(bandwidth), jnp.asarray(samples), exact)
        assert float(mmd2) < mmd_two_sample_threshold(n, level), (t, float(mmd2))


@pytest.mark.parametrize(
    "kind_solver_steps", PROCESS_KINDS, ids=lambda k: f"{k[0]}-{type(k[1]).__name__}-{k[2]}"
)
@given(
    irs.gaussian_mixtures(max_dim=4),
    irs.interpolants(),
    irs.noise_schedules(),
    st.floats(0.05, 0.3),
    st.integers(0, 2**20),
)
def test_marginal_preservation(kind_solver_steps, mixture, interp, schedule, delta, seed):
    kind, solver, num_steps = kind_solver_steps
    n = 4096
    process = _process(kind, interp, mixture.velocity_field(interp), None, delta, schedule)
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(k0, (n, mixture.dim))
    trajectories = simulate(process, solver, num_steps, x0, jax.random.split(k1, n))
    _assert_matches_marginals(mixture, interp, trajectories, num_steps, seed, n)


# ---------------------------------------------------------------------------------------------
# Convergence order (pathwise errors against a fine solve driven by the same noise).


@pytest.mark.parametrize(
    "solver, order", [(diffrax.Euler(), 1.0), (diffrax.Heun(), 2.0), (diffrax.Midpoint(), 2.0)]
)
@pytest.mark.parametrize("interp", [ir.LinearInterpolant(), ir.TrigonometricInterpolant()])
def test_ode_convergence_order(solver, order, interp):
    n = 256
    ode = ir.ProbabilityFlowODE(interp, BIMODAL.velocity_field(interp))
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    keys = jax.random.split(jax.random.key(2), n)
    reference = simulate(ode, diffrax.Tsit5(), 256, x0, keys)[:, -1]
    steps = [8, 16, 32, 64]
    errors = [
        float(
            jnp.mean(
                jnp.linalg.norm(simulate(ode, solver, s, x0, keys)[:, -1] - reference, axis=-1)
            )
        )
        for s in steps
    ]
    assert abs(fitted_order(steps, errors) - order) < 0.25, errors


def test_tsit5_is_accurate_to_float32_at_few_steps():
    n = 256
    interp = ir.LinearInterpolant()
    ode = ir.ProbabilityFlowODE(interp, BIMODAL.velocity_field(interp))
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    keys = jax.random.split(jax.random.key(2), n)
    reference = simulate(ode, diffrax.Tsit5(), 256, x0, keys)[:, -1]
    error = jnp.max(jnp.abs(simulate(ode, diffrax.Tsit5(), 16, x0, keys)[:, -1] - reference))
    assert float(error) < 2e-5  # a 5th-order method: h^5 ~ 1e-6 at 16 steps


SDE_CASES = [
    # (process, interval): intervals away from the endpoint singularities so that the solvers'
    # asymptotic strong orders show (constant sigma: score term ~ 1/(1-t) near t = 1;
    # memoryless: sigma ~ sqrt(1 - t) near t = 1 and stiffness ~ 1/delta near t = 0).
    ("constant", (0.0, 0.8)),
    ("memoryless", (0.2, 0.8)),
]


@pytest.mark.parametrize("kind, interval", SDE_CASES)
@pytest.mark.parametrize(
    "solver, levy_area, low, high",
    [
        # Additive noise: Euler-Maruyama has strong order 1; SRA1 has strong order 1.5.
        (diffrax.Euler(), diffrax.BrownianIncrement, 0.85, 1.3),
        (diffrax.SRA1(), diffrax.SpaceTimeLevyArea, 1.35, 2.0),
    ],
)
def test_sde_strong_convergence_order(kind, interval, solver, levy_area, low, high):
    n, fine = 256, 1024
    interp = ir.LinearInterpolant()
    process = _process(kind, interp, BIMODAL.velocity_field(interp), 0.8, 0.1)
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    paths = draw_paths(jax.random.key(3), n, fine, 2, levy_area, *interval)
    steps = [8, 16, 32, 64]
    errors = strong_errors(process, solver, x0, paths, steps)
    assert low < fitted_order(steps, errors) < high, errors


@pytest.mark.parametrize("kind", ["constant", "memoryless"])
@pytest.mark.parametrize(
    "solver, levy_area",
    [(diffrax.Euler(), diffrax.BrownianIncrement), (diffrax.SRA1(), diffrax.SpaceTimeLevyArea)],
)
def test_sde_converges_on_the_whole_interval(kind, solver, levy_area):
    """On [0, 1] the endpoint singularities cap every solver at order ~1; errors still shrink."""
    n, fine = 256, 1024
    interp = ir.LinearInterpolant()
    process = _process(kind, interp, BIMODAL.velocity_field(interp), 0.8, 0.1)
    x0 = jax.random.normal(jax.random.key(1), (n, 2))
    paths = draw_paths(jax.random.key(3), n, fine, 2, levy_area)
    steps = [16, 32, 64, 128]
    errors = strong_errors(process, solver, x0, paths, steps)
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert fitted_order(steps, errors) > 0.9, errors


# ---------------------------------------------------------------------------------------------
# Memorylessness.


@given(irs.gaussian_mixtures(min_dim=1, max_dim=3), irs.interpolants(), st.integers(0, 2**20))
def test_memoryless_sde_decouples_noise_and_data(mixture, interp, seed):
    """Corr(X0, X1) -> 0 under the memoryless SDE as the regularisation delta -> 0 (measured:
    |corr| ~ delta), and is clearly non-zero under the probability-flow ODE (a deterministic,
    invertible map)."""
    n, delta = 4096, 0.01
    velocity = mixture.velocity_field(interp)
    k0, k1 = jax.random.split(jax.random.key(seed))
    x0 = jax.random.normal(k0, (n, mixture.dim))
    keys = jax.random.split(k1, n)

    def cross_correlation(process, num_steps):
        x1 = np.asarray(simulate(process, diffrax.Euler(), num_steps, x0, keys)[:, -1])
        joint = np.corrcoef(np.concatenate([np.asarray(x0), x1], axis=1).T)
        return joint[: mixture.dim, mixture.dim :]

    memoryless = cross_correlation(ir.MemorylessSDE(interp, velocity, regularisation=delta), 200)
    # Monte-Carlo: each sample correlation has standard error 1/sqrt(n); 5 sigma plus O(delta).
    assert np.max(np.abs(memoryless)) < 5 / np.sqrt(n) + 2 * delta, memoryless
    ode = cross_correlation(ir.ProbabilityFlowODE(interp, velocity), 50)
    # An invertible deterministic map: some input coordinate correlates strongly with the output.
    assert np.max(np.abs(ode)) > 0.3, ode


def test_memoryless_coupling_shrinks_with_regularisation():
    interp = ir.LinearInterpolant()
    velocity = BIMODAL.velocity_field(interp)
    n = 8192
    x0 = jax.random.normal(jax.random.key(0), (n, 2))
    keys = jax.random.split(jax.random.key(1), n)
    correlations = []
    for delta in (0.3, 0.1, 0.03):
        x1 = np.asarray(
            simulate(ir.MemorylessSDE(interp, velocity, delta), diffrax.Euler(), 300, x0, keys)[
                :, -1
            ]
        )
        joint = np.corrcoef(np.concatenate([np.asarray(x0), x1], axis=1).T)[:2, 2:]
        correlations.append(np.max(np.abs(joint)))
    assert correlations[0] > correlations[1] > correlations[2], correlations


# ---------------------------------------------------------------------------------------------
# The sign of the marginal-preserving drift: the seed paper prints +x/t; marginals decide.


class _SeedTypoSDE(ir.AbstractSDE):
    """Linear interpolant, constant sigma, drift v + sigma^2 t/(2(1-t)) (v + x/t) (the typo)."""

    interpolant: ir.AbstractInterpolant
    velocity: object
    sigma: float

    def drift(self, t, x, cond):
        v = self.velocity(t, x, cond)
        return v + self.sigma**2 * t / (2 * (1 - t)) * (v + x / t)

    def diffusion(self, t):
        return jnp.full_like(jnp.asarray(t, dtype=float), self.sigma)


def test_drift_sign_is_decided_by_marginals():
    interp = ir.LinearInterpolant()
    velocity = BIMODAL.velocity_field(interp)
    n, num_steps, seed = 4096, 256, 5
    x0 = jax.random.normal(jax.random.key(seed), (n, 2))
    keys = jax.random.split(jax.random.key(seed + 1), n)
    right = ir.MarginalPreservingSDE(interp, velocity, ir.ConstantNoise(0.8))
    _assert_matches_marginals(
        BIMODAL, interp, simulate(right, diffrax.Euler(), num_steps, x0, keys), num_steps, seed, n
    )
    wrong = _SeedTypoSDE(interp, velocity, 0.8)
    trajectories = simulate(wrong, diffrax.Euler(), num_steps, x0, keys)
    with pytest.raises(AssertionError):
        _assert_matches_marginals(BIMODAL, interp, trajectories, num_steps, seed, n)
    final = np.asarray(trajectories[:, -1])
    errors = moment_errors(final, BIMODAL.mean(), BIMODAL.covariance())
    assert not np.all(np.isfinite(final)) or errors.max_z() > 20
