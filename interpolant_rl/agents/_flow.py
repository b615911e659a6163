r"""The flow policy every flow agent acts with, and the behaviour-cloning step that fits a flow."""

from collections.abc import Callable

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
    flow_matching_errors,
    flow_matching_loss,
    UniformTimes,
)
from ._agent import AbstractPolicy
from ._optim import Trained
from ._time_sampled import minimise_and_adapt


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

    def per_sample(field, actions, observations, times, noise):
        return flow_matching_errors(interpolant, field, actions, observations, times, noise)

    return minimise_and_adapt(
        behaviour, time_sampler, loss_fn, per_sample, batch, jr.fold_in(key, 1)
    )
