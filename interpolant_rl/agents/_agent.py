r"""The agent interface: a critic, a policy-extraction step, an acting policy; several updates
per compiled call and a compiled `act`.

An agent is an immutable Equinox module. `update(batch, key)` runs one jitted program that scans
`num_updates` gradient steps (the leading axis of `batch`); each step first fits the critic by TD,
then runs the agent's own policy-extraction step (`actor_step`) against the updated critic.
Replacing the critic with a [`FixedCritic`][interpolant_rl.agents.FixedCritic] turns the same
update into pure policy extraction against a known $Q$ (the exact-tilt benchmark does this).

Acting runs the agent's [`AbstractPolicy`][interpolant_rl.agents.AbstractPolicy] sub-module,
which holds exactly the networks a decision reads (a one-step policy's layers, not the critic's
optimiser state), compiled once per agent structure.
"""

import abc
import functools
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..data import Batch
from ._critic import AbstractCritic, Metrics


class AbstractPolicy(eqx.Module):
    r"""What an agent acts with: a module mapping a batch of observations and a key to actions
    in $[-1, 1]$, holding only the arrays that mapping reads.

    Subclasses implement `__call__(observations, key) -> actions` for observations of shape
    `(batch, obs_dim)`.
    """

    @abc.abstractmethod
    def __call__(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch action_dim"]:
        """Actions in $[-1, 1]$ for a batch of observations."""


class _pytree_method:  # lower case: used as a decorator
    """A method bound as a `jax.tree_util.Partial` rather than an `eqx.BoundMethod`.

    Equinox turns every method looked up on a module into an `eqx.BoundMethod`, a pytree (so
    that `jit(module.method)` treats the module's arrays as arguments); building one walks the
    whole module (`tree_leaves` of it, to warn about transformed functions), which for a
    paper-size agent costs about as much as running a one-step policy. `act` is looked up
    once per environment chunk, so it is bound this way instead: still a pytree with the
    agent as its argument, built in constant time. Looked up on the class, it is the plain
    function.
    """

    def __init__(self, function):
        functools.update_wrapper(self, function)

    def __get__(self, instance, owner=None):
        if instance is None:
            return self.__wrapped__
        return jax.tree_util.Partial(self.__wrapped__, instance)


class AbstractAgent(eqx.Module):
    r"""The interface of every agent.

    Subclasses hold their networks and a `critic`, and implement:

    - `actor_step(batch, key) -> (agent, metrics)`: the policy-extraction update (their paper's
      algorithm box), run after the critic's TD step;
    - `acting_policy() -> AbstractPolicy`: the sub-module that acts (and, by default, gives the
      critic's next actions), e.g. a [`FlowPolicy`][interpolant_rl.agents.FlowPolicy] of the
      agent's field;

    and inherit `policy` (the acting policy on a batch), `target_policy` (the TD target's
    actions; override it where the paper uses another policy there), `update` (several jitted
    updates per call) and `act`.
    """

    critic: eqx.AbstractVar[AbstractCritic]

    @abc.abstractmethod
    def actor_step(self, batch: Batch, key: PRNGKeyArray) -> tuple["AbstractAgent", Metrics]:
        """One policy-extraction update on one batch."""

    @abc.abstractmethod
    def acting_policy(self) -> AbstractPolicy:
        """The policy this agent acts with, as a module holding only what acting reads."""

    def policy(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch action_dim"]:
        """Actions of the current policy (in $[-1, 1]$) for a batch of observations:
        `acting_policy()(observations, key)`."""
        return self.acting_policy()(observations, key)

    def target_policy(self, observations, key):
        """Actions for the critic's TD target (by default the acting policy)."""
        return self.policy(observations, key)

    def update_step(self, batch: Batch, key: PRNGKeyArray) -> tuple["AbstractAgent", Metrics]:
        """One critic TD step, then one `actor_step`, on a single (unstacked) batch."""
        target_key, actor_key = jr.split(key)
        next_actions = jax.lax.stop_gradient(
            self.target_policy(batch.next_observations, target_key)
        )
        critic, critic_metrics = self.critic.step(batch, next_actions)
        agent = eqx.tree_at(lambda a: a.critic, self, critic)
        agent, actor_metrics = agent.actor_step(batch, actor_key)
        return agent, {**critic_metrics, **actor_metrics}

    def update(self, batch: Batch, key: PRNGKeyArray) -> tuple["AbstractAgent", Metrics]:
        r"""`num_updates` update steps in one compiled call.

        **Arguments:**

        - `batch`: a [`Batch`][interpolant_rl.data.Batch] whose fields have a leading axis of
          `num_updates` (one batch per step; `jax.tree.map(lambda x: x[None], batch)` for one).
        - `key`: a PRNG key, split into one key per step.

        **Returns:** `(agent, metrics)` with each metric of shape `(num_updates,)`.

        The agent passed in stays valid: its buffers are not donated to the new agent, which
        would save one copy of every parameter and optimiser state per call but invalidate
        the old agent, and callers keep it (to compare parameters before and after, or to
        checkpoint the last good agent when a step fails or is interrupted). Under an outer
        `jit`, as in the training loop, donating here would have no effect anyway: only the
        outermost call's arguments can be donated.
        """
        return _scan_updates(self, batch, key)

    @_pytree_method
    def act(
        self, observations: Float[ArrayLike, "*batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "*batch action_dim"]:
        """Actions in $[-1, 1]$ for one observation `(obs_dim,)` or a batch `(n, obs_dim)`
        (NumPy or JAX), compiled.

        Acting is the online rollout's inner loop, so it is kept cheap: the
        [`acting_policy`][interpolant_rl.agents.AbstractAgent.acting_policy] sub-module, which
        holds only the arrays a decision reads, is run by a `jax.jit` keyed on its structure,
        so agents of equal configuration share the compiled program and each call hands over
        only those arrays. Building and flattening the policy costs about as much as a
        one-step policy's forward pass, so the last agent's is remembered (one slot, checked
        by identity through a weak reference): a rollout's repeated calls on one agent pay it
        once. (`eqx.filter_jit` would compile the same program but re-flatten and re-hash the
        policy on every call: half the actions per second of a one-step policy.)
        """
        if not (
            isinstance(observations, np.ndarray | jax.Array) and observations.dtype == np.float32
        ):
            observations = jnp.asarray(observations, dtype=jnp.float32)
        return _compiled_policy(self)(observations, key)


_LAST: list = [None, None]  # [weak reference to the last agent that acted, its _CompiledPolicy]


def _compiled_policy(agent: AbstractAgent) -> "_CompiledPolicy":
    # One slot, not a cache per agent: an attribute on the (immutable) instance would change its
    # pytree structure (Equinox flattens the instance dictionary), a dictionary keyed by id()
    # would have to be emptied.
    reference, compiled = _LAST
    if reference is not None and reference() is agent:
        return compiled
    compiled = _CompiledPolicy(type(agent).acting_policy(agent))
    if not compiled.traced:  # inside a transformation: nothing kept, no tracer leaks
        _LAST[:] = [weakref.ref(agent), compiled]
    return compiled


class _Array:
    def __repr__(self):
        return "<array>"


_ARRAY = _Array()  # marks where an array leaf goes back in a policy's leaves


class _CompiledPolicy:
    """An acting policy split into its arrays and its structure (tree definition and non-array
    leaves: hashable, the static argument of the jitted call)."""

    def __init__(self, policy: AbstractPolicy):
        leaves, treedef = jax.tree_util.tree_flatten(policy)
        self.arrays = [leaf for leaf in leaves if eqx.is_array(leaf)]
        self.traced = any(isinstance(array, jax.core.Tracer) for array in self.arrays)
        self.structure = (treedef, tuple(_ARRAY if eqx.is_array(x) else x for x in leaves))

    def __call__(self, observations, key):
        return _act(self.structure, self.arrays, observations, key)


@functools.partial(jax.jit, static_argnums=0)
def _act(structure, arrays, observations, key):
    treedef, statics = structure
    arrays = iter(arrays)
    leaves = [next(arrays) if leaf is _ARRAY else leaf for leaf in statics]
    policy = jax.tree_util.tree_unflatten(treedef, leaves)
    if observations.ndim == 1:
        return policy(observations[None], key)[0]
    return policy(observations, key)


@eqx.filter_jit
def _scan_updates(agent, batch, key):
    arrays, static = eqx.partition(agent, eqx.is_array)

    def body(arrays, inputs):
        step_batch, step_key = inputs
        new_agent, metrics = eqx.combine(arrays, static).update_step(step_batch, step_key)
        return eqx.filter(new_agent, eqx.is_array), metrics

    num_updates = batch.rewards.shape[0]
    arrays, metrics = jax.lax.scan(body, arrays, (batch, jr.split(key, num_updates)))
    return eqx.combine(arrays, static), metrics
