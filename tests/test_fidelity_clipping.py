"""Gradient clipping as in the QAM paper: element-wise by 1, every parameter (critic included) of
QSM, DAC and the QAM family (Table 3, §4); no clipping for the others; the reference code's
global-norm clipping as the `clip_mode="global_norm"` option.

After one Adam step on a gradient $g$, the first-moment state is $(1 - \\beta_1)\\,\\tilde g$ with
$\\tilde g$ the gradient *after* clipping, so reading it back shows exactly which clipping ran."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from interpolant_rl import agents


GRADIENT = 3.0  # every coordinate of the test gradient: outside the clip range of 1
BETA1 = 0.9  # Adam's default first-moment decay


def _trained_modules(agent):
    is_trained = lambda x: isinstance(x, agents.Trained)
    return [x for x in jax.tree.leaves(agent, is_leaf=is_trained) if is_trained(x)]


def _clipped_first_moment(trained):
    """The gradient that reached Adam, for a gradient of GRADIENT in every coordinate."""
    params = eqx.filter(trained.model, eqx.is_inexact_array)
    grads = jax.tree.map(lambda p: jnp.full_like(p, GRADIENT), params)
    _, state = trained.optimiser.update(grads, trained.opt_state, params)
    adam_states = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)
    ]
    (adam_state,) = adam_states
    return np.concatenate([np.ravel(m) for m in jax.tree.leaves(adam_state.mu)]) / (1 - BETA1)


def _tiny(name, **fields):
    config = agents.resize(agents.default_config(name), width=8, depth=1, num_critics=2)
    return agents.override(config, **fields) if fields else config


# QAM-FQL at a finite alpha and QAM-EDIT at a non-zero edit scale have their own extra policy
CLIPPED = {
    "qam": {},
    "bam": {},
    "qam_fql": {"alpha": 30.0},
    "qam_edit": {"edit_scale": 0.1},
    "qsm": {},
    "dac": {},
}


@pytest.mark.parametrize("name", sorted(CLIPPED))
def test_paper_clips_every_parameter_elementwise(name):
    agent = agents.make_agent(name, 3, 2, jr.key(0), _tiny(name, **CLIPPED[name]))
    modules = _trained_modules(agent)
    assert len(modules) >= 2  # at least one policy and the critic
    for trained in modules:
        np.testing.assert_allclose(_clipped_first_moment(trained), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["qam", "dac"])
def test_reference_option_clips_the_global_norm(name):
    config = _tiny(name, **CLIPPED[name], clip_mode="global_norm")
    agent = agents.make_agent(name, 3, 2, jr.key(0), config)
    for trained in _trained_modules(agent):
        moment = _clipped_first_moment(trained)
        # g * min(1, 1 / ||g||): every coordinate GRADIENT / (GRADIENT * sqrt(n))
        np.testing.assert_allclose(moment, 1.0 / np.sqrt(moment.size), rtol=1e-5)


@pytest.mark.parametrize("name", ["fql", "rebrac", "fbrac", "moma_ql", "ofql"])
def test_other_agents_are_not_clipped(name):
    agent = agents.make_agent(name, 3, 2, jr.key(0), _tiny(name))
    for trained in _trained_modules(agent):
        np.testing.assert_allclose(_clipped_first_moment(trained), GRADIENT, rtol=1e-6)


def test_unknown_clip_mode_is_one_line():
    # (under the tests' jaxtyping hook the Literal annotation rejects it first, as a TypeError)
    for name in CLIPPED:
        with pytest.raises((ValueError, TypeError), match="clip_mode"):
            agents.override(agents.default_config(name), clip_mode="per_layer")
    with pytest.raises(ValueError, match="clip_mode must be one of elementwise, global_norm"):
        agents.check_optimiser(1e-3, 1.0, "per_layer")
