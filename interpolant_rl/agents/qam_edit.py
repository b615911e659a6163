r"""QAM-EDIT — QAM with a bounded edit policy on top of the fine-tuned flow.

Algorithm box, per update: the critic's TD step with $a'$ the edited action at $s'$; QAM's
behaviour-flow and adjoint-matching steps ([`AdjointMatchedFlow`][interpolant_rl.agents.qam.AdjointMatchedFlow]);
then one step of the edit policy ([`ActionEdit`][interpolant_rl.agents.ActionEdit]) maximising
$Q(s, \operatorname{clip}(a_\theta + \lambda e))$ around the QAM action $a_\theta$. Act with the
edited QAM action. An edit scale $\lambda = 0$ is plain QAM.
"""

import dataclasses

import jax.random as jr
from jaxtyping import PRNGKeyArray

from ._core import AbstractAgent, AbstractCritic, adam, check_positive, LearnedCritic
from ._edit import ActionEdit
from .qam import AdjointMatchedFlow, QAMConfig


@dataclasses.dataclass(frozen=True)
class QAMEditConfig:
    """QAM-EDIT hyperparameters (defaults: cube-double, (tau, edit scale) = (1, 0))."""

    qam: QAMConfig = QAMConfig()  # the adjoint-matched flow (tau = 1)
    edit_scale: float = 0.0  # lambda: L-infinity radius of the edit (0.1 on cube-triple)

    def __post_init__(self):
        check_positive("edit_scale", self.edit_scale, allow_zero=True)


class QAMEdit(AbstractAgent):
    """QAM-EDIT: see the module docstring for the algorithm."""

    flows: AdjointMatchedFlow
    edit: ActionEdit
    critic: AbstractCritic

    def actor_step(self, batch, key):
        flow_key, sample_key, edit_key = jr.split(key, 3)
        flows, flow_metrics = self.flows.step(self.critic, batch, flow_key)
        base_actions = flows.sample(batch.observations, sample_key)
        edit, edit_metrics = self.edit.step(self.critic, batch, base_actions, edit_key)
        return QAMEdit(flows, edit, self.critic), {**flow_metrics, **edit_metrics}

    def policy(self, observations, key):
        flow_key, edit_key = jr.split(key)
        return self.edit.sample(observations, self.flows.sample(observations, flow_key), edit_key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: QAMEditConfig = QAMEditConfig()
) -> QAMEdit:
    """A fresh QAM-EDIT agent."""
    flow_key, edit_key, critic_key = jr.split(key, 3)
    qam = config.qam
    return QAMEdit(
        AdjointMatchedFlow.create(obs_dim, action_dim, qam, flow_key),
        ActionEdit.create(
            obs_dim,
            action_dim,
            qam.actor,
            adam(qam.learning_rate, qam.grad_clip),
            config.edit_scale,
            edit_key,
        ),
        LearnedCritic.create(obs_dim, action_dim, qam.critic, critic_key),
    )
