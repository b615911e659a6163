r"""A noise-prediction diffusion policy on the VP schedule, sampled by DDPM (QSM, DAC)."""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._ddpm import ddpm_sample
from .._interpolant import VariancePreservingInterpolant
from ..nn import NoisePrediction, VelocityField
from ._agent import AbstractPolicy
from ._config import build_network, NetworkConfig
from ._critic import AbstractCritic, LearnedCritic, Metrics
from ._optim import adam, Optimiser, Trained


class DiffusionPolicy(eqx.Module):
    r"""The policy half of QSM and DAC: a noise-prediction network
    $\hat\varepsilon_\theta(t, x \mid s)$ (a [`VelocityField`][interpolant_rl.nn.VelocityField]
    architecture, `MLP(concat[s, x, t])`, trained as an $\varepsilon$-predictor) on the
    [`VariancePreservingInterpolant`][interpolant_rl.VariancePreservingInterpolant], acting
    with the `num_steps`-step DDPM ancestral sampler
    ([`ddpm_sample`][interpolant_rl.ddpm_sample]) with the denoised action clipped to
    $[-1, 1]$ at every step.

    **Fields:** `network` (a `Trained` noise field), `interpolant`, `action_dim`, `num_steps`
    (static).
    """

    network: Trained
    interpolant: VariancePreservingInterpolant
    action_dim: int = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        obs_dim: int,
        action_dim: int,
        net: NetworkConfig,
        optimiser: Optimiser,
        interpolant: VariancePreservingInterpolant,
        num_steps: int,
        key: PRNGKeyArray,
    ) -> "DiffusionPolicy":
        """A randomly initialised noise field of size `net`."""
        network = build_network(VelocityField, action_dim, obs_dim, net, key)
        return cls(Trained.create(network, optimiser), interpolant, action_dim, num_steps)

    def minimise(self, loss_fn: Callable) -> tuple["DiffusionPolicy", Metrics]:
        """One optimiser step of the noise field on `loss_fn(field) -> (loss, metrics)`."""
        network, metrics = self.network.minimise(loss_fn)
        return dataclasses.replace(self, network=network), metrics

    def acting_policy(self) -> "DDPMPolicy":
        """The noise field alone, acting by the DDPM sampler."""
        return DDPMPolicy(self.network.model, self.interpolant, self.action_dim, self.num_steps)


class DDPMPolicy(AbstractPolicy):
    r"""$a = \operatorname{clip}(x_1, -1, 1)$, $x_1$ the end of `num_steps` DDPM ancestral steps
    ([`ddpm_sample`][interpolant_rl.ddpm_sample]) of an $\varepsilon$-prediction
    `network` from $x_0 \sim \mathcal N(0, I)$.

    **Fields:** `network`, `interpolant`, `action_dim` and `num_steps` (static).
    """

    network: VelocityField
    interpolant: VariancePreservingInterpolant
    action_dim: int = eqx.field(static=True)
    num_steps: int = eqx.field(static=True)

    def __call__(self, observations, key):
        noise_key, step_key = jr.split(key)
        noise = jr.normal(noise_key, (observations.shape[0], self.action_dim))
        denoiser = NoisePrediction(self.interpolant, self.network).denoiser

        def one(z, k, c):
            return ddpm_sample(self.interpolant, denoiser, z, k, c, num_steps=self.num_steps)

        keys = jr.split(step_key, observations.shape[0])
        return jnp.clip(jax.vmap(one)(noise, keys, observations), -1.0, 1.0)


def noisy_action_gradient(critic: AbstractCritic) -> Callable:
    r"""$\nabla_a \bar Q^-(s, a)$ of the target ensemble mean at the action as given, for one
    state and action. Unlike `AbstractCritic.target_mean_gradient` it does not clip $a$ to the
    box: QSM and DAC evaluate it at noisy actions, which leave the box and where a clipped
    critic would have zero gradient."""

    def gradient(cond, action):
        return jax.grad(lambda a: jnp.mean(critic.target_values(cond, a)))(action)

    return gradient


def diffusion_policy(obs_dim: int, action_dim: int, config, key) -> DiffusionPolicy:
    """A fresh noise-prediction policy on the config's VP schedule, from the actor, schedule
    and optimiser fields that the configs of QSM, DAC and Diffusion-QL share."""
    return DiffusionPolicy.create(
        obs_dim,
        action_dim,
        config.actor,
        adam(config.learning_rate, config.grad_clip, config.clip_mode),
        VariancePreservingInterpolant(config.beta_min, config.beta_max),
        config.diffusion_steps,
        key,
    )


def create_diffusion_agent(agent_class: type, obs_dim: int, action_dim: int, key, config):
    """`agent_class(diffusion, critic, config)` with a fresh `diffusion_policy` and a fresh
    [`LearnedCritic`][interpolant_rl.agents.LearnedCritic]: the construction QSM and DAC
    share."""
    actor_key, critic_key = jr.split(key)
    diffusion = diffusion_policy(obs_dim, action_dim, config, actor_key)
    critic = LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key)
    return agent_class(diffusion, critic, config)
