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
from ._flow_matching import flow_matching_loss as flow_matching_loss
from ._meanflow import (
    AbstractTimeSampler as AbstractTimeSampler,
    AverageVelocityField as AverageVelocityField,
    LogitNormalTimes as LogitNormalTimes,
    meanflow_loss as meanflow_loss,
    meanflow_one_step as meanflow_one_step,
    meanflow_target as meanflow_target,
    UniformTimes as UniformTimes,
)
from ._moment_matching import (
    AbstractJumpTimes as AbstractJumpTimes,
    ConstantBandwidth as ConstantBandwidth,
    jump as jump,
    JumpField as JumpField,
    JumpScaledBandwidth as JumpScaledBandwidth,
    moment_matching_loss as moment_matching_loss,
    multi_jump_sample as multi_jump_sample,
    UniformJumpTimes as UniformJumpTimes,
)
from ._q_term import normalised_q_loss as normalised_q_loss
