"""Closed-form Gaussian-mixture quantities and hypothesis strategies for property tests, and the
exact-tilt benchmark (`interpolant_rl.testing.exact_tilt`).

Import `interpolant_rl.testing.strategies` (needs `hypothesis`) for the strategies.
"""

from ._critic import QuadraticCritic as QuadraticCritic
from ._mixture import ExactVelocity as ExactVelocity, GaussianMixture as GaussianMixture
from ._statistics import (
    mmd_two_sample_threshold as mmd_two_sample_threshold,
    moment_errors as moment_errors,
    MomentErrors as MomentErrors,
    sliced_wasserstein as sliced_wasserstein,
)
