r"""DSRL — diffusion steering via reinforcement learning: SAC in the noise space of a behaviour
flow (the noise-aliased variant, DSRL-NA).

The behaviour flow turns noise into actions; instead of changing its weights, DSRL learns which
noise to feed it. With $\bar f_\beta$ the EMA copy of the behaviour flow and
$\Phi(s, z) = \operatorname{clip}(\mathrm{ODE}_{\bar f_\beta}(s, z), -1, 1)$ its 10-step Euler map
from noise to action, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD of the action-space critic $Q$ as usual, with $a' = \Phi(s', z')$,
   $z' \sim \pi_w(\cdot\mid s')$.
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on $(s, a)$;
   $\bar f_\beta \leftarrow$ EMA of $f_\beta$ (the slowly moving copy keeps $\Phi$ stable online).
3. **Noise critic (distillation).** $Q_w \leftarrow$ one regression step of
   $\operatorname{mean}_{i,k}\big(Q_{w,k}(s_i, z_i) - \mathrm{sg}\,Q_k(s_i, \Phi(s_i, z_i))\big)^2$,
   $z_i \sim \mathcal N(0, I)$: the noise-space critic learns the action critic's value of
   whatever action each noise produces (member $k$ on member $k$; the target of every member
   is a one-member critic's value, e.g. a [`FixedCritic`][interpolant_rl.agents.FixedCritic]'s,
   or the ensemble mean of a critic of another size).
4. **Noise policy.** SAC ([`SoftActor`][interpolant_rl.agents.SoftActor]) on the noise
   critic: $z = \kappa\,e$, $e = \tanh(\mu_w(s) + \sigma_w(s)\varepsilon) \in (-1, 1)^d$ with the
   noise scale $\kappa$, actor loss $\operatorname{mean}[\alpha\log\pi_w(e\mid s) - \bar Q_w(s, \kappa e)]$,
   temperature tuned to the target entropy $-d$ (in the unit box of $e$).
5. **Act.** $a = \Phi(s, \kappa\,e)$, $e \sim \pi_w(\cdot\mid s)$: every noise, hence every
   action, stays in the box $\|z\|_\infty \le \kappa$ around the flow's noise origin.
"""

import dataclasses

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..nn import CriticEnsemble, ema_update, VelocityField
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import flow_matching_step, FlowPolicy, LatentNoisePolicy
from ._optim import adam, Trained
from ._soft_actor import SoftActor


@dataclasses.dataclass(frozen=True)
class DSRLConfig(Hyperparameters):
    """DSRL hyperparameters (defaults: the QAM paper's cube-double column)."""

    noise_scale: float = (
        1.0  # kappa: noises z = kappa * e, e in (-1, 1)^d (cube-triple 1.4, scene 0.4)
    )
    flow_steps: int = 10  # Euler steps of the noise-to-action map
    flow_rate: float = 0.005  # EMA rate of the behaviour flow's copy that maps noise to action
    initial_temperature: float = 1.0  # starting SAC temperature of the noise policy
    target_entropy_per_dim: float = -1.0  # target entropy = this * action_dim (DSRL's SAC: -d)
    actor: NetworkConfig = NetworkConfig()  # behaviour flow and noise policy: 4x512 GELU
    critic: CriticConfig = CriticConfig()  # action critic; the noise critic is built the same
    learning_rate: float = 3e-4  # Adam step size of the flow, the noise policy and temperature
    grad_clip: float | None = None  # no clipping in the protocol for DSRL

    def __post_init__(self):
        check_positive("noise_scale", self.noise_scale)
        check_positive("flow_steps", self.flow_steps)
        check_positive("initial_temperature", self.initial_temperature)
        check_positive("learning_rate", self.learning_rate)
        if not 0.0 <= self.flow_rate <= 1.0:
            raise ValueError(f"flow_rate must lie in [0, 1], got {self.flow_rate}")


class DSRL(AbstractAgent):
    """DSRL: see the module docstring for the algorithm.

    **Fields:** `behaviour` (the trained flow $f_\\beta$), `flow` (its EMA copy $\\bar f_\\beta$,
    the noise-to-action map), `noise_actor` (the SAC noise policy), `noise_critic` (a `Trained`
    [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble] $Q_w(s, z)$), `critic`, `config`.
    """

    behaviour: Trained
    flow: VelocityField
    noise_actor: SoftActor
    noise_critic: Trained
    critic: AbstractCritic
    config: DSRLConfig

    def noise_actions(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch action_dim"]:
        r"""Noises $z = \kappa\,e$, $e \sim \pi_w(\cdot\mid s)$: $\|z\|_\infty < \kappa$."""
        return self.config.noise_scale * self.noise_actor.sample(observations, key)[0]

    def actions_from_noise(
        self, observations: Float[Array, "batch obs_dim"], noise: Float[Array, "batch action_dim"]
    ) -> Float[Array, "batch action_dim"]:
        r"""$\Phi(s, z) = \operatorname{clip}(\mathrm{ODE}_{\bar f_\beta}(s, z), -1, 1)$."""
        return self.flow_policy().from_noise(observations, noise)

    def flow_policy(self) -> FlowPolicy:
        """$\\Phi$: the frozen behaviour flow as a policy of its noise."""
        return FlowPolicy(self.flow, self.flow.action_dim, self.config.flow_steps)

    def distillation_targets(
        self, observations: Float[Array, "batch obs_dim"], noise: Float[Array, "batch action_dim"]
    ) -> Float[Array, "batch num_critics"]:
        r"""The noise critic's regression targets $Q_k(s, \Phi(s, z))$ (the action critic's
        online members), shape `(batch, K)`."""
        return self.critic.batch_values(observations, self.actions_from_noise(observations, noise))

    def actor_step(self, batch, key):
        bc_key, noise_key, actor_key = jr.split(key, 3)
        observations = batch.observations
        scale = self.config.noise_scale

        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, bc_key)
        flow = ema_update(self.flow, behaviour.model, self.config.flow_rate)
        agent = dataclasses.replace(self, behaviour=behaviour, flow=flow)

        noise = jr.normal(noise_key, batch.actions.shape)
        targets = jax.lax.stop_gradient(agent.distillation_targets(observations, noise))
        if targets.shape[-1] not in (1, self.noise_critic.model.num_critics):
            targets = jnp.mean(targets, axis=-1, keepdims=True)  # another size: the mean

        def distillation_loss(ensemble):
            values = ensemble.batch_values(observations, noise)  # member k against target k
            loss = jnp.mean((values - targets) ** 2)
            return loss, loss

        noise_critic, distil_loss = self.noise_critic.minimise(distillation_loss)

        def noise_q(obs, unit_noise):
            values = noise_critic.model.batch_values(obs, scale * unit_noise)
            return jnp.mean(values, axis=-1)

        noise_actor, metrics = self.noise_actor.step(noise_q, observations, actor_key)
        agent = dataclasses.replace(agent, noise_actor=noise_actor, noise_critic=noise_critic)
        return agent, dict(flow_matching_loss=bc_loss, noise_critic_loss=distil_loss, **metrics)

    def acting_policy(self):
        """$\\Phi(s, z)$ with $z$ = `noise_actions(s, key)`."""
        return LatentNoisePolicy(
            self.noise_actor.acting_policy(), self.flow_policy(), self.config.noise_scale
        )


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: DSRLConfig = DSRLConfig()
) -> DSRL:
    """A fresh DSRL agent."""
    flow_key, actor_key, noise_critic_key, critic_key = jr.split(key, 4)
    critic = config.critic
    behaviour = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    noise_critic = CriticEnsemble(
        action_dim,
        obs_dim,
        critic.width,
        critic.depth,
        num_critics=critic.num_critics,
        layer_norm=critic.layer_norm,
        key=noise_critic_key,
    )
    return DSRL(
        Trained.create(behaviour, adam(config.learning_rate, config.grad_clip)),
        behaviour,
        SoftActor.from_config(obs_dim, action_dim, config, actor_key),
        Trained.create(noise_critic, adam(critic.learning_rate, critic.grad_clip)),
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
