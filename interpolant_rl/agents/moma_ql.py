r"""MoMa QL — moment-matching Q-learning with a one-jump (or few-jump) sampler.

Algorithm box, per update on a batch of $B = G\cdot M$ pairs:

1. **Critic.** TD (double Q: $K = 2$, $\rho = 1$ gives the minimum of the two) with
   $a' = \operatorname{clip}(f_{\theta^-}(z; 0 \to 1))$ from the EMA sampler.
2. **Actor.** One step on
   $\mathcal L_{\text{MMD}}(\theta) + \eta\,\big(-Q(s, a_\pi)/\mathrm{sg}\,\mathrm{mean}|Q|\big)$:
   the MMD between jumps $t \to s$ of the online sampler and $r \to s$ of the EMA target on
   groups of $M$ pairs sharing the times
   ([`moment_matching_loss`][interpolant_rl.objectives.moment_matching_loss]), plus the
   normalised Q term through $a_\pi$ from `num_jumps` jumps
   ([`multi_jump_sample`][interpolant_rl.objectives.multi_jump_sample]);
   $\theta^- \leftarrow$ EMA of $\theta$.
3. **Act.** $a = \operatorname{clip}(f_\theta(z; 0 \to 1), -1, 1)$ in `num_jumps` evaluations.
"""

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from .._kernels import LaplaceKernel, RBFKernel
from ..nn import ema_update, TwoTimeField
from ..objectives import (
    ConstantBandwidth,
    MedianBandwidth,
    moment_matching_loss,
    multi_jump_sample,
    normalised_q_loss,
    PreconditionedJump,
    UniformJumpTimes,
)
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
class MoMaQLConfig:
    """MoMa QL hyperparameters (Diffusion-QL's template: eta = 1 for Gym locomotion)."""

    eta: float = 1.0  # weight of the normalised Q term (antmaze 0.5-4.5, kitchen 0.005)
    particles: int = 4  # M particles per group (inductive moment matching: 4)
    num_jumps: int = 1  # jumps from noise to action, for acting and for the Q term
    gap: float = 0.1  # r = t + gap * (s - t): the target's shorter jump
    laplace_kernel: bool = False  # Laplace kernel (inductive moment matching) instead of RBF
    unbiased: bool = True  # U-statistic (the seed); False: V-statistic
    bandwidth: str | float = "median"  # "median" heuristic per group, "sqrt_dim", or a fixed value
    shared_noise: bool = False  # x_r from the same noises as x_t (IMM's pairs)
    grid_fraction: float = 0.0
    sigma_data: float | None = 0.5
    target_rate: float = 0.005  # EMA rate of the target sampler (Diffusion-QL: 0.995 decay)
    actor: NetworkConfig = NetworkConfig()  # the jump field G(t, s, x | s)
    critic: CriticConfig = CriticConfig(num_critics=2, rho=1.0)  # double Q, min target
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # global-norm clipping of the actor (off)

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("particles", self.particles)
        check_positive("num_jumps", self.num_jumps)
        if self.unbiased and self.particles < 2:
            raise ValueError("the unbiased MMD needs particles >= 2")
        UniformJumpTimes(self.gap)


class MoMaQL(AbstractAgent):
    """MoMa QL: see the module docstring for the algorithm."""

    field: Trained
    target_field: TwoTimeField
    critic: AbstractCritic
    config: MoMaQLConfig = eqx.field(static=True)

    def _jump_field(self, network):
        if self.config.sigma_data is None:
            return network
        return PreconditionedJump(LinearInterpolant(), network, self.config.sigma_data)

    def _sample(self, field, observations, key):
        noise = jr.normal(key, (observations.shape[0], field.action_dim))
        field = self._jump_field(field)
        actions = jax.vmap(
            lambda z, c: multi_jump_sample(LinearInterpolant(), field, z, c, self.config.num_jumps)
        )(noise, observations)
        return jnp.clip(actions, -1.0, 1.0)

    def actor_step(self, batch, key):
        config = self.config
        mmd_key, q_key = jr.split(key)
        action_dim = batch.actions.shape[-1]
        kernel = LaplaceKernel if config.laplace_kernel else RBFKernel
        if config.bandwidth == "median":
            bandwidth = MedianBandwidth()
        elif config.bandwidth == "sqrt_dim":
            bandwidth = ConstantBandwidth(math.sqrt(action_dim))
        else:
            bandwidth = ConstantBandwidth(float(config.bandwidth))

        def loss_fn(field):
            mmd = moment_matching_loss(
                LinearInterpolant(),
                self._jump_field(field),
                self._jump_field(self.target_field),
                batch.actions[:, None],
                batch.observations,
                mmd_key,
                noises=config.particles,
                times=UniformJumpTimes(
                    config.gap, grid_fraction=config.grid_fraction, num_jumps=config.num_jumps
                ),
                kernel=kernel,
                bandwidth=bandwidth,
                unbiased=config.unbiased,
                shared_noise=config.shared_noise,
                weights=batch.valid,
            )
            policy_actions = self._sample(field, batch.observations, q_key)
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, policy_actions))
            return mmd + config.eta * q_loss, dict(mmd_loss=mmd, q_loss=q_loss)

        field, metrics = self.field.minimise(loss_fn)
        target_field = ema_update(self.target_field, field.model, config.target_rate)
        return MoMaQL(field, target_field, self.critic, config), metrics

    def policy(self, observations, key):
        return self._sample(self.field.model, observations, key)

    def target_policy(self, observations, key):
        return self._sample(self.target_field, observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: MoMaQLConfig = MoMaQLConfig()
) -> MoMaQL:
    """A fresh MoMa QL agent."""
    field_key, critic_key = jr.split(key)
    field = build_network(TwoTimeField, action_dim, obs_dim, config.actor, field_key)
    return MoMaQL(
        Trained.create(field, adam(config.learning_rate, config.grad_clip)),
        field,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
