"""The agent registry: every algorithm by name, with its default configuration."""

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from jaxtyping import PRNGKeyArray

from . import (
    bam,
    bc,
    cgql,
    consistency_ac,
    cql,
    dac,
    diffusion_ql,
    dsrl,
    fawac,
    fbrac,
    fedit,
    fql,
    ifql,
    iql,
    moma_ql,
    nc_lql,
    ofql,
    prior_guidance,
    qam,
    qam_edit,
    qam_fql,
    qsm,
    rebrac,
    rlpd,
    som,
)
from ._agent import AbstractAgent
from ._config import NetworkConfig
from ._critic import CriticConfig


class AgentSpec(NamedTuple):
    """How to build one algorithm: `default_config() -> config` and
    `create(obs_dim, action_dim, key, config) -> agent`."""

    default_config: Callable[[], Any]
    create: Callable[..., AbstractAgent]


AGENTS: dict[str, AgentSpec] = {
    "qam": AgentSpec(qam.QAMConfig, qam.create),
    "qam_fql": AgentSpec(qam_fql.QAMFQLConfig, qam_fql.create),
    "qam_edit": AgentSpec(qam_edit.QAMEditConfig, qam_edit.create),
    "bam": AgentSpec(bam.default_config, bam.create),
    "moma_ql": AgentSpec(moma_ql.MoMaQLConfig, moma_ql.create),
    "ofql": AgentSpec(ofql.OFQLConfig, ofql.create),
    "fql": AgentSpec(fql.FQLConfig, fql.create),
    "fbrac": AgentSpec(fbrac.FBRACConfig, fbrac.create),
    "bc": AgentSpec(bc.BCConfig, bc.create),
    "rebrac": AgentSpec(rebrac.ReBRACConfig, rebrac.create),
    "td3bc": AgentSpec(rebrac.td3bc_config, rebrac.create),
    "ifql": AgentSpec(ifql.IFQLConfig, ifql.create),
    "iql": AgentSpec(iql.IQLConfig, iql.create),
    "cql": AgentSpec(cql.CQLConfig, cql.create),
    "fawac": AgentSpec(fawac.FAWACConfig, fawac.create),
    "cgql": AgentSpec(cgql.CGQLConfig, cgql.create),
    "cgql_mse": AgentSpec(cgql.mse_config, cgql.create),
    "cgql_linex": AgentSpec(cgql.linex_config, cgql.create),
    "dsrl": AgentSpec(dsrl.DSRLConfig, dsrl.create),
    "fedit": AgentSpec(fedit.FEditConfig, fedit.create),
    "rlpd": AgentSpec(rlpd.RLPDConfig, rlpd.create),
    "nc_lql": AgentSpec(nc_lql.NCLQLConfig, nc_lql.create),
    "som": AgentSpec(som.SOMConfig, som.create),
    "qsm": AgentSpec(qsm.QSMConfig, qsm.create),
    "diffusion_bc": AgentSpec(diffusion_ql.diffusion_bc_config, diffusion_ql.create),
    "diffusion_ql": AgentSpec(diffusion_ql.DiffusionQLConfig, diffusion_ql.create),
    "dac": AgentSpec(dac.DACConfig, dac.create),
    "consistency_bc": AgentSpec(consistency_ac.consistency_bc_config, consistency_ac.create),
    "consistency_ac": AgentSpec(consistency_ac.ConsistencyACConfig, consistency_ac.create),
    "prior_guidance": AgentSpec(prior_guidance.PriorGuidanceConfig, prior_guidance.create),
}
"""Every registered algorithm: name -> [`AgentSpec`][interpolant_rl.agents.AgentSpec]."""


def available_agents() -> tuple[str, ...]:
    """The registered agent names."""
    return tuple(AGENTS)


def _spec(name: str) -> AgentSpec:
    try:
        return AGENTS[name]
    except KeyError:
        raise ValueError(
            f"unknown agent {name!r}; available: {', '.join(available_agents())}"
        ) from None


def default_config(name: str) -> Any:
    """The default (paper) configuration of agent `name`."""
    return _spec(name).default_config()


def make_agent(
    name: str, obs_dim: int, action_dim: int, key: PRNGKeyArray, config: Any = None
) -> AbstractAgent:
    """Build agent `name` for observations of size `obs_dim` and (flattened) actions of size
    `action_dim`, with `config` (default: [`default_config`][interpolant_rl.agents.default_config]).

    Raises `ValueError` naming the valid agents for an unknown `name`, or the field for an
    impossible configuration value.
    """
    spec = _spec(name)
    if obs_dim < 1 or action_dim < 1:
        raise ValueError(f"obs_dim and action_dim must be >= 1, got {obs_dim} and {action_dim}")
    return spec.create(
        obs_dim, action_dim, key, spec.default_config() if config is None else config
    )


def resize(config: Any, *, width: int, depth: int, num_critics: int | None = None) -> Any:
    """`config` with every network (actors and critics, nested configurations included) of
    `width` x `depth`, and optionally `num_critics` critics: the CPU-sized and test-sized
    versions of the paper configurations."""
    changes = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, NetworkConfig):
            changes[field.name] = dataclasses.replace(value, width=width, depth=depth)
        elif isinstance(value, CriticConfig):
            critics = value.num_critics if num_critics is None else num_critics
            changes[field.name] = dataclasses.replace(
                value, width=width, depth=depth, num_critics=critics
            )
        elif dataclasses.is_dataclass(value):
            changes[field.name] = resize(value, width=width, depth=depth, num_critics=num_critics)
    return dataclasses.replace(config, **changes)


def _replace_everywhere(config: Any, name: str, value: Any) -> tuple[Any, int]:
    changes, count = {}, 0
    for field in dataclasses.fields(config):
        current = getattr(config, field.name)
        if field.name == name:
            changes[field.name], count = value, count + 1
        elif dataclasses.is_dataclass(current) and not isinstance(current, type):
            changes[field.name], found = _replace_everywhere(current, name, value)
            count += found
    return dataclasses.replace(config, **changes), count


def override(config: Any, **values: Any) -> Any:
    """`config` with each named field set wherever it occurs, nested configurations included
    (e.g. `override(default_config("qam_fql"), tau=3.0)` sets the inner QAM's `tau`).

    Raises `ValueError` for a name the configuration does not have (or an impossible value)."""
    for name, value in values.items():
        config, count = _replace_everywhere(config, name, value)
        if count == 0:
            raise ValueError(f"{type(config).__name__} has no field {name!r}")
    return config
