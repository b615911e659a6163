r"""Diffusion-QL (Wang, Hunt & Zhou 2023) — a DDPM policy trained by behaviour cloning plus the
normalised critic value of actions sampled through its whole denoising chain; and
Diffusion-BC, the same policy with the value term off.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the clipped double-Q target ($K = 2$, $\rho = 1$: the minimum) with the
   next action $a' \sim \pi_{\theta^-}(\cdot\mid s')$ sampled from the EMA policy (the
   [`LearnedCritic`][interpolant_rl.agents.LearnedCritic] every Q-learning agent here shares).
2. **Actor.** One step on
   $$\mathcal L(\theta) = \mathcal L_{\text{BC}}(\theta)
     + \eta\,\Big(-\frac{\operatorname{mean}_i \bar Q(s_i, a^\theta_i)}{\mathrm{sg}\operatorname{mean}_i|\bar Q(s_i, a^\theta_i)|}\Big),$$
   $\mathcal L_{\text{BC}}$ the $\varepsilon$-prediction loss on the VP schedule at the $T$
   sampler times ([`denoising_loss`][interpolant_rl.objectives.denoising_loss]), and
   $a^\theta$ the $T$-step DDPM sample of the current policy with the gradient taken through
   the whole chain ([`normalised_q_loss`][interpolant_rl.objectives.normalised_q_loss], the Q
   term MoMa QL and OFQL share); then $\theta^- \leftarrow$ EMA of $\theta$.
   The BC term's times are uniform on the grid (every paper's); `time_sampler=` draws them
   from an adaptive law instead (`"gradient_norm"`, ...; importance weighted, so the objective
   is the same; [`behaviour_time_sampler`][interpolant_rl.agents.behaviour_time_sampler]), whose
   state the agent carries and adapts after every actor step.
3. **Act.** $N = 50$ DDPM samples per state, the one with the largest $\min_k Q_k$
   (`action_selection="max"`, [`BestOfN`][interpolant_rl.agents.BestOfN]); `"softmax"` draws
   it with probabilities $\operatorname{softmax}_j \min_k Q_k(s, a_j)$, as the public
   reference code does; `"sample"` acts with one DDPM sample.

**Diffusion-BC** (agent `diffusion_bc`, [`diffusion_bc_config`][interpolant_rl.agents.diffusion_ql.diffusion_bc_config])
is $\eta = 0$ with `"sample"` acting: pure behaviour cloning of the DDPM policy, its exact
posterior sampler; with nothing reading $Q$ it holds no critic (a
[`FixedCritic`][interpolant_rl.agents.FixedCritic] of zeros, whose TD step does nothing).

Defaults: Diffusion-QL's Gym-locomotion setting — $\eta = 1$, an EMA policy of rate 0.005
(decay 0.995), Adam $3\cdot10^{-4}$, batch 256, the evaluated action picked among 50 samples
(`../shared/reference/protocols.md`'s transcription); $T = 5$ on the VP schedule
($\beta_{\min} = 0.1$, $\beta_{\max} = 10$), 3 × 256 MLPs and two critics from the paper's
implementation details, which that transcription does not hold. How the 50 are picked is not in
the transcription either: the default takes the maximum of the critics' minimum (the issue's
reading of the paper), the public code's softmax draw is `action_selection="softmax"`.
Differences from its public code:
the EMA of the policy moves every update at rate 0.005 (the code: every 5 updates at rate
0.005 after 1000 warm-up updates), the MLPs use GELU (the code: Mish), no gradient-norm
clipping (the code clips per task), the actor's value term uses the mean of the two critics
(the code: the first, normalised by the second), and the DDPM time grid and posterior are the
library's continuous VP interpolant at $t_k = k/T$ (the code: the discrete VP $\beta$
schedule, the same interpolant at those times).
"""

import dataclasses
from typing import Literal

import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import VariancePreservingInterpolant
from ..nn import ema_update, VelocityField
from ..objectives import (
    AbstractTimeSampler,
    denoising_errors,
    denoising_loss,
    normalised_q_loss,
    on_grid,
    UniformTimes,
)
from ._agent import AbstractAgent, AbstractPolicy
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic, no_critic
from ._diffusion import DDPMPolicy, diffusion_policy, DiffusionPolicy
from ._optim import check_optimiser, ClipMode
from ._policies import select_among_samples
from ._time_sampled import behaviour_time_sampler, minimise_and_adapt, TimeSamplerName


Selection = Literal["max", "softmax", "sample"]


@dataclasses.dataclass(frozen=True)
class DiffusionQLConfig(Hyperparameters):
    """Diffusion-QL hyperparameters (defaults: its Gym-locomotion setting, see the module
    docstring)."""

    eta: float = 1.0  # weight of the normalised Q term (Gym: 1; 0: Diffusion-BC)
    diffusion_steps: int = 5  # DDPM steps T (Diffusion-QL: 5)
    beta_min: float = 0.1  # VP noise rate at the data end
    beta_max: float = 10.0  # VP noise rate at the noise end
    num_candidates: int = 50  # DDPM samples per state when acting by value
    action_selection: Selection = "max"  # "max" of min-Q; "softmax" (reference code); "sample"
    target_rate: float = 0.005  # EMA rate of the policy used for the TD target's next action
    actor: NetworkConfig = NetworkConfig(256, 3)  # the noise-prediction network
    critic: CriticConfig = CriticConfig(
        width=256, depth=3, layer_norm=False, num_critics=2, rho=1.0
    )  # two critics, the minimum in the target
    learning_rate: float = 3e-4  # Adam step size of the actor
    grad_clip: float | None = None  # no clipping
    clip_mode: ClipMode = "elementwise"
    time_sampler: TimeSamplerName = "uniform"  # law of the BC term's DDPM times (issue 16)

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        behaviour_time_sampler(self.time_sampler)  # raises for an unknown name
        check_positive("diffusion_steps", self.diffusion_steps)
        check_positive("num_candidates", self.num_candidates)
        if self.action_selection not in ("max", "softmax", "sample"):
            raise ValueError(
                f"action_selection must be 'max', 'softmax' or 'sample', got {self.action_selection!r}"
            )
        check_positive("target_rate", self.target_rate)
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        VariancePreservingInterpolant(self.beta_min, self.beta_max)

    @property
    def reads_q(self) -> bool:
        """Whether anything reads the critic (training with $\\eta > 0$, or acting by value)."""
        return self.eta > 0 or self.action_selection != "sample"


def diffusion_bc_config() -> DiffusionQLConfig:
    """Diffusion-BC: Diffusion-QL's policy with $\\eta = 0$, acting with one DDPM sample."""
    return DiffusionQLConfig(eta=0.0, action_selection="sample")


class DiffusionQL(AbstractAgent):
    """Diffusion-QL (and Diffusion-BC): see the module docstring for the algorithm."""

    diffusion: DiffusionPolicy
    target_network: VelocityField
    critic: AbstractCritic
    config: DiffusionQLConfig
    time_sampler: AbstractTimeSampler = UniformTimes()  # of the BC term's times (its state)

    def _ddpm(self, network) -> DDPMPolicy:
        diffusion = self.diffusion
        return DDPMPolicy(network, diffusion.interpolant, diffusion.action_dim, diffusion.num_steps)

    def target_policy(self, observations, key):
        return self._ddpm(self.target_network)(observations, key)

    def actor_step(self, batch, key):
        config = self.config
        bc_key, sample_key = jr.split(key)

        def loss_fn(network):
            bc = denoising_loss(
                self.diffusion.interpolant,
                network,
                batch.actions,
                batch.observations,
                bc_key,
                num_steps=config.diffusion_steps,
                weights=batch.valid,
                time_sampler=self.time_sampler,
            )
            if config.eta == 0:
                return bc, dict(bc_loss=bc)
            actions = self._ddpm(network)(batch.observations, sample_key)  # through the chain
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, actions))
            return bc + config.eta * q_loss, dict(bc_loss=bc, q_loss=q_loss)

        interpolant, steps = self.diffusion.interpolant, config.diffusion_steps

        def per_sample(network, actions, observations, times, noise):
            # a probe time tau stands for the grid time the loss trains at
            grid = on_grid(times, steps)
            return denoising_errors(interpolant, network, actions, observations, grid, noise)

        network, time_sampler, metrics = minimise_and_adapt(
            self.diffusion.network,
            self.time_sampler,
            loss_fn,
            per_sample,
            batch,
            jr.fold_in(key, 1),
        )
        diffusion = dataclasses.replace(self.diffusion, network=network)
        target = ema_update(self.target_network, network.model, config.target_rate)
        return (
            dataclasses.replace(
                self, diffusion=diffusion, target_network=target, time_sampler=time_sampler
            ),
            metrics,
        )

    def acting_policy(self) -> AbstractPolicy:
        return select_among_samples(
            self.diffusion.acting_policy(),
            self.critic.value_function(),
            self.config.action_selection,
            self.config.num_candidates,
        )


def create(
    obs_dim: int,
    action_dim: int,
    key: PRNGKeyArray,
    config: DiffusionQLConfig = DiffusionQLConfig(),
) -> DiffusionQL:
    """A fresh Diffusion-QL (or, with `diffusion_bc_config()`, Diffusion-BC) agent."""
    actor_key, critic_key = jr.split(key)
    diffusion = diffusion_policy(obs_dim, action_dim, config, actor_key)
    if config.reads_q:
        critic = LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key)
    else:  # Diffusion-BC: nothing reads Q
        critic = no_critic(config.critic.horizon, config.critic.discount)
    time_sampler = behaviour_time_sampler(config.time_sampler)
    return DiffusionQL(diffusion, diffusion.network.model, critic, config, time_sampler)
