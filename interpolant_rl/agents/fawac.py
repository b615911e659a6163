r"""FAWAC — advantage-weighted actor-critic with a flow policy (advantage-weighted flow matching).

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the pessimistic target with $a' = \operatorname{clip}(\mathrm{ODE}_{f_\theta}(s', z))$
   from the policy itself.
2. **Value baseline.** $V_\psi \leftarrow$ one step of expectile regression of $V_\psi(s)$ on the
   target-ensemble mean $\bar Q^-(s, a)$ at the *dataset* action
   ([`expectile_value_step`][interpolant_rl.agents.expectile_value_step]); the default
   $\kappa = \tfrac12$ is a squared error, so $V(s) \approx \mathbb E_{a\sim\pi_\beta}\bar Q(s, a)$.
3. **Policy.** $f_\theta \leftarrow$ one step of flow matching on $(s, a)$ with per-sample weights
   $w = \min\big(e^{\tau(\bar Q(s, a) - V_\psi(s))}, w_{\max}\big)$
   ([`advantage_weights`][interpolant_rl.objectives.advantage_weights], $\bar Q$ the online
   ensemble mean, $w_{\max} = 100$) times the validity mask
   ([`flow_matching_loss`][interpolant_rl.objectives.flow_matching_loss]).
4. **Act.** $a = \operatorname{clip}(\mathrm{ODE}_{f_\theta}(s, z), -1, 1)$, 10 Euler steps.

Without the clip, the minimiser of the weighted flow-matching loss is the velocity of
$\pi_\beta(a\mid s)\,e^{\tau Q(s, a)}/Z(s)$: $\tau$ *multiplies* the advantage and is the inverse
temperature of the tilt (the QAM reference's `inv_temp`); $V$ only normalises each state's
weights (it decides where the clip starts to bite).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from ..nn import VelocityField
from ..objectives import advantage_weights, flow_matching_loss
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import (
    AbstractCritic,
    CriticConfig,
    expectile_value_step,
    LearnedCritic,
    StateValue,
)
from ._flow import FlowPolicy
from ._optim import adam, Trained


@dataclasses.dataclass(frozen=True)
class FAWACConfig(Hyperparameters):
    """FAWAC hyperparameters (defaults: the QAM paper's cube-double column)."""

    tau: float = (
        0.8  # inverse temperature of the weights exp(tau A) (scene, antmaze, humanoid: 6.4)
    )
    max_weight: float = 100.0  # clip w_max of the weights (IQL / AWAC / the QAM reference)
    value_expectile: float = 0.5  # expectile of V(s) on Q(s, a): 0.5 = E_beta Q (reference)
    flow_steps: int = 10  # Euler steps of the policy flow
    actor: NetworkConfig = NetworkConfig()  # the policy flow: 4x512 GELU, no LayerNorm
    value: NetworkConfig = NetworkConfig(layer_norm=True)  # V(s): 4x512 with LayerNorm, as Q
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the flow and of V
    grad_clip: float | None = None  # no clipping in the protocol for FAWAC

    def __post_init__(self):
        check_positive("tau", self.tau, allow_zero=True)
        check_positive("max_weight", self.max_weight)
        if not 0.0 < self.value_expectile < 1.0:
            raise ValueError(f"value_expectile must lie in (0, 1), got {self.value_expectile}")
        check_positive("flow_steps", self.flow_steps)


class FAWAC(AbstractAgent):
    """FAWAC: see the module docstring for the algorithm."""

    flow: Trained
    value: Trained
    critic: AbstractCritic
    action_dim: int = eqx.field(static=True)
    config: FAWACConfig

    def actor_step(self, batch, key):
        config = self.config
        obs, actions = batch.observations, batch.actions
        targets = jnp.mean(self.critic.target_batch_values(obs, actions), axis=-1)
        value, value_loss = expectile_value_step(
            self.value, obs, targets, config.value_expectile, batch.valid
        )
        q, v = self.critic.mean_values(obs, actions), jax.vmap(value.model)(obs)
        weights = advantage_weights(q, v, config.tau, config.max_weight)

        def loss_fn(field):
            loss = flow_matching_loss(
                LinearInterpolant(), field, actions, obs, key, weights=batch.valid * weights
            )
            return loss, loss

        flow, flow_loss = self.flow.minimise(loss_fn)
        metrics = dict(
            weighted_flow_matching_loss=flow_loss,
            value_loss=value_loss,
            advantage_mean=jnp.mean(q - v),
            weight_mean=jnp.mean(weights),
            weight_max=jnp.max(weights),
        )
        return FAWAC(flow, value, self.critic, self.action_dim, config), metrics

    def acting_policy(self):
        return FlowPolicy(self.flow.model, self.action_dim, self.config.flow_steps)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: FAWACConfig = FAWACConfig()
) -> FAWAC:
    """A fresh FAWAC agent."""
    flow_key, value_key, critic_key = jr.split(key, 3)
    optimiser = adam(config.learning_rate, config.grad_clip)
    flow = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    value = StateValue(obs_dim, config.value, key=value_key)
    return FAWAC(
        Trained.create(flow, optimiser),
        Trained.create(value, optimiser),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        action_dim,
        config,
    )
