r"""FQL — flow Q-learning.

Algorithm box, per update:

1. **Critic.** TD with $a' = \operatorname{clip}(\mu_\omega(s', z))$ from the one-step policy.
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on the data (times uniform by
   default; `time_sampler="adaptive"`, `"variance_minimising"` or `"gradient_norm"`: drawn by an
   importance-weighted
   [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler],
   [`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler] or
   [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler], adapted every
   step; see [`behaviour_time_sampler`][interpolant_rl.agents.behaviour_time_sampler]).
3. **One-step policy.** $\mu_\omega \leftarrow$ one step on
   $\alpha\,\|\mu_\omega(s, z) - \mathrm{ODE}_{f_\beta}(s, z)\|^2 - Q(s, \mu_\omega(s, z))$
   ([`one_step_distillation_loss`][interpolant_rl.objectives.one_step_distillation_loss]):
   the flow is never backpropagated through; the one-step policy is both distilled from it and
   pushed up the critic.
4. **Act.** $a = \operatorname{clip}(\mu_\omega(s, z), -1, 1)$ — one network evaluation.
"""

import dataclasses

import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..nn import VelocityField
from ..objectives import AbstractTimeSampler, UniformTimes
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import FlowPolicy, sampled_flow_matching_step
from ._one_step import OneStepDistilled
from ._optim import adam, Trained
from ._time_sampled import behaviour_time_sampler, TimeSamplerName


@dataclasses.dataclass(frozen=True)
class FQLConfig(Hyperparameters):
    """FQL hyperparameters (defaults: the QAM paper's cube-double column)."""

    alpha: float = 300.0  # distillation weight (cube-triple 30, antmaze-large 3)
    flow_steps: int = 10  # Euler steps of the behaviour flow (the distillation teacher)
    normalise_q: bool = False  # divide the Q term by sg(mean|Q|) (off on OGBench)
    actor: NetworkConfig = NetworkConfig()  # behaviour flow and one-step policy: 4x512 GELU
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the actor networks
    grad_clip: float | None = None  # no clipping in the protocol for FQL
    time_sampler: TimeSamplerName = "uniform"  # flow-matching times ("adaptive": issue 16)

    def __post_init__(self):
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("flow_steps", self.flow_steps)
        behaviour_time_sampler(self.time_sampler)  # raises for an unknown name


class FQL(AbstractAgent):
    """FQL: see the module docstring for the algorithm."""

    behaviour: Trained
    one_step: OneStepDistilled
    critic: AbstractCritic
    config: FQLConfig
    time_sampler: AbstractTimeSampler = UniformTimes()  # of the behaviour flow's times

    def actor_step(self, batch, key):
        bc_key, distil_key = jr.split(key)

        behaviour, time_sampler, bc_loss = sampled_flow_matching_step(
            self.behaviour, self.time_sampler, batch, bc_key
        )

        # the unclipped ODE action; `OneStepDistilled.step` clips it (eq. 39)
        teacher = FlowPolicy(
            behaviour.model, behaviour.model.action_dim, self.config.flow_steps, clip=False
        ).from_noise

        one_step, metrics = self.one_step.step(self.critic, batch, teacher, distil_key)
        agent = FQL(behaviour, one_step, self.critic, self.config, time_sampler)
        return agent, dict(flow_matching_loss=bc_loss, **metrics)

    def acting_policy(self):
        return self.one_step.acting_policy()


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
        behaviour_time_sampler(config.time_sampler),
    )
