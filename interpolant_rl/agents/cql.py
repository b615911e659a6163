r"""CQL — conservative Q-learning (Kumar et al. 2020), CQL(H) on soft actor-critic.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the clipped double-Q target with $a' \sim \pi(\cdot\mid s')$ (no entropy
   term in the target: the public code's deterministic backup), plus the conservative penalty
   $$\alpha\,\operatorname{mean}_i \tfrac1K\sum_k\Big[T\log\sum_j e^{(Q_k(s_i, a_{ij}) - \log\mu(a_{ij}))/T} - Q_k(s_i, a_i)\Big]$$
   ([`cql_penalty`][interpolant_rl.objectives.cql_penalty]) over $3N$ candidates: $N$
   uniform actions in $[-1, 1]^d$ ($\log\mu = -d\log 2$), $N$ samples of $\pi(\cdot\mid s)$ and
   $N$ of $\pi(\cdot\mid s')$ (each with its $\log\pi$), all evaluated at $s$.
   **CQL-Lagrange** (`lagrange_threshold` $\tau$ set): the penalty is
   $\alpha'(\text{gap} - \tau)$ with $\alpha' = e^{\log\alpha'}$ raised while the gap exceeds
   $\tau$ (one step on $\log\alpha'\,(\tau - \text{gap})$), times $\alpha$.
2. **Actor** (SAC). One step on $\operatorname{mean}[\alpha_{\text{SAC}}\log\pi(\tilde a\mid s) - \bar Q(s, \tilde a)]$,
   then one temperature step toward the target entropy $-d$
   ([`SoftActor`][interpolant_rl.agents.SoftActor], RLPD's).
3. **Act.** $a = \tanh(\mu(s))$ (CQL evaluates the deterministic policy).

Defaults: the public CQL code's Gym-locomotion values (as its reimplementations use them):
$\alpha = 5$, $N = 10$, $T = 1$, no Lagrange, policy Adam $10^{-4}$, critics $3\cdot10^{-4}$,
3 × 256 networks, two critics, target rate 0.005, $\gamma = 0.99$; our transcription of the
papers does not hold CQL's table, so these are the code's. Differences: the policy maximises the
mean of the two critics (the code: their minimum), no behaviour-cloning warm-up of the policy
(the code: the first 10k–40k updates), GELU (the code: ReLU).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..objectives import cql_penalty, Temperature, temperature_loss
from ._agent import AbstractAgent, AbstractPolicy
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._optim import adam, Trained
from ._policies import GaussianMode
from ._soft_actor import SoftActor


@dataclasses.dataclass(frozen=True)
class CQLConfig(Hyperparameters):
    """CQL hyperparameters (defaults: the public code's Gym values, see the module docstring)."""

    alpha: float = 5.0  # weight of the conservative penalty (min_q_weight)
    num_samples: int = 10  # N candidates per proposal (uniform, pi(.|s), pi(.|s'))
    temperature: float = 1.0  # T of the log-sum-exp
    lagrange_threshold: float | None = None  # tau of CQL-Lagrange (None: a fixed alpha)
    initial_temperature: float = 1.0  # SAC's starting alpha
    target_entropy_per_dim: float = -1.0  # SAC: target entropy -d
    actor: NetworkConfig = NetworkConfig(256, 3)  # tanh-Gaussian policy
    critic: CriticConfig = CriticConfig(
        width=256, depth=3, layer_norm=False, num_critics=2, rho=1.0
    )  # two critics, their minimum in the target
    learning_rate: float = 1e-4  # Adam step size of the policy (and of the temperatures)
    grad_clip: float | None = None  # no clipping

    def __post_init__(self):
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("num_samples", self.num_samples)
        check_positive("temperature", self.temperature)
        if self.lagrange_threshold is not None:
            check_positive("lagrange_threshold", self.lagrange_threshold, allow_zero=True)
        check_positive("initial_temperature", self.initial_temperature)


class CQL(AbstractAgent):
    """CQL: see the module docstring for the algorithm."""

    actor: SoftActor
    critic: AbstractCritic
    lagrange: Trained | None  # log alpha' of CQL-Lagrange
    config: CQLConfig

    def _candidates(self, batch, key):
        """The $3N$ candidate actions per state and their log proposal densities."""
        n, size = self.config.num_samples, batch.observations.shape[0]
        uniform_key, current_key, next_key = jr.split(key, 3)
        action_dim = self.actor.policy.model.action_dim
        uniform = jr.uniform(uniform_key, (size, n, action_dim), minval=-1.0, maxval=1.0)
        uniform_log_density = jnp.full((size, n), -action_dim * math.log(2.0))

        def policy_samples(observations, k):
            actions, log_probs = self.actor.sample(jnp.repeat(observations, n, axis=0), k)
            return actions.reshape(size, n, action_dim), log_probs.reshape(size, n)

        current, current_log = policy_samples(batch.observations, current_key)
        following, following_log = policy_samples(batch.next_observations, next_key)
        candidates = jnp.concatenate([uniform, current, following], axis=1)
        log_densities = jnp.concatenate([uniform_log_density, current_log, following_log], axis=1)
        return jax.lax.stop_gradient(candidates), jax.lax.stop_gradient(log_densities)

    def update_step(self, batch, key):
        """The critic's TD step with the conservative penalty (which needs policy samples the
        default `update_step` does not make), the Lagrange multiplier's step, then
        `actor_step`."""
        config = self.config
        next_key, candidate_key, actor_key = jr.split(key, 3)
        next_actions, _ = self.actor.sample(batch.next_observations, next_key)
        next_actions = jax.lax.stop_gradient(next_actions)
        if not isinstance(self.critic, LearnedCritic):  # a known critic (the exact-tilt benchmark)
            critic, critic_metrics = self.critic.step(batch, next_actions)
            agent = dataclasses.replace(self, critic=critic)
            agent, actor_metrics = agent.actor_step(batch, actor_key)
            return agent, {**critic_metrics, **actor_metrics}
        candidates, log_densities = self._candidates(batch, candidate_key)
        size, count, dim = candidates.shape
        multiplier = 1.0 if self.lagrange is None else self.lagrange.model()
        multiplier = jax.lax.stop_gradient(multiplier)

        def penalty(ensemble):
            values = ensemble.batch_values(
                jnp.repeat(batch.observations, count, axis=0), candidates.reshape(size * count, dim)
            ).reshape(size, count, -1)
            data_values = ensemble.batch_values(batch.observations, batch.actions)
            gap = cql_penalty(values, log_densities, data_values, config.temperature, batch.valid)
            threshold = 0.0 if config.lagrange_threshold is None else config.lagrange_threshold
            loss = config.alpha * multiplier * (gap - threshold)
            return loss, dict(cql_gap=gap, cql_penalty=loss)

        critic, critic_metrics = self.critic.step(batch, next_actions, penalty=penalty)
        lagrange = self.lagrange
        if lagrange is not None:
            gap = jax.lax.stop_gradient(critic_metrics["cql_gap"])

            def multiplier_loss(parameter):
                loss = temperature_loss(parameter, config.lagrange_threshold, gap)
                return loss, dict(cql_multiplier=parameter())

            lagrange, multiplier_metrics = lagrange.minimise(multiplier_loss)
            critic_metrics = {**critic_metrics, **multiplier_metrics}
        agent = dataclasses.replace(self, critic=critic, lagrange=lagrange)
        agent, actor_metrics = agent.actor_step(batch, actor_key)
        return agent, {**critic_metrics, **actor_metrics}

    def actor_step(self, batch, key):
        actor, metrics = self.actor.step(self.critic.mean_values, batch.observations, key)
        return dataclasses.replace(self, actor=actor), metrics

    def acting_policy(self) -> AbstractPolicy:
        return GaussianMode(self.actor.policy.model)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: CQLConfig = CQLConfig()
) -> CQL:
    """A fresh CQL agent."""
    actor_key, critic_key = jr.split(key)
    actor = SoftActor.from_config(obs_dim, action_dim, config, actor_key)
    critic = LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key)
    lagrange = None
    if config.lagrange_threshold is not None:
        lagrange = Trained.create(Temperature(1.0), adam(config.learning_rate))
    return CQL(actor, critic, lagrange, config)
