r"""FQL — flow Q-learning.

Algorithm box, per update:

1. **Critic.** TD with $a' = \operatorname{clip}(\mu_\omega(s', z))$ from the one-step policy.
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on the data.
3. **One-step policy.** $\mu_\omega \leftarrow$ one step on
   $\alpha\,\|\mu_\omega(s, z) - \mathrm{ODE}_{f_\beta}(s, z)\|^2 - Q(s, \mu_\omega(s, z))$
   ([`one_step_distillation_loss`][interpolant_rl.objectives.one_step_distillation_loss]):
   the flow is never backpropagated through; the one-step policy is both distilled from it and
   pushed up the critic.
4. **Act.** $a = \operatorname{clip}(\mu_\omega(s, z), -1, 1)$ — one network evaluation.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from ..nn import OneStepPolicy, VelocityField
from ..objectives import normalised_q_loss, one_step_distillation_loss
from ._core import (
    AbstractAgent,
    AbstractCritic,
    adam,
    Batch,
    build_network,
    check_positive,
    CriticConfig,
    flow_actions,
    flow_matching_step,
    LearnedCritic,
    NetworkConfig,
    Trained,
)


@dataclasses.dataclass(frozen=True)
class FQLConfig:
    """FQL hyperparameters (defaults: the QAM paper's cube-double column)."""

    alpha: float = 300.0  # distillation weight (cube-triple 30, antmaze-large 3)
    flow_steps: int = 10  # Euler steps of the behaviour flow (the distillation teacher)
    normalise_q: bool = False  # divide the Q term by sg(mean|Q|) (off on OGBench)
    actor: NetworkConfig = NetworkConfig()  # behaviour flow and one-step policy: 4x512 GELU
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the actor networks
    grad_clip: float | None = None  # no clipping in the protocol for FQL

    def __post_init__(self):
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("flow_steps", self.flow_steps)


class OneStepDistilled(eqx.Module):
    r"""A one-step policy distilled from a teacher flow and trained against the critic (shared
    by FQL and QAM-FQL).

    **Fields:** `policy` (a `Trained` [`OneStepPolicy`][interpolant_rl.nn.OneStepPolicy]),
    `action_dim`, `alpha`, `normalise_q` (static).
    """

    policy: Trained
    action_dim: int = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    normalise_q: bool = eqx.field(static=True)

    @classmethod
    def create(cls, obs_dim, action_dim, net: NetworkConfig, optimiser, alpha, normalise_q, key):
        policy = build_network(OneStepPolicy, action_dim, obs_dim, net, key)
        return cls(Trained.create(policy, optimiser), action_dim, alpha, normalise_q)

    def step(self, critic: AbstractCritic, batch: Batch, teacher: Callable, key: PRNGKeyArray):
        """One step on the distillation + Q loss; `teacher(observations, noise) -> actions`,
        whose actions are clipped to $[-1, 1]$ before they are distilled.

        With `alpha == 0` (FQL without distillation; QAM-FQL's $\alpha = 0$ is plain QAM and
        never gets here) the distillation term is multiplied by zero, so
        the teacher is not run at all (a 10-step flow per update that XLA cannot remove, since
        `0.0 * x` is not `0` for non-finite `x`): the loss is the Q term alone, with the same
        value and gradient, and the `distillation_loss` metric is left out.
        """
        noise = jr.normal(key, batch.actions.shape)
        if self.alpha == 0:  # static: decided when tracing

            def q_only_loss(policy):
                actions = jax.vmap(policy)(noise, batch.observations)
                q = critic.mean_values(batch.observations, jnp.clip(actions, -1.0, 1.0))
                q_loss = normalised_q_loss(q) if self.normalise_q else -jnp.mean(q)
                return q_loss, dict(q_loss=q_loss)

            policy, metrics = self.policy.minimise(q_only_loss)
            return dataclasses.replace(self, policy=policy), metrics

        # FQL eq. (39) / QAM-FQL eq. (42): the teacher's ODE action clipped to the action box
        teacher_actions = jnp.clip(teacher(batch.observations, noise), -1.0, 1.0)

        def loss_fn(policy):
            return one_step_distillation_loss(
                policy,
                teacher_actions,
                noise,
                batch.observations,
                critic.mean_values,
                self.alpha,
                normalise_q=self.normalise_q,
            )

        policy, metrics = self.policy.minimise(loss_fn)
        return dataclasses.replace(self, policy=policy), metrics

    def sample(self, observations, key):
        noise = jr.normal(key, (observations.shape[0], self.action_dim))
        return jnp.clip(jax.vmap(self.policy.model)(noise, observations), -1.0, 1.0)


class FQL(AbstractAgent):
    """FQL: see the module docstring for the algorithm."""

    behaviour: Trained
    one_step: OneStepDistilled
    critic: AbstractCritic
    config: FQLConfig = eqx.field(static=True)

    def actor_step(self, batch, key):
        bc_key, distil_key = jr.split(key)

        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, bc_key)

        def teacher(observations, noise):
            return flow_actions(
                LinearInterpolant(), behaviour.model, observations, noise, self.config.flow_steps
            )

        one_step, metrics = self.one_step.step(self.critic, batch, teacher, distil_key)
        agent = FQL(behaviour, one_step, self.critic, self.config)
        return agent, dict(flow_matching_loss=bc_loss, **metrics)

    def policy(self, observations, key):
        return self.one_step.sample(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: FQLConfig = FQLConfig()
) -> FQL:
    """A fresh FQL agent."""
    flow_key, policy_key, critic_key = jr.split(key, 3)
    net = config.actor
    optimiser = adam(config.learning_rate, config.grad_clip)
    behaviour = build_network(VelocityField, action_dim, obs_dim, net, flow_key)
    return FQL(
        Trained.create(behaviour, optimiser),
        OneStepDistilled.create(
            obs_dim, action_dim, net, optimiser, config.alpha, config.normalise_q, policy_key
        ),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
