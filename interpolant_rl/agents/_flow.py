r"""The flow policy every flow agent acts with, and the behaviour-cloning step that fits a flow."""

from collections.abc import Callable
from typing import get_args, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._interpolant import AbstractInterpolant, LinearInterpolant
from .._process import ProbabilityFlowODE
from .._sampling import sample
from ..data import Batch
from ..objectives import (
    AbstractTimeSampler,
    AdaptiveTimeSampler,
    flow_matching_errors,
    flow_matching_loss,
    GradientNormTimeSampler,
    UniformTimes,
    VarianceMinimisingTimeSampler,
)
from ._agent import AbstractPolicy
from ._optim import Trained


def flow_actions(
    interpolant: AbstractInterpolant,
    velocity: Callable,
    observations: Float[Array, "batch obs_dim"],
    noise: Float[Array, "batch action_dim"],
    num_steps: int,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
) -> Float[Array, "batch action_dim"]:
    r"""Integrate the probability-flow ODE $\dot x_t = v(x_t, t, s)$ of `velocity` from
    $x_0$ = `noise` to $t = 1$ with `num_steps` steps of `solver` (a `lax.scan`), one trajectory
    per observation; differentiable (FBRAC backpropagates through it). Not clipped."""
    process = ProbabilityFlowODE(interpolant, velocity)
    return jax.vmap(lambda x0, c: sample(process, x0, cond=c, solver=solver, num_steps=num_steps))(
        noise, observations
    )


class FlowPolicy(AbstractPolicy):
    r"""A flow policy: $a = \operatorname{clip}(x_1, -1, 1)$ with $x_1$ the end of the
    probability-flow ODE of `field` started at $x_0 = z \sim \mathcal N(0, I)$
    ([`flow_actions`][interpolant_rl.agents.flow_actions]).

    **Fields:** `field` (any `(x, t, cond) -> velocity` module: a
    [`VelocityField`][interpolant_rl.nn.VelocityField], a residual or guided field), `action_dim`
    and `num_steps` (static), `interpolant` (default linear), `solver` (default Euler), `clip`
    (static, default on: the QAM protocol clips every sampled action).
    """

    field: Callable
    action_dim: int = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)
    interpolant: AbstractInterpolant = LinearInterpolant()
    solver: diffrax.AbstractSolver = diffrax.Euler()
    clip: bool = eqx.field(static=True, default=True)

    def __call__(self, observations, key):
        noise = jr.normal(key, (observations.shape[0], self.action_dim))
        return self.from_noise(observations, noise)

    def from_noise(
        self, observations: Float[Array, "batch obs_dim"], noise: Float[Array, "batch action_dim"]
    ) -> Float[Array, "batch action_dim"]:
        """The actions of given noises $z$ (one per observation)."""
        actions = flow_actions(
            self.interpolant, self.field, observations, noise, self.num_steps, self.solver
        )
        return jnp.clip(actions, -1.0, 1.0) if self.clip else actions


class LatentNoisePolicy(AbstractPolicy):
    r"""$a = \Phi(s, \kappa z)$, $z \sim \pi_w(\cdot \mid s)$: a policy over the noise of a fixed
    flow $\Phi$ ([`FlowPolicy.from_noise`][interpolant_rl.agents.FlowPolicy.from_noise]) steers
    it, and the flow turns the chosen noise into the action. DSRL's acting rule (a SAC noise
    policy in $(-1, 1)^d$, scaled by $\kappa$) and Prior Guidance's (a learned Gaussian prior,
    $\kappa = 1$).

    **Fields:** `noise_policy` (a policy whose "actions" are noises), `flow` (a
    [`FlowPolicy`][interpolant_rl.agents.FlowPolicy]), `noise_scale` $\kappa$ (static, default 1).
    """

    noise_policy: AbstractPolicy
    flow: FlowPolicy
    noise_scale: float = eqx.field(static=True, default=1.0)

    def __call__(self, observations, key):
        noise = self.noise_scale * self.noise_policy(observations, key)
        return self.flow.from_noise(observations, noise)


def flow_matching_step(
    behaviour: Trained,
    batch: Batch,
    key: PRNGKeyArray,
    interpolant: AbstractInterpolant = LinearInterpolant(),
) -> tuple[Trained, Float[Array, ""]]:
    """One flow-matching (behaviour-cloning) step of a velocity field on the batch's
    state-action pairs, invalid chunks weighted out, times uniform; returns
    `(behaviour, loss)`."""
    behaviour, _, loss = sampled_flow_matching_step(
        behaviour, UniformTimes(), batch, key, interpolant
    )
    return behaviour, loss


TimeSamplerName = Literal["uniform", "adaptive", "variance_minimising", "gradient_norm"]
"""The flow agents' `time_sampler` setting: `"uniform"` (every paper's), `"adaptive"`
(look-ahead decrease), `"variance_minimising"` (bins drawn in proportion to the root second
moment of their loss) or `"gradient_norm"` (in proportion to the root second moment of their
per-sample parameter gradient)."""


def behaviour_time_sampler(name: TimeSamplerName) -> AbstractTimeSampler:
    r"""The time sampler of a behaviour flow's flow matching, by configuration name:
    `"uniform"` is [`UniformTimes`][interpolant_rl.objectives.UniformTimes]`()` (every paper's
    $t \sim U[0, 1)$), `"adaptive"` a fresh
    [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler]`.uniform()` and
    `"variance_minimising"` a fresh
    [`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler]`.uniform()`
    and `"gradient_norm"` a fresh
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler]`.uniform()`,
    each with its default settings (10 bins, importance weighted: the same objective). Which to
    use when, as measured: the [benchmark](../benchmarks.md#adaptive-time-sampling-issue-16)."""
    if name == "uniform":
        return UniformTimes()
    if name == "adaptive":
        return AdaptiveTimeSampler.uniform()
    if name == "variance_minimising":
        return VarianceMinimisingTimeSampler.uniform()
    if name == "gradient_norm":
        return GradientNormTimeSampler.uniform()
    raise ValueError(
        f"time_sampler must be one of {', '.join(get_args(TimeSamplerName))}, got {name!r}"
    )


def sampled_flow_matching_step(
    behaviour: Trained,
    time_sampler: AbstractTimeSampler,
    batch: Batch,
    key: PRNGKeyArray,
    interpolant: AbstractInterpolant = LinearInterpolant(),
) -> tuple[Trained, AbstractTimeSampler, Float[Array, ""]]:
    r"""One flow-matching step with times from `time_sampler` (importance weighted, so the
    objective stays the uniform-time one), then the sampler's
    [`adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt] to the step: its probes are
    the per-sample errors ([`flow_matching_errors`][interpolant_rl.objectives.flow_matching_errors])
    of the flow before and after the step on this batch, one fresh noise per row, invalid
    chunks at zero (any subset of rows on request, for the per-sample gradients of
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler]). The loss uses `key` itself (as
    [`flow_matching_step`][interpolant_rl.agents.flow_matching_step] does), the probes
    `jax.random.fold_in(key, 1)`; a stateless sampler such as `UniformTimes` is returned
    unchanged and costs no probe.

    **Returns:** `(behaviour, time_sampler, loss)`.
    """

    def loss_fn(field):
        loss = flow_matching_loss(
            interpolant,
            field,
            batch.actions,
            batch.observations,
            key,
            weights=batch.valid,
            time_sampler=time_sampler,
        )
        return loss, loss

    new_behaviour, loss = behaviour.minimise(loss_fn)
    probe_key, noise_key = jr.split(jr.fold_in(key, 1))

    def errors(field, times, rows=None):  # the same noise at every call; `rows`: a subset
        noise = jr.normal(noise_key, batch.actions.shape, dtype=batch.actions.dtype)
        data = (batch.actions, batch.observations, noise, batch.valid)
        actions, observations, noise, valid = (
            data if rows is None else jax.tree.map(lambda x: x[rows], data)
        )
        per_sample = flow_matching_errors(interpolant, field, actions, observations, times, noise)
        return per_sample * valid

    time_sampler = time_sampler.adapt(
        errors, behaviour.model, new_behaviour.model, probe_key, batch.actions.shape[0]
    )
    return new_behaviour, time_sampler, loss
