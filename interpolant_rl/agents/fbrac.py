r"""FBRAC — flow behaviour-regularised actor-critic (backpropagation through time).

Algorithm box, per update:

1. **Critic.** TD with $a' = \operatorname{clip}(\mathrm{ODE}_{f_\theta}(s', z))$.
2. **Flow policy.** One step on $\mathcal L_{\text{FM}}(\theta) - \frac1\alpha\,Q(s, \mathrm{ODE}_{f_\theta}(s, z))$:
   flow matching on the data plus the critic's value at the flow's action, differentiated
   through all $T$ Euler steps ([`bptt_q_loss`][interpolant_rl.objectives.bptt_q_loss]).
3. **Act.** $a = \operatorname{clip}(\mathrm{ODE}_{f_\theta}(s, z), -1, 1)$.
"""

import dataclasses

import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from ..nn import VelocityField
from ..objectives import bptt_q_loss, flow_matching_loss
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import FlowPolicy
from ._optim import adam, Trained


@dataclasses.dataclass(frozen=True)
class FBRACConfig(Hyperparameters):
    """FBRAC hyperparameters (defaults: the QAM paper's cube-double column)."""

    alpha: float = 0.1  # actor loss = BC - Q / alpha (scene 100, cube-triple 0.03)
    flow_steps: int = 10  # Euler steps T, all backpropagated through
    actor: NetworkConfig = NetworkConfig()  # the flow: 4x512 GELU
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the flow
    grad_clip: float | None = None  # no clipping in the protocol for FBRAC

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        check_positive("flow_steps", self.flow_steps)


class FBRAC(AbstractAgent):
    """FBRAC: see the module docstring for the algorithm."""

    flow: Trained
    critic: AbstractCritic
    config: FBRACConfig

    def actor_step(self, batch, key):
        bc_key, noise_key = jr.split(key)
        noise = jr.normal(noise_key, batch.actions.shape)

        def loss_fn(field):
            bc = flow_matching_loss(
                LinearInterpolant(),
                field,
                batch.actions,
                batch.observations,
                bc_key,
                weights=batch.valid,
            )
            q_loss = bptt_q_loss(
                LinearInterpolant(),
                field,
                noise,
                batch.observations,
                self.critic.mean_values,
                num_steps=self.config.flow_steps,
            )
            return bc + q_loss / self.config.alpha, dict(flow_matching_loss=bc, q_loss=q_loss)

        flow, metrics = self.flow.minimise(loss_fn)
        return FBRAC(flow, self.critic, self.config), metrics

    def acting_policy(self):
        return FlowPolicy(self.flow.model, self.flow.model.action_dim, self.config.flow_steps)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: FBRACConfig = FBRACConfig()
) -> FBRAC:
    """A fresh FBRAC agent."""
    flow_key, critic_key = jr.split(key)
    flow = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    return FBRAC(
        Trained.create(flow, adam(config.learning_rate, config.grad_clip)),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
