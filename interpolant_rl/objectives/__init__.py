"""Policy-extraction objectives (losses), shared by every agent.

The networks some of them train live in [`interpolant_rl.nn`][] and the samplers of their
policies next to [`interpolant_rl.sample`][] (`ddpm_sample`, `multi_jump_sample`,
`meanflow_one_step`, `consistency_sample`).

Each objective is a pure function of the fields it trains (velocity, jump or average-velocity
fields), the critic (values and/or action gradients), and the integration choices (process,
Diffrax solver, step count). Batches are explicit: actions `(batch, dim)`, `cond` batched along
its leading axis.
"""

from .._custom_types import (
    AverageVelocityField as AverageVelocityField,
    JumpField as JumpField,
    NoiseField as NoiseField,
)
from ._actor_critic import (
    bptt_q_loss as bptt_q_loss,
    critic_bc_rewards as critic_bc_rewards,
    one_step_distillation_loss as one_step_distillation_loss,
    td3_bc_loss as td3_bc_loss,
)
from ._adjoint_matching import (
    AbstractAdjointMatchingScheme as AbstractAdjointMatchingScheme,
    adjoint_matching_loss as adjoint_matching_loss,
    basic_adjoint_matching_loss as basic_adjoint_matching_loss,
    frozen as frozen,
    MemorylessAdjointMatching as MemorylessAdjointMatching,
    QAMReferenceAdjointMatching as QAMReferenceAdjointMatching,
)
from ._boltzmann import (
    boltzmann_velocity as boltzmann_velocity,
    som_loss as som_loss,
)
from ._consistency import (
    consistency_scales as consistency_scales,
    consistency_training_loss as consistency_training_loss,
)
from ._diffusion import (
    denoising_errors as denoising_errors,
    denoising_loss as denoising_loss,
    q_score_matching_loss as q_score_matching_loss,
    soft_q_guidance_loss as soft_q_guidance_loss,
)
from ._flow_matching import (
    flow_matching_errors as flow_matching_errors,
    flow_matching_loss as flow_matching_loss,
)
from ._guidance import (
    linex_loss as linex_loss,
    noisy_critic_loss as noisy_critic_loss,
)
from ._latent_prior import latent_prior_loss as latent_prior_loss
from ._meanflow import (
    meanflow_loss as meanflow_loss,
    meanflow_preset as meanflow_preset,
    meanflow_regression_loss as meanflow_regression_loss,
    meanflow_target as meanflow_target,
    meanflow_time_pairs as meanflow_time_pairs,
    MeanFlowPreset as MeanFlowPreset,
)
from ._moment_matching import (
    AbstractBandwidth as AbstractBandwidth,
    AbstractJumpTimes as AbstractJumpTimes,
    ConstantBandwidth as ConstantBandwidth,
    JumpScaledBandwidth as JumpScaledBandwidth,
    MedianBandwidth as MedianBandwidth,
    moment_matching_loss as moment_matching_loss,
    SampledJumpTimes as SampledJumpTimes,
    UniformJumpTimes as UniformJumpTimes,
)
from ._noise_conditioned import noise_level_loss as noise_level_loss
from ._q_term import normalised_q_loss as normalised_q_loss
from ._sac import (
    sac_actor_loss as sac_actor_loss,
    soft_td_rewards as soft_td_rewards,
    Temperature as Temperature,
    temperature_loss as temperature_loss,
)
from ._time_sampling import (
    AbstractBinnedTimeSampler as AbstractBinnedTimeSampler,
    AbstractRootLawTimeSampler as AbstractRootLawTimeSampler,
    AbstractTimeSampler as AbstractTimeSampler,
    AdaptiveTimeSampler as AdaptiveTimeSampler,
    GradientNormTimeSampler as GradientNormTimeSampler,
    LogitNormalTimes as LogitNormalTimes,
    on_grid as on_grid,
    UniformTimes as UniformTimes,
    VarianceMinimisingTimeSampler as VarianceMinimisingTimeSampler,
)
from ._value import (
    advantage_weights as advantage_weights,
    cql_penalty as cql_penalty,
    expectile_loss as expectile_loss,
)
from ._weighting import weighted_mean as weighted_mean
