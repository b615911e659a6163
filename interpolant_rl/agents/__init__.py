"""Agents: one module per algorithm, each reading like its paper's algorithm box, all built
from the shared objectives. Build one by name with
[`make_agent`][interpolant_rl.agents.make_agent]."""

from . import (
    bam as bam,
    cgql as cgql,
    dac as dac,
    dsrl as dsrl,
    fawac as fawac,
    fbrac as fbrac,
    fedit as fedit,
    fql as fql,
    ifql as ifql,
    moma_ql as moma_ql,
    ofql as ofql,
    qam as qam,
    qam_edit as qam_edit,
    qam_fql as qam_fql,
    qsm as qsm,
    rebrac as rebrac,
    rlpd as rlpd,
)
from ._core import (
    AbstractAgent as AbstractAgent,
    AbstractCritic as AbstractCritic,
    adam as adam,
    Batch as Batch,
    build_network as build_network,
    check_optimiser as check_optimiser,
    ClipMode as ClipMode,
    CriticConfig as CriticConfig,
    FixedCritic as FixedCritic,
    flow_actions as flow_actions,
    flow_matching_step as flow_matching_step,
    LearnedCritic as LearnedCritic,
    NetworkConfig as NetworkConfig,
    Trained as Trained,
)
from ._diffusion import DiffusionPolicy as DiffusionPolicy
from ._domains import (
    domain_config as domain_config,
    domain_of as domain_of,
    domain_settings as domain_settings,
    DOMAINS as DOMAINS,
    DomainSettings as DomainSettings,
    PROTOCOL as PROTOCOL,
    REFERENCE_PROTOCOL as REFERENCE_PROTOCOL,
)
from ._edit import ActionEdit as ActionEdit
from ._registry import (
    AGENTS as AGENTS,
    AgentSpec as AgentSpec,
    available_agents as available_agents,
    default_config as default_config,
    make_agent as make_agent,
    override as override,
    resize as resize,
)
from .ifql import ExpectileCritic as ExpectileCritic
