r"""IQL — implicit Q-learning (Kostrikov, Nair & Levine 2022): in-sample value learning by
expectile regression, and advantage-weighted regression of a Gaussian actor.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Value.** $V_\psi \leftarrow$ one step of expectile regression (expectile $\kappa$) towards
   the minimum of the two target critics at the *dataset* action,
   $\mathcal L(\psi) = \operatorname{mean}_i |\kappa - \mathbf 1[y_i < V_\psi(s_i)]|\,(y_i - V_\psi(s_i))^2$,
   $y_i = \min_k Q^-_k(s_i, a_i)$.
2. **Critic.** $\frac1K\sum_k \operatorname{mean}_i (Q_k(s_i, a_i) - r_i - \gamma^h m_i V_\psi(s_i'))^2$,
   $Q^- \leftarrow$ EMA of $Q$. Steps 1 and 2 are the
   [`ExpectileCritic`][interpolant_rl.agents.ExpectileCritic]'s TD step ($K = 2$, $\rho = 1$:
   the minimum).
3. **Actor.** One step of advantage-weighted regression,
   $$\mathcal L(\phi) = -\operatorname{mean}_i \min\big(e^{\beta(\min_k Q^-_k(s_i, a_i) - V_\psi(s_i))}, 100\big)\,\log\pi_\phi(a_i \mid s_i)$$
   ([`advantage_weights`][interpolant_rl.objectives.advantage_weights]), whose optimum is the
   tilt $\pi_\beta(a\mid s)\,e^{\beta A(s, a)}$ projected onto the policy class.
4. **Act.** $a = \tanh(\mu_\phi(s))$ (IQL evaluates its policy's mean).

Defaults: the IQL paper's Gym-MuJoCo locomotion values: $\kappa = 0.7$,
$\beta = 3$, weights clipped at 100, 2 × 256 networks, Adam $3\cdot10^{-4}$, two critics, target
rate 0.005. Differences from its reference code: the actor is the library's tanh-Gaussian (state-
dependent standard deviation, squashed samples; IQL's is a Gaussian with a tanh on its mean and a
state-independent standard deviation), the actor's learning rate is constant (IQL decays it
on a cosine schedule), the MLPs use GELU (IQL: ReLU), and rewards are not rescaled (IQL divides
locomotion rewards by the dataset's return range and multiplies by 1000).
"""

import dataclasses

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._custom_types import ScalarLike
from ..nn import TanhGaussianPolicy
from ..objectives import advantage_weights
from ._agent import AbstractAgent, AbstractPolicy
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, ExpectileCritic
from ._optim import adam, Trained
from ._policies import GaussianMode


@dataclasses.dataclass(frozen=True)
class IQLConfig(Hyperparameters):
    """IQL hyperparameters (defaults: the IQL paper's Gym-MuJoCo values, see the module
    docstring)."""

    expectile: float = 0.7  # expectile kappa of V (antmaze: 0.9)
    beta: float = 3.0  # inverse temperature of the advantage weights (antmaze: 10)
    max_weight: float = 100.0  # clip of the weights
    actor: NetworkConfig = NetworkConfig(256, 2)  # tanh-Gaussian actor
    value: NetworkConfig = NetworkConfig(256, 2)  # V(s)
    critic: CriticConfig = CriticConfig(
        width=256, depth=2, layer_norm=False, num_critics=2, rho=1.0
    )  # two critics, their minimum in the targets
    learning_rate: float = 3e-4  # Adam step size of the actor (the critic's is its own)
    grad_clip: float | None = None  # no clipping

    def __post_init__(self):
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must lie in (0, 1), got {self.expectile}")
        check_positive("beta", self.beta, allow_zero=True)
        check_positive("max_weight", self.max_weight)


def iql_actor_loss(network, batch, q_values, values, beta: ScalarLike, max_weight: ScalarLike):
    """Step 3's loss: the advantage-weighted negative log-likelihood of the dataset actions,
    averaged over the valid rows (not normalised by the weights, as IQL's code), and metrics."""
    weights = advantage_weights(q_values, values, beta, max_weight)
    log_probs = jax.vmap(network.log_prob)(batch.observations, batch.actions)
    valid = batch.valid
    loss = -jnp.sum(valid * weights * log_probs) / jnp.maximum(jnp.sum(valid), 1.0)
    return loss, dict(
        actor_loss=loss, weight_mean=jnp.mean(weights), advantage_mean=jnp.mean(q_values - values)
    )


class IQL(AbstractAgent):
    """IQL: see the module docstring for the algorithm."""

    actor: Trained
    critic: AbstractCritic
    config: IQLConfig

    def actor_step(self, batch, key):
        del key
        config = self.config
        obs, actions = batch.observations, batch.actions
        q = jnp.min(self.critic.target_batch_values(obs, actions), axis=-1)
        v = jax.vmap(self.critic.value.model)(obs)  # the critic's V, fitted in its TD step
        actor, metrics = self.actor.minimise(
            lambda network: iql_actor_loss(network, batch, q, v, config.beta, config.max_weight)
        )
        return dataclasses.replace(self, actor=actor), metrics

    def acting_policy(self) -> AbstractPolicy:
        return GaussianMode(self.actor.model)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: IQLConfig = IQLConfig()
) -> IQL:
    """A fresh IQL agent."""
    actor_key, critic_key = jr.split(key)
    actor = build_network(TanhGaussianPolicy, action_dim, obs_dim, config.actor, actor_key)
    critic = ExpectileCritic.create(
        obs_dim, action_dim, config.critic, config.value, config.expectile, critic_key
    )
    return IQL(Trained.create(actor, adam(config.learning_rate, config.grad_clip)), critic, config)
