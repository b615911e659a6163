r"""QAM-FQL — QAM's adjoint-matched flow distilled into an FQL one-step policy.

Algorithm box, per update: the critic's TD step with $a' = \operatorname{clip}(\mu_\omega(s', z))$;
QAM's behaviour-flow and adjoint-matching steps
([`AdjointMatchedFlow`][interpolant_rl.agents.qam.AdjointMatchedFlow]); then one FQL step of the
one-step policy ([`OneStepDistilled`][interpolant_rl.agents.fql.OneStepDistilled]) on
$\alpha\|\mu_\omega(s, z) - \mathrm{ODE}_{f_\theta}(s, z)\|^2 - Q(s, \mu_\omega(s, z))$, whose
teacher is the *fine-tuned* flow $f_\theta$ (FQL's is the behaviour flow). Act with
$\mu_\omega$ (one network evaluation).

At the default $\alpha = 0$ the distillation term vanishes and the teacher's $T$-step ODE is
not run (the one-step policy just climbs the critic); the flows are still trained.
"""

import dataclasses

import jax.random as jr
from jaxtyping import PRNGKeyArray

from ._core import AbstractAgent, AbstractCritic, adam, check_positive, LearnedCritic
from .fql import OneStepDistilled
from .qam import AdjointMatchedFlow, QAMConfig


@dataclasses.dataclass(frozen=True)
class QAMFQLConfig:
    """QAM-FQL hyperparameters (defaults: cube-double, (tau, alpha) = (1, 0))."""

    qam: QAMConfig = QAMConfig()  # the adjoint-matched flow (tau = 1; 10 on cube-triple)
    alpha: float = 0.0  # distillation weight (300 on cube-triple); 0 skips the teacher flow
    normalise_q: bool = False  # divide the one-step policy's Q term by sg(mean|Q|)

    def __post_init__(self):
        check_positive("alpha", self.alpha, allow_zero=True)


class QAMFQL(AbstractAgent):
    """QAM-FQL: see the module docstring for the algorithm."""

    flows: AdjointMatchedFlow
    one_step: OneStepDistilled
    critic: AbstractCritic

    def actor_step(self, batch, key):
        flow_key, distil_key = jr.split(key)
        flows, flow_metrics = self.flows.step(self.critic, batch, flow_key)

        def teacher(observations, noise):
            return flows.sample(observations, None, noise=noise)

        one_step, metrics = self.one_step.step(self.critic, batch, teacher, distil_key)
        return QAMFQL(flows, one_step, self.critic), {**flow_metrics, **metrics}

    def policy(self, observations, key):
        return self.one_step.sample(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QAMFQLConfig = QAMFQLConfig()
) -> QAMFQL:
    """A fresh QAM-FQL agent."""
    flow_key, policy_key, critic_key = jr.split(key, 3)
    qam = config.qam
    return QAMFQL(
        AdjointMatchedFlow.create(obs_dim, action_dim, qam, flow_key),
        OneStepDistilled.create(
            obs_dim,
            action_dim,
            qam.actor,
            adam(qam.learning_rate, qam.grad_clip),
            config.alpha,
            config.normalise_q,
            policy_key,
        ),
        LearnedCritic.create(obs_dim, action_dim, qam.critic, critic_key),
    )
