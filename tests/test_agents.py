"""Every registered agent builds, updates (jitted, several steps per call) and acts."""

import dataclasses

import equinox as eqx
import helpers
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents


OBS_DIM, ACTION_DIM, BATCH, UPDATES = 3, 2, 8, 2


def tiny_config(name):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    if name in (
        "qam",
        "qam_fql",
        "qam_edit",
        "bam",
        "fql",
        "fbrac",
        "dsrl",
        "fedit",
        "ifql",
        "fawac",
        "cgql",
        "cgql_mse",
        "cgql_linex",
        "prior_guidance",
    ):
        # fewer flow steps keep the compile small; the algorithms are unchanged
        if hasattr(config, "qam"):
            config = dataclasses.replace(config, qam=dataclasses.replace(config.qam, flow_steps=3))
        else:
            config = dataclasses.replace(config, flow_steps=3)
    if name in ("qsm", "dac"):
        config = dataclasses.replace(config, diffusion_steps=3)
    if name == "qam_edit":
        config = dataclasses.replace(config, edit_scale=0.1)
    if name == "qam_fql":
        config = dataclasses.replace(config, alpha=10.0)
    return config


def random_batch(key, lead=(UPDATES,)):
    return helpers.random_batch(key, lead, BATCH, OBS_DIM, ACTION_DIM)


@pytest.mark.parametrize("name", agents.available_agents())
def test_agent_updates_and_acts(name):
    agent = agents.make_agent(name, OBS_DIM, ACTION_DIM, jr.key(0), tiny_config(name))
    # what trains: the critic (its TD step), or the policy of an agent without one (bc)
    learned = hasattr(agent.critic, "online")

    def trained(agent):
        if learned:
            return jax.tree.leaves(agent.critic.online.model)[0]
        return jnp.concatenate(
            [jnp.ravel(x) for x in jax.tree.leaves(eqx.filter(agent, eqx.is_inexact_array))]
        )

    before = trained(agent)
    agent, metrics = agent.update(random_batch(jr.key(1)), jr.key(2))
    assert metrics, name
    for metric, values in metrics.items():
        assert values.shape == (UPDATES,), metric
        assert np.all(np.isfinite(values)), f"{name}: {metric} = {values}"
    assert not np.allclose(before, trained(agent))
    one = agent.act(jnp.zeros(OBS_DIM), jr.key(3))
    many = agent.act(jr.normal(jr.key(4), (5, OBS_DIM)), jr.key(5))
    assert one.shape == (ACTION_DIM,) and many.shape == (5, ACTION_DIM)
    assert np.all(np.abs(np.asarray(many)) <= 1.0)
    assert np.all(np.isfinite(np.asarray(many)))


def test_unknown_agent_lists_the_valid_names():
    with pytest.raises(ValueError, match="available: qam, qam_fql"):
        agents.make_agent("qamm", 2, 2, jr.key(0))


@pytest.mark.parametrize(
    "name, field, value",
    [
        ("qam", "tau", -1.0),
        ("qam", "flow_steps", 0),
        ("fql", "alpha", -1.0),
        ("moma_ql", "particles", 0),
    ],
)
def test_impossible_hyperparameters_fail_at_configuration(name, field, value):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(agents.default_config(name), **{field: value})
