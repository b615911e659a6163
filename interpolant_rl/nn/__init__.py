"""Networks for flow and diffusion policies and their critics, as Equinox modules.

Every network acts on one unbatched sample (use `jax.vmap` for batches); the conditioning `cond`
is an observation vector of shape `(obs_dim,)`, or `None` for networks built with `obs_dim=0`.
"""

from ._critic import (
    CriticEnsemble as CriticEnsemble,
    NoiseConditionedEnsemble as NoiseConditionedEnsemble,
    pessimistic as pessimistic,
    td_target as td_target,
)
from ._ema import ema_update as ema_update
from ._fields import (
    NoiseConditionedCritic as NoiseConditionedCritic,
    OneStepPolicy as OneStepPolicy,
    ResidualField as ResidualField,
    TwoTimeField as TwoTimeField,
    VelocityField as VelocityField,
    zero_output as zero_output,
)
from ._latent_prior import GaussianLatentPrior as GaussianLatentPrior
from ._mlp import MLP as MLP
from ._parametrisations import (
    ConsistencyFunction as ConsistencyFunction,
    GuidedVelocity as GuidedVelocity,
    NoisePrediction as NoisePrediction,
    PreconditionedJump as PreconditionedJump,
)
from ._tanh_gaussian import TanhGaussianPolicy as TanhGaussianPolicy
