"""Policy-extraction objectives, shared by every agent.

Each objective is a pure function of the fields it trains (velocity, jump or average-velocity
fields), the critic (values and/or action gradients), and the integration choices (process,
Diffrax solver, step count). Batches are explicit: actions `(batch, dim)`, `cond` batched along
its leading axis.
"""

from ._actor_critic import (
    bptt_q_loss as bptt_q_loss,
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
from ._diffusion import (
    ddpm_posterior as ddpm_posterior,
    ddpm_sample as ddpm_sample,
    ddpm_step as ddpm_step,
    denoising_loss as denoising_loss,
    jump_renoise_step as jump_renoise_step,
    NoiseField as NoiseField,
    NoisePrediction as NoisePrediction,
    q_score_matching_loss as q_score_matching_loss,
    soft_q_guidance_loss as soft_q_guidance_loss,
)
from ._flow_matching import flow_matching_loss as flow_matching_loss
from ._guidance import (
    GuidedVelocity as GuidedVelocity,
    linex_loss as linex_loss,
    NoiseConditionedCritic as NoiseConditionedCritic,
    noisy_critic_loss as noisy_critic_loss,
)
from ._meanflow import (
    AbstractTimeSampler as AbstractTimeSampler,
    AverageVelocityField as AverageVelocityField,
    LogitNormalTimes as LogitNormalTimes,
    meanflow_loss as meanflow_loss,
    meanflow_one_step as meanflow_one_step,
    meanflow_preset as meanflow_preset,
    meanflow_target as meanflow_target,
    MeanFlowPreset as MeanFlowPreset,
    UniformTimes as UniformTimes,
)
from ._moment_matching import (
    AbstractBandwidth as AbstractBandwidth,
    AbstractJumpTimes as AbstractJumpTimes,
    ConstantBandwidth as ConstantBandwidth,
    jump as jump,
    JumpField as JumpField,
    JumpScaledBandwidth as JumpScaledBandwidth,
    MedianBandwidth as MedianBandwidth,
    moment_matching_loss as moment_matching_loss,
    multi_jump_sample as multi_jump_sample,
    PreconditionedJump as PreconditionedJump,
    UniformJumpTimes as UniformJumpTimes,
)
from ._q_term import normalised_q_loss as normalised_q_loss
from ._sac import (
    sac_actor_loss as sac_actor_loss,
    soft_td_rewards as soft_td_rewards,
    Temperature as Temperature,
    temperature_loss as temperature_loss,
)
from ._value import (
    advantage_weights as advantage_weights,
    expectile_loss as expectile_loss,
)
from ._weighting import weighted_mean as weighted_mean
