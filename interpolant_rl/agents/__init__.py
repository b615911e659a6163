"""Agents: one module per algorithm, each reading like its paper's algorithm box, all built
from the shared objectives. Build one by name with
[`make_agent`][interpolant_rl.agents.make_agent]."""

from ..data import Batch as Batch
from . import (
    bam as bam,
    bc as bc,
    cgql as cgql,
    consistency_ac as consistency_ac,
    cql as cql,
    dac as dac,
    diffusion_ql as diffusion_ql,
    dsrl as dsrl,
    fawac as fawac,
    fbrac as fbrac,
    fedit as fedit,
    fql as fql,
    ifql as ifql,
    iql as iql,
    moma_ql as moma_ql,
    nc_lql as nc_lql,
    ofql as ofql,
    prior_guidance as prior_guidance,
    qam as qam,
    qam_edit as qam_edit,
    qam_fql as qam_fql,
    qsm as qsm,
    rebrac as rebrac,
    rlpd as rlpd,
    som as som,
)
from ._adjoint_matched import AdjointMatchedFlow as AdjointMatchedFlow
from ._agent import AbstractAgent as AbstractAgent, AbstractPolicy as AbstractPolicy
from ._config import (
    build_network as build_network,
    Hyperparameters as Hyperparameters,
    NetworkConfig as NetworkConfig,
    sweep_fields as sweep_fields,
    unsweep as unsweep,
)
from ._critic import (
    AbstractCritic as AbstractCritic,
    AbstractEnsembleCritic as AbstractEnsembleCritic,
    CriticConfig as CriticConfig,
    expectile_value_step as expectile_value_step,
    ExpectileCritic as ExpectileCritic,
    FixedCritic as FixedCritic,
    FixedExpectileCritic as FixedExpectileCritic,
    LearnedCritic as LearnedCritic,
    StateValue as StateValue,
    td_fit as td_fit,
)
from ._diffusion import DDPMPolicy as DDPMPolicy, DiffusionPolicy as DiffusionPolicy
from ._domains import (
    domain_config as domain_config,
    domain_of as domain_of,
    domain_settings as domain_settings,
    DOMAINS as DOMAINS,
    DomainSettings as DomainSettings,
    PROTOCOL as PROTOCOL,
    REFERENCE_PROTOCOL as REFERENCE_PROTOCOL,
)
from ._edit import ActionEdit as ActionEdit, EditedPolicy as EditedPolicy
from ._flow import (
    flow_actions as flow_actions,
    flow_matching_step as flow_matching_step,
    FlowPolicy as FlowPolicy,
    LatentNoisePolicy as LatentNoisePolicy,
    sampled_flow_matching_step as sampled_flow_matching_step,
)
from ._locomotion import (
    locomotion_config as locomotion_config,
    LOCOMOTION_PROTOCOL as LOCOMOTION_PROTOCOL,
    locomotion_task as locomotion_task,
)
from ._one_step import OneStepDistilled as OneStepDistilled
from ._optim import (
    Adam as Adam,
    adam as adam,
    check_optimiser as check_optimiser,
    ClipMode as ClipMode,
    Trained as Trained,
)
from ._policies import (
    BestOfN as BestOfN,
    DeterministicPolicy as DeterministicPolicy,
    NoisePolicy as NoisePolicy,
    StochasticPolicy as StochasticPolicy,
)
from ._registry import (
    AGENTS as AGENTS,
    AgentSpec as AgentSpec,
    available_agents as available_agents,
    default_config as default_config,
    make_agent as make_agent,
    override as override,
    resize as resize,
)
from ._soft_actor import SoftActor as SoftActor
from ._time_sampled import (
    batch_probe_errors as batch_probe_errors,
    behaviour_time_sampler as behaviour_time_sampler,
    minimise_and_adapt as minimise_and_adapt,
    TimeSamplerName as TimeSamplerName,
)
