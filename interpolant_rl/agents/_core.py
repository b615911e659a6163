r"""What every agent shares: batches, trained modules with their optimiser, critics, the
several-updates-per-call machinery and the flow-policy sampler.

An agent is an immutable Equinox module. `update(batch, key)` runs one jitted program that scans
`num_updates` gradient steps (the leading axis of `batch`); each step first fits the critic by TD,
then runs the agent's own policy-extraction step (`actor_step`) against the updated critic.
Replacing the critic with a [`FixedCritic`][interpolant_rl.agents.FixedCritic] turns the same
update into pure policy extraction against a known $Q$ (the exact-tilt benchmark does this).
"""

import abc
import dataclasses
import functools
import weakref
from collections.abc import Callable
from typing import Any, get_args, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jax.extend import core as jex_core
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._interpolant import AbstractInterpolant, LinearInterpolant
from .._process import ProbabilityFlowODE
from .._sampling import sample
from ..nn import CriticEnsemble, ema_update, td_target
from ..objectives import flow_matching_loss
from ..objectives._actor_critic import _weighted_mean


Metrics = dict[str, Float[Array, ""]]

ClipMode = Literal["elementwise", "global_norm"]
"""How `grad_clip` bounds a gradient: `"elementwise"` clips every coordinate to
$[-c, c]$ (the QAM paper, §4: "the parameter gradient is clipped element-wise by 1");
`"global_norm"` rescales the whole gradient of one optimiser to norm at most $c$ (the public
reference code, which clips the global norm of all parameters' gradients at once)."""


class Batch(eqx.Module):
    r"""A batch of transitions (or of action chunks: a chunk of $h$ actions is one flattened
    action of $h\cdot d$ dimensions, its reward the discounted chunk reward, its next observation
    the one after the chunk).

    Every field has leading axes `(*lead, batch)`: `lead` is `()` for one update and
    `(num_updates,)` for the stacked batches that [`AbstractAgent.update`][interpolant_rl.agents.AbstractAgent.update]
    scans over.

    **Fields:** `observations` `(..., obs_dim)`, `actions` `(..., action_dim)` in $[-1, 1]$,
    `rewards`, `masks` (0 where the episode terminated: no bootstrap), `next_observations`,
    `valid` (weights: 0 for chunks that cross an episode end, which are weighted out of every
    loss; all ones otherwise).
    """

    observations: Float[Array, "*lead batch obs_dim"]
    actions: Float[Array, "*lead batch action_dim"]
    rewards: Float[Array, "*lead batch"]
    masks: Float[Array, "*lead batch"]
    next_observations: Float[Array, "*lead batch obs_dim"]
    valid: Float[Array, "*lead batch"]


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Size of an MLP (GELU activations)."""

    width: int = 512  # hidden units per layer (QAM protocol: 512)
    depth: int = 4  # hidden layers (QAM protocol: 4)
    layer_norm: bool = False  # LayerNorm after each hidden layer (protocol: actors without)

    def __post_init__(self):
        if self.width < 1 or self.depth < 1:
            raise ValueError(
                f"network width and depth must be >= 1, got {self.width}, {self.depth}"
            )


@dataclasses.dataclass(frozen=True)
class CriticConfig:
    """The critic ensemble and its TD target $r + \\gamma^h m (\\bar Q' - \\rho\\,\\mathrm{std}\\,Q')$."""

    width: int = 512  # hidden units per layer
    depth: int = 4  # hidden layers
    layer_norm: bool = True  # LayerNorm in the critic (QAM protocol: yes)
    num_critics: int = 10  # ensemble size K (QAM protocol: 10)
    rho: float = 0.5  # pessimism rho of the target (0 for humanoidmaze)
    discount: float = 0.99  # gamma per environment step (0.995 for giant / humanoid mazes)
    horizon: int = 1  # action-chunk length h: the target discounts by gamma**h (5 for manipulation)
    target_rate: float = 0.005  # EMA rate of the target critic
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # gradient clipping of the critic (None: off; QAM*/QSM/DAC: 1)
    clip_mode: ClipMode = "elementwise"  # paper: element-wise; reference code: "global_norm"

    def __post_init__(self):
        if self.num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {self.num_critics}")
        if self.horizon < 1:
            raise ValueError(f"horizon (chunk length) must be >= 1, got {self.horizon}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must lie in [0, 1], got {self.discount}")
        if not 0.0 <= self.target_rate <= 1.0:
            raise ValueError(f"target_rate must lie in [0, 1], got {self.target_rate}")
        if self.rho < 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        NetworkConfig(self.width, self.depth)


def build_network(
    network: type, action_dim: int, obs_dim: int, config: NetworkConfig, key: PRNGKeyArray
):
    """`network(action_dim, obs_dim, width, depth, layer_norm=..., key=key)` for any of the
    `interpolant_rl.nn` fields and policies, sized by `config`."""
    return network(
        action_dim, obs_dim, config.width, config.depth, layer_norm=config.layer_norm, key=key
    )


def check_optimiser(learning_rate, grad_clip, clip_mode="elementwise") -> None:
    """Raise a one-line `ValueError` for an impossible learning rate, clip value or clip mode."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
    if clip_mode not in get_args(ClipMode):
        raise ValueError(
            f"clip_mode must be one of {', '.join(get_args(ClipMode))}, got {clip_mode!r}"
        )


def check_positive(name: str, value: int | float, *, allow_zero: bool = False) -> None:
    """Raise a one-line `ValueError` unless `value > 0` (or `>= 0` with `allow_zero`)."""
    if not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value}")


def adam(
    learning_rate: float, grad_clip: float | None = None, clip_mode: ClipMode = "elementwise"
) -> optax.GradientTransformation:
    r"""Adam, optionally after clipping the gradient at `grad_clip` $= c$:

    - `clip_mode="elementwise"` (the QAM paper): $g_i \leftarrow \operatorname{clip}(g_i, -c, c)$
      for every coordinate of every parameter;
    - `clip_mode="global_norm"` (the public reference code): $g \leftarrow g\,\min(1, c/\|g\|)$,
      with $\|g\|$ the norm of this optimiser's whole gradient.

    Equal arguments return the *same* object. The optimiser is a static field of
    [`Trained`][interpolant_rl.agents.Trained], so it is part of what `jit` caches on, and optax
    builds new (unequal) functions on every call: without this, every freshly created agent
    would recompile `update` and `act`, even for an identical configuration (tests, several
    seeds in one process).
    """
    check_optimiser(learning_rate, grad_clip, clip_mode)
    return _adam(float(learning_rate), None if grad_clip is None else float(grad_clip), clip_mode)


@functools.cache
def _adam(
    learning_rate: float, grad_clip: float | None, clip_mode: ClipMode
) -> optax.GradientTransformation:
    if grad_clip is None:
        return optax.adam(learning_rate)
    clip = (
        optax.clip(grad_clip)
        if clip_mode == "elementwise"
        else optax.clip_by_global_norm(grad_clip)
    )
    return optax.chain(clip, optax.adam(learning_rate))


class Trained(eqx.Module):
    """A module together with its optimiser and optimiser state.

    **Fields:** `model`, `opt_state`, `optimiser` (static).
    """

    model: PyTree
    opt_state: PyTree
    optimiser: optax.GradientTransformation = eqx.field(static=True)

    @classmethod
    def create(cls, model: PyTree, optimiser: optax.GradientTransformation) -> "Trained":
        return cls(model, optimiser.init(eqx.filter(model, eqx.is_inexact_array)), optimiser)

    def minimise(self, loss_fn: Callable[..., Any], *args: Any) -> tuple["Trained", Any]:
        """One optimiser step on `loss_fn(model, *args) -> (loss, aux)`; returns `(trained, aux)`."""
        (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(self.model, *args)
        updates, opt_state = self.optimiser.update(
            grads, self.opt_state, eqx.filter(self.model, eqx.is_inexact_array)
        )
        return Trained(eqx.apply_updates(self.model, updates), opt_state, self.optimiser), aux


# --------------------------------------------------------------------------------------------
# Critics


class AbstractCritic(eqx.Module):
    """What policy extraction needs from a critic: its values, its target's values, and a TD step."""

    @abc.abstractmethod
    def values(self, cond: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]) -> Array:
        """The $K$ online values $Q_k(s, a)$ of one state and action, shape `(K,)`."""

    @abc.abstractmethod
    def target_values(
        self, cond: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]
    ) -> Array:
        """The $K$ target-network values, shape `(K,)`."""

    @abc.abstractmethod
    def step(
        self, batch: Batch, next_actions: Float[Array, "batch action_dim"]
    ) -> tuple["AbstractCritic", Metrics]:
        """One TD update, given the policy's actions at the next observations."""

    def batch_values(
        self, obs: Float[Array, "batch obs_dim"], actions: Float[Array, "batch action_dim"]
    ) -> Array:
        """The online values of a batch, shape `(batch, K)`: `jax.vmap(values)` by default;
        critics override it with a faster batched evaluation (as `LearnedCritic` does)."""
        return jax.vmap(self.values)(obs, actions)

    def target_batch_values(
        self, obs: Float[Array, "batch obs_dim"], actions: Float[Array, "batch action_dim"]
    ) -> Array:
        """The target-network values of a batch, shape `(batch, K)` (see `batch_values`)."""
        return jax.vmap(self.target_values)(obs, actions)

    def mean_values(self, obs, actions):
        """Ensemble-mean online values of a batch, shape `(batch,)`."""
        return jnp.mean(self.batch_values(obs, actions), axis=-1)

    def target_mean_gradient(self, cond, action):
        r"""$\nabla_a \bar Q^-(s, \operatorname{clip}(a, -1, 1))$ of the target ensemble mean (the
        QAM reference's terminal condition), for one state and action. The derivative is taken
        *through* the clip, as the reference does: coordinates of $a$ outside $[-1, 1]$ get a zero
        gradient."""
        return jax.grad(lambda a: jnp.mean(self.target_values(cond, jnp.clip(a, -1.0, 1.0))))(
            action
        )


class LearnedCritic(AbstractCritic):
    r"""A [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble] fitted by TD to the pessimistic
    target of its EMA copy:

    $$\mathcal L = \tfrac1K\sum_k \operatorname{mean}_i w_i\big(Q_k(s_i, a_i) - y_i\big)^2,\qquad
      y_i = r_i + \gamma^h m_i\big(\bar Q^-(s_i', a_i') - \rho\,\mathrm{std}\,Q^-(s_i', a_i')\big),$$

    with $a'$ the agent's policy at $s'$ and $w$ the batch's validity weights.

    Batches are evaluated with
    [`CriticEnsemble.batch_values`][interpolant_rl.nn.CriticEnsemble.batch_values] (members
    outermost, which XLA compiles without a transpose around every layer), here and in
    `batch_values` / `mean_values`, which the agents' actor losses use.

    **Fields:** `online` (a `Trained` ensemble), `target`, `config` (static).
    """

    online: Trained
    target: CriticEnsemble
    config: CriticConfig = eqx.field(static=True)

    @classmethod
    def create(cls, obs_dim: int, action_dim: int, config: CriticConfig, key: PRNGKeyArray):
        ensemble = CriticEnsemble(
            action_dim,
            obs_dim,
            config.width,
            config.depth,
            num_critics=config.num_critics,
            layer_norm=config.layer_norm,
            key=key,
        )
        optimiser = adam(config.learning_rate, config.grad_clip, config.clip_mode)
        return cls(Trained.create(ensemble, optimiser), ensemble, config)

    def values(self, cond, action):
        return self.online.model(cond, action)

    def target_values(self, cond, action):
        return self.target(cond, action)

    def batch_values(self, obs, actions):
        return self.online.model.batch_values(obs, actions)

    def target_batch_values(self, obs, actions):
        return self.target.batch_values(obs, actions)

    def step(self, batch, next_actions):
        config = self.config
        next_values = self.target.batch_values(batch.next_observations, next_actions)
        targets = jax.vmap(
            lambda r, m, q: td_target(
                r, m, q, discount=config.discount, horizon=config.horizon, rho=config.rho
            )
        )(batch.rewards, batch.masks, next_values)
        targets = jax.lax.stop_gradient(targets)

        def loss_fn(ensemble):
            values = ensemble.batch_values(batch.observations, batch.actions)
            errors = jnp.mean((values - targets[:, None]) ** 2, axis=-1)
            loss = _weighted_mean(errors, batch.valid)
            return loss, dict(critic_loss=loss, q_mean=jnp.mean(values))

        online, metrics = self.online.minimise(loss_fn)
        target = ema_update(self.target, online.model, config.target_rate)
        return LearnedCritic(online, target, config), metrics


class FixedCritic(AbstractCritic):
    r"""A known critic that never changes: online and target values are both `function`, and
    the TD step does nothing. Use it to run an agent's policy extraction alone against a given
    $Q$ (e.g. [`interpolant_rl.testing.QuadraticCritic`][] in the exact-tilt benchmark).

    **Fields:** `function`, any `(cond, action) -> values` with values of shape `(K,)`.
    """

    function: Callable[[Array, Array], Array]

    def values(self, cond, action):
        return self.function(cond, action)

    def target_values(self, cond, action):
        return self.function(cond, action)

    def step(self, batch, next_actions):
        return self, {}


# --------------------------------------------------------------------------------------------
# Agents


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
    - `policy(obs, key) -> actions`: actions for a batch of observations, used both for acting
      and for the critic's target (what the paper uses there);

    and inherit `update` (several jitted updates per call) and `act`.
    """

    critic: eqx.AbstractVar[AbstractCritic]

    @abc.abstractmethod
    def actor_step(self, batch: Batch, key: PRNGKeyArray) -> tuple["AbstractAgent", Metrics]:
        """One policy-extraction update on one batch."""

    @abc.abstractmethod
    def policy(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch action_dim"]:
        """Actions of the current policy (in $[-1, 1]$) for a batch of observations."""

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

        - `batch`: a [`Batch`][interpolant_rl.agents.Batch] whose fields have a leading axis of
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
        (NumPy or JAX), from `policy`, compiled.

        Acting is the online rollout's inner loop, so it is kept cheap. `policy` is traced and
        compiled once per agent *structure* (what `eqx.filter_jit` would compile for: equal
        configurations share it) and observation shape, and each call passes only the arrays
        that `policy` reads (found on the traced program: a one-step policy's 10 of an agent's
        100-180, which also hold the critic, targets and optimiser states). An agent's arrays
        are gathered once, on its first `act`, so repeated calls cost little more than the
        compiled program; a new agent (e.g. after `update`) pays one flatten of its tree.
        Agents need nothing beyond `policy` for this. Looking up `agent.act` does not flatten
        the agent either (Equinox's bound methods do).
        """
        if not (
            isinstance(observations, np.ndarray | jax.Array) and observations.dtype == np.float32
        ):
            observations = jnp.asarray(observations, dtype=jnp.float32)
        return _bound_policy(self)(observations, key)


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


# --------------------------------------------------------------------------------------------
# Acting: the compiled policy, fed only the arrays it reads


def _policy_actions(agent, observations, key):
    if observations.ndim == 1:
        return agent.policy(observations[None], key)[0]
    return agent.policy(observations, key)


def _live_inputs(jaxpr) -> list[bool]:
    # Backward liveness over the top-level equations: an input is live if an output or an
    # effect depends on it. Conservative (an equation with a live output keeps all its inputs,
    # e.g. every argument of a nested jit), hence always safe.
    live = {v for v in jaxpr.outvars if isinstance(v, jex_core.Var)}
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if isinstance(v, jex_core.Var))
    return [v in live for v in jaxpr.invars]


class _PolicyProgram:
    """`policy` of one agent structure at one input signature, compiled: `used` are the
    positions (among the agent's array leaves) of the arrays it reads, `call(used_arrays,
    observations, key)` the jitted program.

    The policy is traced once to a jaxpr with every array of the agent as an input; inputs no
    output depends on are dropped from the call, and the jitted program evaluates *that* jaxpr
    with zeros in their place (read by nothing, removed by XLA). Because the program is the
    traced jaxpr itself, the dropped arrays cannot matter by construction.
    """

    def __init__(self, treedef, statics, array_avals, observations, key):
        def full(arrays, observations, key):
            arrays = iter(arrays)
            leaves = [next(arrays) if leaf is _ARRAY else leaf for leaf in statics]
            agent = jax.tree_util.tree_unflatten(treedef, leaves)
            return _policy_actions(agent, observations, key)

        closed, out_shape = jax.make_jaxpr(full, return_shape=True)(array_avals, observations, key)
        live = _live_inputs(closed.jaxpr)
        num_arrays = len(array_avals)
        # extended dtypes (PRNG keys) have no zeros: such leaves are always passed
        self.used = tuple(
            i
            for i, aval in enumerate(array_avals)
            if live[i] or jax.dtypes.issubdtype(aval.dtype, jax.dtypes.extended)
        )
        dead = [(i, aval) for i, aval in enumerate(array_avals) if i not in self.used]
        out_tree = jax.tree.structure(out_shape)
        evaluate = jex_core.jaxpr_as_fun(closed)
        used = self.used

        def call(used_arrays, observations, key):
            arrays = [None] * num_arrays
            for i, array in zip(used, used_arrays, strict=True):
                arrays[i] = array
            for i, aval in dead:
                arrays[i] = jnp.zeros(aval.shape, aval.dtype)
            return jax.tree.unflatten(out_tree, evaluate(*arrays, observations, key))

        self.call = jax.jit(call)


class _Array:
    def __repr__(self):
        return "<array>"


_ARRAY = _Array()  # marks an array leaf in an agent's static leaves
# (treedef, static leaves, array avals) -> {input signature -> program}; unbounded, like jit's
_PROGRAMS: dict[Any, dict[Any, _PolicyProgram]] = {}
# id(agent) -> (weak reference, bound policy): an agent's arrays are gathered once
_BOUND: dict[int, tuple[weakref.ref, "_BoundPolicy"]] = {}


class _BoundPolicy:
    """One agent's `act`: its arrays, flattened once, and the programs of its structure.

    The structure key is what `eqx.filter_jit` compiles for (the tree definition with its
    static fields, every non-array leaf, and the shape and dtype of every array), so two agents
    share programs exactly when `filter_jit` would share a compilation. Per call: one lookup of
    the program for the input signature and one jitted call on the arrays that program reads.
    """

    def __init__(self, agent):
        leaves, self.treedef = jax.tree_util.tree_flatten(agent)
        self.arrays, statics = [], []
        for leaf in leaves:
            if eqx.is_array(leaf):
                self.arrays.append(leaf)
                statics.append(_ARRAY)
            else:
                statics.append(leaf)
        self.statics = tuple(statics)
        self.avals = tuple(
            (array.shape, array.dtype, getattr(array, "weak_type", False)) for array in self.arrays
        )
        self.traced = any(isinstance(array, jax.core.Tracer) for array in self.arrays)
        self.programs = _PROGRAMS.setdefault((self.treedef, self.statics, self.avals), {})
        self.arguments: dict[Any, tuple] = {}  # input signature -> the arrays its program reads

    def __call__(self, observations, key):
        signature = (observations.shape, observations.dtype, key.shape, key.dtype)
        program = self.programs.get(signature)
        if program is None:
            program = _PolicyProgram(
                self.treedef,
                self.statics,
                [jax.ShapeDtypeStruct(*aval[:2], weak_type=aval[2]) for aval in self.avals],
                jax.ShapeDtypeStruct(observations.shape, observations.dtype),
                jax.ShapeDtypeStruct(key.shape, key.dtype),
            )
            self.programs[signature] = program
        arguments = self.arguments.get(signature)
        if arguments is None:
            arguments = tuple(self.arrays[i] for i in program.used)
            self.arguments[signature] = arguments
        return program.call(arguments, observations, key)


def _bound_policy(agent: "AbstractAgent") -> _BoundPolicy:
    entry = _BOUND.get(id(agent))
    if entry is not None and entry[0]() is agent:
        return entry[1]
    bound = _BoundPolicy(agent)
    if not bound.traced:  # (inside a transformation: nothing kept, no tracer leaks)
        key = id(agent)

        def forget(reference):
            if _BOUND.get(key, (None,))[0] is reference:
                del _BOUND[key]

        _BOUND[key] = (weakref.ref(agent, forget), bound)
    return bound


# --------------------------------------------------------------------------------------------
# Shared sampling helpers


def flow_actions(
    interpolant: AbstractInterpolant,
    velocity: Callable,
    observations: Float[Array, "batch obs_dim"],
    noise: Float[Array, "batch action_dim"],
    num_steps: int,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
) -> Float[Array, "batch action_dim"]:
    r"""Integrate the probability-flow ODE of `velocity` from `noise` with `num_steps` steps
    (a `lax.scan`), one trajectory per observation; differentiable (FBRAC backpropagates through
    it). Not clipped."""
    process = ProbabilityFlowODE(interpolant, velocity)
    return jax.vmap(lambda x0, c: sample(process, x0, cond=c, solver=solver, num_steps=num_steps))(
        noise, observations
    )


def flow_matching_step(
    behaviour: Trained, batch: Batch, key: PRNGKeyArray
) -> tuple[Trained, Float[Array, ""]]:
    """One flow-matching (behaviour-cloning) step of a velocity field on the batch's
    state-action pairs, invalid chunks weighted out; returns `(behaviour, loss)`."""

    def loss_fn(field):
        loss = flow_matching_loss(
            LinearInterpolant(), field, batch.actions, batch.observations, key, weights=batch.valid
        )
        return loss, loss

    return behaviour.minimise(loss_fn)
