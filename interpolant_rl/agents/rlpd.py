r"""RLPD — reinforcement learning with prior data: soft actor-critic from scratch, online, on
batches drawn half from the offline dataset and half from the replay buffer.

Algorithm box, per update on a batch $(s, a, r, m, s')$ (50 % offline, 50 % online):

1. **Critic.** TD on the pessimistic target of the LayerNorm critic ensemble, made soft (the
   entropy backup, [`soft_td_rewards`][interpolant_rl.objectives.soft_td_rewards]):
   $y = r + \gamma^h m\big(\bar Q^-(s', a') - \rho\,\mathrm{std}\,Q^-(s', a') - \alpha\log\pi(a'\mid s')\big)$,
   $a' \sim \pi(\cdot\mid s')$.
2. **Actor.** One step on SAC's reparameterised loss
   ([`sac_actor_loss`][interpolant_rl.objectives.sac_actor_loss]) plus an optional
   behaviour-cloning term (the QAM paper's RLPD variant, weight $\beta$ = `bc_alpha`):
   $$\mathcal L(\phi) = \operatorname{mean}\big[\alpha\log\pi_\phi(\tilde a\mid s) - \bar Q(s, \tilde a)\big]
     - \beta\operatorname{mean}\log\pi_\phi(a\mid s),\qquad \tilde a \sim \pi_\phi(\cdot\mid s).$$
3. **Temperature.** One step on $\log\alpha\cdot(\hat{\mathcal H} - \bar{\mathcal H})$
   ([`temperature_loss`][interpolant_rl.objectives.temperature_loss]), target entropy
   $\bar{\mathcal H} = -d/2$ (RLPD's).
4. **Act.** $a \sim \pi(\cdot\mid s) = \tanh\mathcal N(\mu(s), \sigma(s)^2)$.

RLPD is online-only: train it with `TrainConfig(offline_steps=0, random_action_steps=5000)`
(the offline dataset still fills half of every batch, `online_fraction = 0.5`); `experiments/run.py
--agent rlpd` does this by default.
"""

import dataclasses

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..objectives import soft_td_rewards, weighted_mean
from ._agent import AbstractAgent
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._soft_actor import SoftActor


@dataclasses.dataclass(frozen=True)
class RLPDConfig(Hyperparameters):
    """RLPD hyperparameters (defaults: the QAM paper's cube-double column)."""

    bc_alpha: float = (
        0.1  # the table's "RLPD BC alpha": weight of -log pi(a_data|s) (0 = plain RLPD)
    )
    initial_temperature: float = 1.0  # starting SAC temperature alpha (RLPD: 1)
    target_entropy_per_dim: float = -0.5  # target entropy = this * action_dim (RLPD: -d/2)
    backup_entropy: bool = True  # soft TD target: subtract alpha log pi(a'|s') (RLPD: yes)
    actor: NetworkConfig = NetworkConfig()  # tanh-Gaussian actor: 4x512 GELU, no LayerNorm
    critic: CriticConfig = CriticConfig()  # LayerNorm ensemble as RLPD's, K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the actor and the temperature
    grad_clip: float | None = None  # no clipping in the protocol for RLPD

    def __post_init__(self):
        check_positive("bc_alpha", self.bc_alpha, allow_zero=True)
        check_positive("initial_temperature", self.initial_temperature)
        check_positive("learning_rate", self.learning_rate)


class RLPD(AbstractAgent):
    """RLPD: see the module docstring for the algorithm."""

    actor: SoftActor
    critic: AbstractCritic
    config: RLPDConfig

    def update_step(self, batch, key):
        """The critic's soft TD step (step 1: the entropy backup needs $\\log\\pi(a'\\mid s')$,
        which the default `update_step` does not see), then `actor_step`."""
        target_key, actor_key = jr.split(key)
        next_actions, next_log_probs = self.actor.sample(batch.next_observations, target_key)
        if self.config.backup_entropy:
            critic = self.config.critic
            rewards = soft_td_rewards(
                batch.rewards,
                batch.masks,
                next_log_probs,
                self.actor.alpha,
                critic.discount**critic.horizon,
            )
            batch = eqx.tree_at(lambda b: b.rewards, batch, rewards)
        critic, critic_metrics = self.critic.step(batch, jax.lax.stop_gradient(next_actions))
        agent = RLPD(self.actor, critic, self.config)
        agent, actor_metrics = agent.actor_step(batch, actor_key)
        return agent, {**critic_metrics, **actor_metrics}

    def actor_step(self, batch, key):
        regulariser = None
        if self.config.bc_alpha > 0:

            def regulariser(policy):
                log_probs = jax.vmap(policy.log_prob)(batch.observations, batch.actions)
                bc = weighted_mean(-log_probs, batch.valid)
                return self.config.bc_alpha * bc, dict(bc_loss=bc)

        actor, metrics = self.actor.step(
            self.critic.mean_values, batch.observations, key, regulariser
        )
        return RLPD(actor, self.critic, self.config), metrics

    def acting_policy(self):
        return self.actor.acting_policy()


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: RLPDConfig = RLPDConfig()
) -> RLPD:
    """A fresh RLPD agent."""
    actor_key, critic_key = jr.split(key)
    actor = SoftActor.from_config(obs_dim, action_dim, config, actor_key)
    return RLPD(actor, LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key), config)
