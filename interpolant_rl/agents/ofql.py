r"""OFQL — one-step flow Q-learning with a MeanFlow average-velocity policy.

Algorithm box, per update:

1. **Critic.** TD (double Q: $K = 2$, $\rho = 1$ gives the minimum) with
   $a' = \operatorname{clip}(z + u_{\theta^-}(z, 0, 1))$ from the EMA policy.
2. **Actor.** One step on
   $\mathcal L_{\text{MeanFlow}}(\theta) + \eta\,\big(-Q(s, a_\pi)/\mathrm{sg}\,\mathrm{mean}|Q|\big)$
   with $a_\pi = z + u_\theta(z, 0, 1)$ — one network evaluation, no backpropagation through
   time ([`meanflow_loss`][interpolant_rl.objectives.meanflow_loss],
   [`meanflow_one_step`][interpolant_rl.objectives.meanflow_one_step]); $\theta^- \leftarrow$ EMA.
3. **Act.** $a = \operatorname{clip}(z + u_\theta(z, 0, 1), -1, 1)$.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from ..nn import ema_update, TwoTimeField
from ..objectives import meanflow_loss, meanflow_one_step, meanflow_preset, normalised_q_loss
from ._core import (
    AbstractAgent,
    AbstractCritic,
    adam,
    build_network,
    check_positive,
    CriticConfig,
    LearnedCritic,
    NetworkConfig,
    Trained,
)


@dataclasses.dataclass(frozen=True)
class OFQLConfig:
    """OFQL hyperparameters (Diffusion-QL's template: eta = 1 for Gym locomotion)."""

    eta: float = 1.0  # weight of the normalised Q term
    meanflow_preset: str = "imagenet"  # MeanFlow's time law and weighting: "imagenet" / "cifar10"
    equal_time_fraction: float | None = None  # fraction of pairs with s = t; None: the preset's
    target_rate: float = 0.005  # EMA rate of the target policy (Diffusion-QL: 0.995 decay)
    actor: NetworkConfig = NetworkConfig()  # the average-velocity field u(t, s, x | s)
    critic: CriticConfig = CriticConfig(num_critics=2, rho=1.0)  # double Q, min target
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # global-norm clipping of the actor (off)

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        meanflow_preset(self.meanflow_preset)
        if self.equal_time_fraction is not None and not 0.0 <= self.equal_time_fraction <= 1.0:
            raise ValueError(
                f"equal_time_fraction must lie in [0, 1], got {self.equal_time_fraction}"
            )


def _one_step_actions(field, observations, key):
    noise = jr.normal(key, (observations.shape[0], field.action_dim))
    return jnp.clip(
        jax.vmap(lambda z, c: meanflow_one_step(field, z, c))(noise, observations), -1, 1
    )


class OFQL(AbstractAgent):
    """OFQL: see the module docstring for the algorithm."""

    field: Trained
    target_field: TwoTimeField
    critic: AbstractCritic
    config: OFQLConfig = eqx.field(static=True)

    def actor_step(self, batch, key):
        config = self.config
        mf_key, q_key = jr.split(key)
        settings = meanflow_preset(config.meanflow_preset).loss_kwargs()
        if config.equal_time_fraction is not None:
            settings["equal_time_fraction"] = config.equal_time_fraction

        def loss_fn(field):
            mf = meanflow_loss(
                LinearInterpolant(),
                field,
                batch.actions,
                batch.observations,
                mf_key,
                weights=batch.valid,
                **settings,
            )
            actions = _one_step_actions(field, batch.observations, q_key)
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, actions))
            return mf + config.eta * q_loss, dict(meanflow_loss=mf, q_loss=q_loss)

        field, metrics = self.field.minimise(loss_fn)
        target_field = ema_update(self.target_field, field.model, config.target_rate)
        return OFQL(field, target_field, self.critic, config), metrics

    def policy(self, observations, key):
        return _one_step_actions(self.field.model, observations, key)

    def target_policy(self, observations, key):
        return _one_step_actions(self.target_field, observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: OFQLConfig = OFQLConfig()
) -> OFQL:
    """A fresh OFQL agent."""
    field_key, critic_key = jr.split(key)
    field = build_network(TwoTimeField, action_dim, obs_dim, config.actor, field_key)
    return OFQL(
        Trained.create(field, adam(config.learning_rate, config.grad_clip)),
        field,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
