r"""QAM-FQL — QAM's adjoint-matched flow distilled into an FQL one-step policy.

Algorithm box, per update: the critic's TD step with $a' = \operatorname{clip}(\mu_\omega(s', z))$;
QAM's behaviour-flow and adjoint-matching steps
([`AdjointMatchedFlow`][interpolant_rl.agents.AdjointMatchedFlow]); then one FQL step of the
one-step policy ([`OneStepDistilled`][interpolant_rl.agents.OneStepDistilled]) on
$\alpha\|\mu_\omega(s, z) - \operatorname{clip}(\mathrm{ODE}_{f_\theta}(s, z), -1, 1)\|^2
- Q(s, \operatorname{clip}(\mu_\omega(s, z)))$, whose teacher is the *fine-tuned* flow
$f_\theta$ (FQL's is the behaviour flow), its actions clipped to $[-1, 1]$. Act with
$\operatorname{clip}(\mu_\omega(s, z))$ (one network evaluation).

**$\alpha = \infty$ and $\alpha = 0$ are plain QAM**: `create` then returns
[`qam.create`][interpolant_rl.agents.qam.create]`(obs_dim, action_dim, key, config.qam)` (same
networks, same keys, same updates and actions): acting and the critic's target actions come
from the fine-tuned flow's $T$-step Euler ODE, clipped, and no one-step policy is built or
trained. The QAM paper's Table 5 says QAM-FQL with $\alpha = \infty$ (its scene, puzzle-3x3 and
humanoidmaze-medium cells: the one-step policy would be the teacher itself) is implemented by
QAM; the public reference code trains and acts with the one-step policy only when
`fql_alpha > 0`, so its $\alpha = 0$ (the cube-double cell) is plain QAM too — not a one-step
policy that climbs the critic unconstrained.
"""

import dataclasses
import math

import jax.random as jr
from jaxtyping import PRNGKeyArray

from ._adjoint_matched import AdjointMatchedFlow, create_qam, QAM, QAMConfig
from ._agent import AbstractAgent
from ._config import check_positive, Hyperparameters
from ._critic import AbstractCritic, LearnedCritic
from ._one_step import OneStepDistilled
from ._optim import adam


@dataclasses.dataclass(frozen=True)
class QAMFQLConfig(Hyperparameters):
    """QAM-FQL hyperparameters (defaults: cube-double, (tau, alpha) = (1, 0), i.e. plain QAM)."""

    qam: QAMConfig = QAMConfig()  # the adjoint-matched flow (tau = 1; 10 on cube-triple)
    alpha: float = 0.0  # distillation weight (30 on cube-triple); 0 or inf: plain QAM
    normalise_q: bool = False  # divide the one-step policy's Q term by sg(mean|Q|)

    def __post_init__(self):
        check_positive("alpha", self.alpha, allow_zero=True, allow_inf=True)

    @property
    def plain_qam(self) -> bool:
        """Whether this configuration is plain QAM ($\\alpha \\in \\{0, \\infty\\}$)."""
        return self.alpha == 0 or math.isinf(self.alpha)


class QAMFQL(AbstractAgent):
    """QAM-FQL: see the module docstring for the algorithm."""

    flows: AdjointMatchedFlow
    one_step: OneStepDistilled
    critic: AbstractCritic

    def actor_step(self, batch, key):
        flow_key, distil_key = jr.split(key)
        flows, flow_metrics = self.flows.step(self.critic, batch, flow_key)
        agent = QAMFQL(flows, self.one_step, self.critic)
        one_step, metrics = self.one_step.step(
            self.critic, batch, agent.teacher_actions, distil_key
        )
        return QAMFQL(flows, one_step, self.critic), {**flow_metrics, **metrics}

    def teacher_actions(self, observations, noise):
        r"""The distillation target $\operatorname{clip}(\mathrm{ODE}_{f_\theta}(s, z), -1, 1)$."""
        return self.flows.sample(observations, None, noise=noise)

    def acting_policy(self):
        return self.one_step.acting_policy()


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QAMFQLConfig = QAMFQLConfig()
) -> QAMFQL | QAM:
    """A fresh QAM-FQL agent; plain QAM (`qam.create` with `config.qam`) when `alpha` is 0 or
    infinite."""
    qam = config.qam
    if config.plain_qam:
        return create_qam(obs_dim, action_dim, key, qam)
    flow_key, policy_key, critic_key = jr.split(key, 3)
    return QAMFQL(
        AdjointMatchedFlow.create(obs_dim, action_dim, qam, flow_key),
        OneStepDistilled.create(
            obs_dim,
            action_dim,
            qam.actor,
            adam(qam.learning_rate, qam.grad_clip, qam.clip_mode),
            config.alpha,
            config.normalise_q,
            policy_key,
        ),
        LearnedCritic.create(obs_dim, action_dim, qam.critic, critic_key),
    )
