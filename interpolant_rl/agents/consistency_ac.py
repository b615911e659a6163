r"""Consistency-AC (Ding & Jin, ICLR 2024) — a consistency policy trained by consistency
training plus the normalised critic value of its few-step samples; and Consistency-BC, the
same policy with the value term off.

The policy is a [`ConsistencyFunction`][interpolant_rl.nn.ConsistencyFunction]
$f_\theta(t, x \mid s)$ on the variance-exploding Karras noise levels $\sigma(t)$ (the
library's time: $t = 0$ is $\sigma_{\max} = 80$, $t = 1$ is $\epsilon = 0.002$, see
[`KarrasSchedule`][interpolant_rl.KarrasSchedule]), with the boundary parametrisation that makes
$f_\theta(1, x \mid s) = x$.

Algorithm box, per update $k$ on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the clipped double-Q target ($K = 2$, $\rho = 1$: the minimum) with the
   next action $a' \sim \pi_{\theta^-}(\cdot\mid s')$ sampled from the EMA policy (the
   [`LearnedCritic`][interpolant_rl.agents.LearnedCritic] Diffusion-QL uses).
2. **Actor.** $N = N(k)$ noise levels ([`consistency_scales`][interpolant_rl.objectives.consistency_scales],
   Song et al. 2023's schedule), then one step on
   $$\mathcal L(\theta) = \mathcal L_{\text{CT}}(\theta; \theta^-, N)
     + \eta\,\Big(-\frac{\operatorname{mean}_i \bar Q(s_i, a^\theta_i)}{\mathrm{sg}\operatorname{mean}_i|\bar Q(s_i, a^\theta_i)|}\Big),$$
   $\mathcal L_{\text{CT}}$ the consistency-training loss against the EMA function
   $f_{\theta^-}$ ([`consistency_training_loss`][interpolant_rl.objectives.consistency_training_loss],
   optionally with the loss scaling $\lambda = c/\Delta\sigma$), and $a^\theta$ the
   `num_steps`-step consistency sample of the current policy
   ([`consistency_sample`][interpolant_rl.consistency_sample], gradient through every step),
   normalised as in Diffusion-QL ([`normalised_q_loss`][interpolant_rl.objectives.normalised_q_loss]);
   then $\theta^- \leftarrow$ EMA of $\theta$.
3. **Act.** $N_a = 50$ consistency samples per state, one drawn with probabilities
   $\operatorname{softmax}_j \min_k Q_k(s, a_j)$ (`action_selection="softmax"`); `"max"` takes
   the best, `"sample"` acts with one sample.

**Consistency-BC** (agent `consistency_bc`,
[`consistency_bc_config`][interpolant_rl.agents.consistency_ac.consistency_bc_config]) is
$\eta = 0$ acting with one sample, and no critic.

**Sources of the defaults.** Only the abstract of Ding & Jin's paper could be read here (it
names the loss scaling $\lambda(\tau_n, \tau_{n+1}; k)$ and the Consistency-BC/AC pair); every
Ding & Jin value below is from their public code (`offline.py`, `agents/ql_consistency.py`,
`agents/consistency.py`) and is **unverified against the paper's text**:

- Gym-locomotion: 2 sampling steps ($T = 2$ for every Gym task except walker2d-medium, $T = 5$),
  sampled at the noise levels $\operatorname{linspace}(80, 2, T)$ (`sampling_sigma_min = 2`);
  $\eta = 1$ (hopper-medium and the medium-replay hopper/walker: 0.1); the loss scaling
  $100/\Delta\sigma$ on the medium-expert tasks (the Gym BC block of MoMa QL's table), off on
  medium (its offline-RL block); Adam $3\cdot10^{-4}$, batch 256; 3 × 256 MLPs and Diffusion-QL's
  two critics; EMA decay 0.995; squared-L2 metric; 50 candidates drawn by a softmax of the
  critics' minimum.
- $N(k)$: $s_0 = 2$, $s_1 = 150$ over $K = 50\,000$ updates, restarting every $K$ updates (the
  code's step counter is local to each 50-epoch training call of 50 000 updates).

From Song et al. 2023 (and Karras et al. 2022), which the code also follows: $\epsilon = 0.002$,
$\sigma_{\max} = 80$, $\rho = 7$, $\sigma_{\text{data}} = 0.5$, the skip scalings, the $N(k)$
formula ($s_0 = 2$, $s_1 = 150$ are Song et al.'s CIFAR-10 consistency-training values).

Differences from the public code: its $N(k)$ formula is Song et al.'s at $s_1 = 149$
(`final_scales=149` reproduces it); the network reads $t \in [0, 1]$, not a sinusoidal
embedding of $\sigma$, and GELU, not Mish; the EMA moves every update (the code: every 5
updates after 1000); no gradient-norm clipping and no cosine learning-rate decay (the code:
per-task clipping, decay with `--lr_decay`); the Q term uses the mean of the two critics (the
code: one critic normalised by the other, chosen at random); the softmax draw scores the
online critics (the code: the target critics); Song et al.'s adaptive EMA $\mu(k)$ is not used
(neither does the code by default).
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Int, PRNGKeyArray

from .._consistency import consistency_sample, KarrasSchedule
from ..nn import ConsistencyFunction, ema_update, VelocityField
from ..objectives import consistency_scales, consistency_training_loss, normalised_q_loss
from ._agent import AbstractAgent, AbstractPolicy
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic, no_critic
from ._optim import adam, check_optimiser, ClipMode, Trained
from ._policies import select_among_samples


Selection = Literal["max", "softmax", "sample"]


@dataclasses.dataclass(frozen=True)
class ConsistencyACConfig(Hyperparameters):
    """Consistency-AC hyperparameters (defaults: the Gym-locomotion setting of Ding & Jin's
    public code, unverified against the paper; see the module docstring)."""

    eta: float = 1.0  # weight of the normalised Q term (code, Gym medium: 1; 0: Consistency-BC)
    num_steps: int = 2  # consistency sampling steps T (code: 2; walker2d-medium 5)
    sampling_sigma_min: float = 2.0  # sampling noise levels linspace(sigma_max, this, T) (code)
    sigma_min: float = 0.002  # epsilon, where f is the identity (Song et al. 2023)
    sigma_max: float = 80.0  # largest noise level (Song et al. 2023)
    karras_rho: float = 7.0  # Karras grid exponent rho (Song et al. 2023; not the critic's rho)
    sigma_data: float = 0.5  # data scale of the skip scalings (Song et al. 2023)
    scale_input: bool = False  # network reads x / sqrt(sigma^2 + sigma_data^2) (code: no c_in)
    initial_scales: int = 2  # s0 of N(k) (Song et al. CIFAR-10 CT; code)
    final_scales: int = 150  # s1 of N(k) (Song et al.; the code's formula is this at 149)
    schedule_updates: int = 50_000  # K of N(k) (code: 50 epochs x 1000 updates)
    schedule_restarts: bool = True  # N(k) restarts every K updates (code); False: held at s1 + 1
    interval_weight: float | None = None  # loss scaling c / dsigma (code: 100 on medium-expert)
    num_candidates: int = 50  # consistency samples per state when acting by value
    action_selection: Selection = "softmax"  # code: softmax of min-Q; "max"; "sample"
    target_rate: float = 0.005  # EMA rate of the policy (consistency target, TD next action)
    actor: NetworkConfig = NetworkConfig(256, 3)  # the consistency network F
    critic: CriticConfig = CriticConfig(
        width=256, depth=3, layer_norm=False, num_critics=2, rho=1.0
    )  # Diffusion-QL's two critics, the minimum in the target
    learning_rate: float = 3e-4  # Adam step size of the actor
    grad_clip: float | None = None  # no clipping (the code clips per task)
    clip_mode: ClipMode = "elementwise"

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("num_steps", self.num_steps)
        check_positive("sigma_data", self.sigma_data)
        check_positive("schedule_updates", self.schedule_updates)
        check_positive("num_candidates", self.num_candidates)
        check_positive("target_rate", self.target_rate)
        if self.interval_weight is not None:
            check_positive("interval_weight", self.interval_weight)
        if not 2 <= self.initial_scales <= self.final_scales:
            raise ValueError(
                "need 2 <= initial_scales <= final_scales, got "
                f"{self.initial_scales} and {self.final_scales}"
            )
        if not self.sigma_min < self.sampling_sigma_min <= self.sigma_max:
            raise ValueError(
                "sampling_sigma_min must lie in (sigma_min, sigma_max], got "
                f"{self.sampling_sigma_min}"
            )
        if self.action_selection not in ("max", "softmax", "sample"):
            raise ValueError(
                f"action_selection must be 'max', 'softmax' or 'sample', got {self.action_selection!r}"
            )
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        KarrasSchedule(self.sigma_min, self.sigma_max, self.karras_rho)  # checks the noise levels

    @property
    def schedule(self) -> KarrasSchedule:
        """The Karras noise levels $\\sigma(t)$ of this configuration."""
        return KarrasSchedule(self.sigma_min, self.sigma_max, self.karras_rho)

    @property
    def sampling_times(self) -> tuple[float, ...]:
        """The sampler's times: $t(\\sigma)$ at $\\operatorname{linspace}(\\sigma_{\\max},$
        `sampling_sigma_min`, `num_steps`$)$ (just $\\sigma_{\\max}$ for one step)."""
        if self.num_steps == 1:
            return (0.0,)
        top, bottom = (
            self.sigma_max ** (1 / self.karras_rho),
            self.sigma_min ** (1 / self.karras_rho),
        )
        step = (self.sampling_sigma_min - self.sigma_max) / (self.num_steps - 1)
        sigmas = [self.sigma_max + k * step for k in range(self.num_steps)]
        return tuple(
            (s ** (1 / self.karras_rho) - top) / (bottom - top) + 0.0 for s in sigmas
        )  # t(sigma)

    @property
    def reads_q(self) -> bool:
        """Whether anything reads the critic (training with $\\eta > 0$, or acting by value)."""
        return self.eta > 0 or self.action_selection != "sample"


def consistency_bc_config() -> ConsistencyACConfig:
    """Consistency-BC: $\\eta = 0$, one consistency sample per action, and the loss scaling
    $100/\\Delta\\sigma$ of the code's medium-expert setting (MoMa QL's Gym BC block)."""
    return ConsistencyACConfig(eta=0.0, action_selection="sample", interval_weight=100.0)


class ConsistencyPolicy(AbstractPolicy):
    r"""$a = \operatorname{clip}(a_{K-1}, -1, 1)$, the end of the multistep consistency sampler
    ([`consistency_sample`][interpolant_rl.consistency_sample]) of `function` on `times`, from
    $x_0 \sim \mathcal N(0, I)$.

    **Fields:** `function` (a [`ConsistencyFunction`][interpolant_rl.nn.ConsistencyFunction]),
    `times` and `action_dim` (static).
    """

    function: ConsistencyFunction
    times: tuple[float, ...] = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)

    def unclipped(self, observations, key):
        """The sampler's actions before the clip (what the Q term differentiates)."""
        noise_key, step_key = jr.split(key)
        noise = jr.normal(noise_key, (observations.shape[0], self.action_dim))
        schedule = self.function.schedule

        def one(z, k, c):
            return consistency_sample(schedule, self.function, z, k, c, times=self.times)

        keys = jr.split(step_key, observations.shape[0])
        return jax.vmap(one)(noise, keys, observations)

    def __call__(self, observations, key):
        return jnp.clip(self.unclipped(observations, key), -1.0, 1.0)


class ConsistencyAC(AbstractAgent):
    """Consistency-AC (and Consistency-BC): see the module docstring for the algorithm.

    **Fields:** `actor` (a `Trained` [`ConsistencyFunction`][interpolant_rl.nn.ConsistencyFunction]),
    `target` (its EMA), `critic`, `step` (the update counter $k$ of $N(k)$), `config` (static).
    """

    actor: Trained
    target: ConsistencyFunction
    critic: AbstractCritic
    step: Int[Array, ""]
    config: ConsistencyACConfig

    def _sampler(self, function: ConsistencyFunction) -> ConsistencyPolicy:
        return ConsistencyPolicy(
            function, self.config.sampling_times, self.target.network.action_dim
        )

    def num_scales(self) -> Int[Array, ""]:
        """$N(k)$ at this agent's update counter."""
        config = self.config
        step = self.step
        if config.schedule_restarts:
            step = step % config.schedule_updates
        return consistency_scales(
            step, config.schedule_updates, config.initial_scales, config.final_scales
        )

    def target_policy(self, observations, key):
        return self._sampler(self.target)(observations, key)

    def actor_step(self, batch, key):
        config = self.config
        bc_key, sample_key = jr.split(key)
        num_scales = self.num_scales()

        def loss_fn(function):
            bc = consistency_training_loss(
                function,
                self.target,
                function.schedule,
                batch.actions,
                batch.observations,
                bc_key,
                num_scales=num_scales,
                interval_weight=config.interval_weight,
                weights=batch.valid,
            )
            metrics = dict(bc_loss=bc, num_scales=num_scales.astype(jnp.float32))
            if config.eta == 0:
                return bc, metrics
            actions = self._sampler(function)(batch.observations, sample_key)  # through the chain
            q_loss = normalised_q_loss(self.critic.mean_values(batch.observations, actions))
            return bc + config.eta * q_loss, dict(metrics, q_loss=q_loss)

        actor, metrics = self.actor.minimise(loss_fn)
        target = ema_update(self.target, actor.model, config.target_rate)
        agent = dataclasses.replace(self, actor=actor, target=target, step=self.step + 1)
        return agent, metrics

    def acting_policy(self) -> AbstractPolicy:
        return select_among_samples(
            self._sampler(self.actor.model),
            self.critic.value_function(),
            self.config.action_selection,
            self.config.num_candidates,
        )


def create(
    obs_dim: int,
    action_dim: int,
    key: PRNGKeyArray,
    config: ConsistencyACConfig = ConsistencyACConfig(),
) -> ConsistencyAC:
    """A fresh Consistency-AC (or, with `consistency_bc_config()`, Consistency-BC) agent."""
    actor_key, critic_key = jr.split(key)
    network = build_network(VelocityField, action_dim, obs_dim, config.actor, actor_key)
    function = ConsistencyFunction(config.schedule, network, config.sigma_data, config.scale_input)
    actor = Trained.create(function, adam(config.learning_rate, config.grad_clip, config.clip_mode))
    if config.reads_q:
        critic = LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key)
    else:  # Consistency-BC: nothing reads Q
        critic = no_critic(config.critic.horizon, config.critic.discount)
    return ConsistencyAC(actor, function, critic, jnp.zeros((), jnp.int32), config)
