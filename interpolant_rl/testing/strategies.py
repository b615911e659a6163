r"""Hypothesis strategies for mixtures, interpolants, noise schedules and solvers.

Reuse them in your own property tests:

```python
from hypothesis import given
from interpolant_rl.testing import strategies as irs

@given(irs.gaussian_mixtures(max_dim=3), irs.interpolants())
def test_my_property(mixture, interpolant): ...
```
"""

import diffrax
import numpy as np
from hypothesis import strategies as st

from .._interpolant import AbstractInterpolant, LinearInterpolant, TrigonometricInterpolant
from .._schedule import AbstractNoiseSchedule, ConstantNoise, MemorylessNoise, ZeroNoise
from ._mixture import GaussianMixture


@st.composite
def gaussian_mixtures(
    draw,
    min_dim: int = 1,
    max_dim: int = 4,
    max_components: int = 3,
    mean_scale: float = 2.0,
    min_eigenvalue: float = 0.05,
    max_eigenvalue: float = 1.5,
) -> GaussianMixture:
    """Random mixtures: 1..`max_components` components in `min_dim..max_dim` dimensions, means in
    `[-mean_scale, mean_scale]^d`, covariances with eigenvalues in
    `[min_eigenvalue, max_eigenvalue]` and weights bounded away from 0."""
    dim = draw(st.integers(min_dim, max_dim))
    k = draw(st.integers(1, max_components))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.2, 1.0, size=k)
    means = rng.uniform(-mean_scale, mean_scale, size=(k, dim))
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        eigenvalues = rng.uniform(min_eigenvalue, max_eigenvalue, size=dim)
        covs.append((q * eigenvalues) @ q.T)
    return GaussianMixture(weights, means, np.stack(covs))


def interpolants() -> st.SearchStrategy[AbstractInterpolant]:
    """The built-in interpolants."""
    return st.sampled_from([LinearInterpolant(), TrigonometricInterpolant()])


def noise_schedules(
    max_constant: float = 1.0, min_regularisation: float = 0.05
) -> st.SearchStrategy[AbstractNoiseSchedule]:
    """Zero, constant (sigma in [0.1, `max_constant`]) and regularised memoryless schedules."""
    return st.one_of(
        st.just(ZeroNoise()),
        st.floats(0.1, max_constant).map(ConstantNoise),
        st.floats(min_regularisation, 0.3).map(MemorylessNoise),
    )


def ode_solvers() -> st.SearchStrategy[diffrax.AbstractSolver]:
    """Explicit ODE solvers of orders 1, 2, 2 and 5."""
    return st.sampled_from([diffrax.Euler(), diffrax.Heun(), diffrax.Midpoint(), diffrax.Tsit5()])


def sde_solvers() -> st.SearchStrategy[diffrax.AbstractSolver]:
    """SDE solvers valid for additive noise: Euler–Maruyama and the additive-noise SRK SRA1."""
    return st.sampled_from([diffrax.Euler(), diffrax.SRA1()])
