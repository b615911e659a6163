r"""ReBRAC — TD3+BC with the revisited design choices (a deterministic tanh actor).

Algorithm box, per update:

1. **Critic.** TD with target-policy smoothing:
   $a' = \operatorname{clip}(\pi^-(s') + \operatorname{clip}(\epsilon, -c, c), -1, 1)$,
   $\epsilon \sim \mathcal N(0, \sigma^2 I)$ ($\sigma$ = `actor_noise`), and ReBRAC's critic
   penalty $y = r + \gamma m\,(Q^-(s', a') - \beta_2\|a' - a'_{\mathcal D}\|^2)$ with
   $a'_{\mathcal D}$ the data's next action ($\beta_2$ = `critic_alpha`,
   [`critic_bc_rewards`][interpolant_rl.objectives.critic_bc_rewards]; 0 in the QAM study, whose
   Table 4 and reference code have no critic penalty; ReBRAC's own Gym values in
   [`LOCOMOTION_PROTOCOL`][interpolant_rl.agents.LOCOMOTION_PROTOCOL]).
2. **Actor**, every `actor_delay` = 2 critic updates (TD3's delayed policy update; the first
   update included). One step on $-Q(s, \pi(s))/\mathrm{sg}\,\mathrm{mean}|Q| + \alpha\|\pi(s) - a\|^2$
   ([`td3_bc_loss`][interpolant_rl.objectives.td3_bc_loss]); $\pi^- \leftarrow$ EMA of $\pi$
   (updated with the actor, so also every second step). On the other steps the actor's losses
   are reported at the unchanged actor (a forward pass, no update).
3. **Act.** $a = \pi(s) = \tanh(\mathrm{MLP}(s))$ (deterministic, as ReBRAC and TD3 evaluate;
   add exploration noise online). `act_with_noise=True` acts as the QAM reference code does,
   with the target-policy smoothing noise of step 1 added (`protocol="reference"` sets it).

TD3+BC is this agent with options (agent `td3bc`, [`td3bc_config`][interpolant_rl.agents.rebrac.td3bc_config]).
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Int, PRNGKeyArray

from .._custom_types import ScalarLike
from ..nn import ema_update, MLP
from ..objectives import critic_bc_rewards, td3_bc_loss
from ._agent import AbstractAgent, AbstractPolicy
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._optim import adam, Trained
from ._policies import DeterministicActor, DeterministicPolicy


@dataclasses.dataclass(frozen=True)
class ReBRACConfig(Hyperparameters):
    """ReBRAC hyperparameters (defaults: the QAM paper's cube-double column)."""

    alpha: float = 0.01  # actor BC weight beta_1 (scene 0.03, puzzle 0.1)
    critic_alpha: float = 0.0  # critic BC weight beta_2 of the TD target (ReBRAC on Gym: > 0)
    actor_noise: float = 0.0  # std of the target-policy smoothing noise (cube-triple 0.2)
    noise_clip: float = 0.5  # clipping c of that noise (ReBRAC: 0.5)
    actor_delay: int = (
        2  # actor and target-actor updates every this many critic updates (ReBRAC: 2)
    )
    target_rate: float = 0.005  # EMA rate of the target actor
    actor: NetworkConfig = NetworkConfig()  # 4x512 GELU
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5
    learning_rate: float = 3e-4  # Adam step size of the actor
    grad_clip: float | None = None  # no clipping in the protocol for ReBRAC
    bc_reduction: Literal["sum", "mean"] = (
        "sum"  # BC error over action dims: ReBRAC sums, TD3+BC averages
    )
    act_with_noise: bool = False  # QAM reference code: acting actions get the target noise too

    def __post_init__(self):
        if self.bc_reduction not in ("sum", "mean"):
            raise ValueError(f"bc_reduction must be 'sum' or 'mean', got {self.bc_reduction!r}")
        check_positive("alpha", self.alpha, allow_zero=True)
        check_positive("critic_alpha", self.critic_alpha, allow_zero=True)
        check_positive("actor_noise", self.actor_noise, allow_zero=True)
        check_positive("noise_clip", self.noise_clip, allow_zero=True)
        check_positive("actor_delay", self.actor_delay)


class SmoothedPolicy(AbstractPolicy):
    r"""TD3's target-policy smoothing:
    $a = \operatorname{clip}(\mu(s) + \operatorname{clip}(\epsilon, -c, c), -1, 1)$,
    $\epsilon \sim \mathcal N(0, \sigma^2 I)$.

    **Fields:** `network` (`s -> action`), `noise` $\sigma$, `noise_clip` $c$.
    """

    network: DeterministicActor
    noise: ScalarLike
    noise_clip: ScalarLike

    def __call__(self, observations, key):
        actions = jax.vmap(self.network)(observations)
        noise = jnp.clip(
            self.noise * jr.normal(key, actions.shape), -self.noise_clip, self.noise_clip
        )
        return jnp.clip(actions + noise, -1.0, 1.0)


class ReBRAC(AbstractAgent):
    """ReBRAC: see the module docstring for the algorithm."""

    actor: Trained
    target_actor: DeterministicActor
    critic: AbstractCritic
    steps: Int[Array, ""]  # critic updates so far: the actor moves when steps % actor_delay == 0
    config: ReBRACConfig

    def target_policy(self, observations, key):
        config = self.config
        return SmoothedPolicy(self.target_actor, config.actor_noise, config.noise_clip)(
            observations, key
        )

    def update_step(self, batch, key):
        """The critic's TD step with the critic penalty folded into the rewards (step 1: it needs
        the data's next actions, which the default `update_step` does not pass), then
        `actor_step`."""
        target_key, actor_key = jr.split(key)
        next_actions = jax.lax.stop_gradient(
            self.target_policy(batch.next_observations, target_key)
        )
        config = self.config
        # a Python 0 (the QAM study) compiles no penalty; a swept value is an array
        if not (isinstance(config.critic_alpha, (int, float)) and config.critic_alpha == 0):
            if batch.next_actions is None:
                raise ValueError(
                    "ReBRAC's critic penalty (critic_alpha > 0) needs the data's next actions: "
                    "a Batch from data.chunk_batch, not one without next_actions"
                )
            rewards = critic_bc_rewards(
                batch.rewards,
                batch.masks,
                next_actions,
                batch.next_actions,
                config.critic_alpha,
                config.critic.discount**config.critic.horizon,
                weights=batch.next_valid,
            )
            batch = eqx.tree_at(lambda b: b.rewards, batch, rewards)
        critic, critic_metrics = self.critic.step(batch, next_actions)
        agent = eqx.tree_at(lambda a: a.critic, self, critic)
        agent, actor_metrics = agent.actor_step(batch, actor_key)
        return agent, {**critic_metrics, **actor_metrics}

    def actor_step(self, batch, key):
        del key
        config = self.config

        def loss_fn(actor):
            actions = jax.vmap(actor)(batch.observations)
            q = self.critic.mean_values(batch.observations, actions)
            return td3_bc_loss(
                actions,
                batch.actions,
                q,
                config.alpha,
                weights=batch.valid,
                reduction=config.bc_reduction,
            )

        arrays, static = eqx.partition((self.actor, self.target_actor), eqx.is_array)

        def update(arrays):
            actor, target_actor = eqx.combine(arrays, static)
            actor, metrics = actor.minimise(loss_fn)
            target_actor = ema_update(target_actor, actor.model, config.target_rate)
            return eqx.filter((actor, target_actor), eqx.is_array), metrics

        def keep(arrays):
            return arrays, loss_fn(eqx.combine(arrays, static)[0].model)[1]

        arrays, metrics = jax.lax.cond(self.steps % config.actor_delay == 0, update, keep, arrays)
        actor, target_actor = eqx.combine(arrays, static)
        return ReBRAC(actor, target_actor, self.critic, self.steps + 1, config), metrics

    def acting_policy(self):
        config = self.config
        if config.act_with_noise:
            return SmoothedPolicy(self.actor.model, config.actor_noise, config.noise_clip)
        return DeterministicPolicy(self.actor.model)


def td3bc_config() -> ReBRACConfig:
    r"""TD3+BC (Fujimoto & Gu 2021) as ReBRAC with options, at the TD3+BC paper's values for Gym
    locomotion (its §5 and appendix): $\alpha_{\text{TD3+BC}} = 2.5$, i.e. `alpha` $= 1/2.5$
    on the BC error averaged over action dimensions (see
    [`td3_bc_loss`][interpolant_rl.objectives.td3_bc_loss]); target-policy noise 0.2 clipped at
    0.5; policy delay 2; target rate 0.005; Adam $3\cdot10^{-4}$; 2×256 networks; two critics
    without LayerNorm and the clipped double-Q target ($K = 2$, $\rho = 1$: the minimum).

    Differences from TD3+BC, kept as the library's shared parts: the actor maximises the mean
    of the two critics (TD3+BC: the first), the MLPs use GELU (TD3+BC: ReLU), and observations
    are not normalised by the dataset's mean and standard deviation (TD3+BC normalises them)."""
    return ReBRACConfig(
        alpha=1 / 2.5,
        actor_noise=0.2,
        noise_clip=0.5,
        actor_delay=2,
        target_rate=0.005,
        actor=NetworkConfig(256, 2),
        critic=CriticConfig(width=256, depth=2, layer_norm=False, num_critics=2, rho=1.0),
        learning_rate=3e-4,
        bc_reduction="mean",
    )


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: ReBRACConfig = ReBRACConfig()
) -> ReBRAC:
    """A fresh ReBRAC agent."""
    if obs_dim < 1:
        raise ValueError(f"ReBRAC's actor needs an observation: obs_dim >= 1, got {obs_dim}")
    actor_key, critic_key = jr.split(key)
    net = config.actor
    actor = DeterministicActor(
        MLP(obs_dim, action_dim, net.width, net.depth, layer_norm=net.layer_norm, key=actor_key)
    )
    return ReBRAC(
        Trained.create(actor, adam(config.learning_rate, config.grad_clip)),
        actor,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        jnp.zeros((), jnp.int32),
        config,
    )
