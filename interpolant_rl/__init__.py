"""interpolant_rl: flow and diffusion policies against a learned critic, on Equinox and Diffrax.

Time runs from noise (t = 0) to data (t = 1) everywhere.
"""

from importlib.metadata import (
    PackageNotFoundError as _PackageNotFoundError,
    version as _version,
)

from . import agents as agents, data as data, nn as nn, objectives as objectives, train as train
from ._adjoint import (
    AbstractAdjointODE as AbstractAdjointODE,
    AbstractTrajectoryEvaluation as AbstractTrajectoryEvaluation,
    BasicAdjointODE as BasicAdjointODE,
    DiscreteAdjointEvaluation as DiscreteAdjointEvaluation,
    InterpolatedEvaluation as InterpolatedEvaluation,
    LeanAdjointODE as LeanAdjointODE,
    QAMReferenceEvaluation as QAMReferenceEvaluation,
    solve_adjoint as solve_adjoint,
)
from ._brownian import GridBrownianPath as GridBrownianPath
from ._consistency import (
    consistency_sample as consistency_sample,
    KarrasSchedule as KarrasSchedule,
)
from ._ddpm import (
    ddpm_posterior as ddpm_posterior,
    ddpm_sample as ddpm_sample,
    ddpm_step as ddpm_step,
    jump_renoise_step as jump_renoise_step,
)
from ._export import export_policy as export_policy, load_policy as load_policy
from ._interpolant import (
    AbstractInterpolant as AbstractInterpolant,
    LinearInterpolant as LinearInterpolant,
    TrigonometricInterpolant as TrigonometricInterpolant,
    VariancePreservingInterpolant as VariancePreservingInterpolant,
)
from ._jump_sampling import (
    jump as jump,
    meanflow_one_step as meanflow_one_step,
    multi_jump_sample as multi_jump_sample,
)
from ._kernels import (
    AbstractKernel as AbstractKernel,
    LaplaceKernel as LaplaceKernel,
    mmd_squared as mmd_squared,
    RBFKernel as RBFKernel,
)
from ._langevin import (
    annealed_langevin_sample as annealed_langevin_sample,
    LangevinSchedule as LangevinSchedule,
)
from ._process import (
    AbstractProcess as AbstractProcess,
    AbstractSDE as AbstractSDE,
    MarginalPreservingSDE as MarginalPreservingSDE,
    MemorylessSDE as MemorylessSDE,
    ProbabilityFlowODE as ProbabilityFlowODE,
    QAMReferenceSDE as QAMReferenceSDE,
)
from ._sampling import (
    DEFAULT_NUM_STEPS as DEFAULT_NUM_STEPS,
    integrate_on_grid as integrate_on_grid,
    sample as sample,
    time_grid as time_grid,
)
from ._schedule import (
    AbstractNoiseSchedule as AbstractNoiseSchedule,
    ConstantNoise as ConstantNoise,
    MemorylessNoise as MemorylessNoise,
    ZeroNoise as ZeroNoise,
)


try:
    __version__ = _version("interpolant_rl")
except _PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
