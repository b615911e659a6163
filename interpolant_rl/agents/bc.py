r"""BC — behaviour cloning: the behaviour policy fitted to the dataset's actions, no critic.

Algorithm box, per update on a batch $(s, a)$:

1. **Gaussian BC** (the default): a tanh-Gaussian MLP $\pi_\phi(a \mid s)$ by maximum likelihood,
   $$\mathcal L(\phi) = -\operatorname{mean}_i \log\pi_\phi(a_i \mid s_i)$$
   ([`TanhGaussianPolicy.log_prob`][interpolant_rl.nn.TanhGaussianPolicy.log_prob]: the
   Gaussian density of $u = \operatorname{atanh}(a)$ with the tanh change of variables; dataset
   actions are clipped to $[-1 + 10^{-6}, 1 - 10^{-6}]$ first).
   **Deterministic BC** (`deterministic=True`): a tanh MLP $\mu_\phi$ by mean squared error,
   $$\mathcal L(\phi) = \operatorname{mean}_i \|\mu_\phi(s_i) - a_i\|^2$$
   (summed over action dimensions, as the library's TD3+BC term).
2. **Act.** Gaussian BC acts with the squashed mean $\tanh(\mu(s))$, the usual deterministic
   evaluation of a Gaussian policy (`stochastic_acting=True`: a sample of $\pi_\phi(\cdot\mid s)$,
   the fitted distribution itself); deterministic BC with $\mu_\phi(s)$.

There is no critic: the agent holds a [`FixedCritic`][interpolant_rl.agents.FixedCritic] of
zero values whose TD step does nothing (it only records the chunk length and discount of the
data the policy is cloned from).

Hyperparameters: no seed paper specifies BC's; the defaults are the common Gym-locomotion
setting of the offline-RL baselines (a 2 × 256 MLP, Adam $3\cdot10^{-4}$), our choice.
"""

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ..nn import MLP, TanhGaussianPolicy
from ..objectives import weighted_mean
from ._agent import AbstractAgent, AbstractPolicy
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, no_critic
from ._optim import adam, check_optimiser, Trained
from ._policies import DeterministicActor, DeterministicPolicy, GaussianMode, StochasticPolicy


@dataclasses.dataclass(frozen=True)
class BCConfig(Hyperparameters):
    """BC hyperparameters (see the module docstring for where they come from)."""

    deterministic: bool = False  # tanh MLP by squared error (default: tanh-Gaussian, likelihood)
    stochastic_acting: bool = False  # Gaussian BC acts by sampling pi(.|s), not with tanh(mu(s))
    actor: NetworkConfig = NetworkConfig(256, 2)  # the policy network
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # no clipping
    horizon: int = 1  # chunk length h of the cloned actions (set from the dataset's domain)
    discount: float = 0.99  # recorded with the data's chunking; BC has no TD target

    def __post_init__(self):
        if self.deterministic and self.stochastic_acting:
            raise ValueError("stochastic_acting needs the Gaussian policy (deterministic=False)")
        check_optimiser(self.learning_rate, self.grad_clip)
        check_positive("horizon", self.horizon)


def bc_loss(network, batch, deterministic: bool):
    """The loss of the module docstring on `batch` (valid rows only), and its metrics."""
    if deterministic:
        errors = jnp.sum((jax.vmap(network)(batch.observations) - batch.actions) ** 2, axis=-1)
        loss = weighted_mean(errors, batch.valid)
        return loss, dict(bc_loss=loss)
    log_probs = jax.vmap(network.log_prob)(batch.observations, batch.actions)
    loss = -weighted_mean(log_probs, batch.valid)
    return loss, dict(bc_loss=loss)


class BC(AbstractAgent):
    """Behaviour cloning: see the module docstring for the algorithm."""

    actor: Trained
    critic: AbstractCritic
    config: BCConfig

    def actor_step(self, batch, key):
        del key
        actor, metrics = self.actor.minimise(
            lambda network: bc_loss(network, batch, self.config.deterministic)
        )
        return dataclasses.replace(self, actor=actor), metrics

    def acting_policy(self) -> AbstractPolicy:
        if self.config.deterministic:
            return DeterministicPolicy(self.actor.model)
        if self.config.stochastic_acting:
            return StochasticPolicy(self.actor.model)
        return GaussianMode(self.actor.model)


def create(obs_dim: int, action_dim: int, key: PRNGKeyArray, config: BCConfig = BCConfig()) -> BC:
    """A fresh BC agent."""
    net = config.actor
    if config.deterministic:
        network = DeterministicActor(
            MLP(obs_dim, action_dim, net.width, net.depth, layer_norm=net.layer_norm, key=key)
        )
    else:
        network = build_network(TanhGaussianPolicy, action_dim, obs_dim, net, key)
    critic = no_critic(config.horizon, config.discount)
    return BC(Trained.create(network, adam(config.learning_rate, config.grad_clip)), critic, config)
