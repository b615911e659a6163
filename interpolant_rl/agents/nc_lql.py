r"""NC-LQL — noise-conditioned Langevin Q-learning (Ki, Ahn, Kim & Lee, *Direct Soft-Policy
Sampling via Langevin Dynamics*, arXiv:2602.07873, 2026): online actor-free RL. There is no
policy network: the agent acts with the Boltzmann policy $\pi(a \mid s) \propto \exp(\tau Q(s, a))$
sampled by annealed Langevin dynamics on the action gradient of a *noise-conditioned* critic
$Q(s, a, t)$, whose level $t$ is smoothed by noise $\sigma(t)$ (large at $t = 0$, where
particles move between modes; small at $t = 1$, the clean critic).

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic (clean level).** TD at $t = 1$ with the rewards scaled by $c$ (`reward_scale`):
   $y = c\,r + \gamma^h m\big(\bar Q^-(s', a', 1) - \rho\,\mathrm{std}\,Q^-(s', a', 1)\big)$,
   $a'$ drawn by the acting rule below at $s'$ (with the online critic, as the authors' code);
   EMA of the target.
2. **Noise levels.** One step on
   [`noise_level_loss`][interpolant_rl.objectives.noise_level_loss]: with a level
   $l \sim \mathcal U\{0, \dots, L - 2\}$ (every level but the clean one) and
   $z \sim \mathcal N(0, I)$ per row,
   $\operatorname{mean}\tfrac1K\sum_k\big(Q_k(s, a + \sigma(t_l) z, t_l) - \bar Q(s, a, 1)\big)^2$,
   the target the online critic's clean value before step 1 (held fixed).
3. **Act.** $a_0 \sim \mathcal U[-1, 1]^d$, then
   [`annealed_langevin_sample`][interpolant_rl.annealed_langevin_sample] through the $L$ levels,
   $T$ steps each, step size $\epsilon_l = \epsilon\,\sigma(t_l)^2/\sigma_{\min}^2$, clipping to
   $[-1, 1]$ after every step, with the score $\tau\,g/\|g\|$ of
   $g = \nabla_a \bar Q(s, a, t_l)$ (`normalise_gradient`, the authors' code; without it
   $\tau g$, whose stationary law at one level is exactly $\propto e^{\tau \bar Q}$); with
   `num_particles` $N > 1$, the best of $N$ samples by $\min_k Q_k(s, a, 1)$.

NC-LQL is online-only: `experiments/run.py --agent nc_lql` trains it like RLPD (no offline
phase, random actions first; see `AGENT_PRESETS`). With `num_levels = 1` it is plain Langevin
Q-learning (LQL): one level, no step 2.

Where the values come from: the paper's text could not be read here beyond its abstract and a
summary of its update rule; every default below is the authors' public code (`ku-dmlab/NCLQL`,
`scripts/train_mujoco.py` and `relax/`), unverified against the paper's tables.
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._langevin import annealed_langevin_sample, LangevinSchedule
from ..nn import NoiseConditionedEnsemble
from ..objectives import noise_level_loss
from ._agent import AbstractAgent, AbstractPolicy
from ._config import check_positive, Hyperparameters
from ._critic import (
    AbstractCritic,
    CriticConfig,
    ensemble_td_targets,
    td_fit,
    trained_ensemble,
)
from ._optim import Trained
from ._policies import BestOfN


@dataclasses.dataclass(frozen=True)
class NCLQLConfig(Hyperparameters):
    """NC-LQL hyperparameters (defaults: the authors' public code, MuJoCo; see the module)."""

    tau: float = 500.0  # inverse temperature w of exp(w Q) (code: --w 500)
    sigma_max: float = 0.1  # largest noise level, t = 0 (code: 0.1)
    sigma_min: float = 0.001  # smallest noise level, t = 1, the clean critic (code: 0.001)
    num_levels: int = 10  # L geometric levels (code: 10); 1 = plain LQL
    steps_per_level: int = 2  # T Langevin steps per level (code: 2)
    step_size: float = 1e-4  # epsilon, the step at sigma_min (code: step_lr 1e-4)
    normalise_gradient: bool = True  # score tau * g / |g| (code: q_grad_norm True)
    num_particles: int = 1  # best of N Langevin samples by min_k Q (code: 1)
    reward_scale: float = 0.2  # rewards multiplied by this in the TD target (code: 0.2)
    critic: CriticConfig = CriticConfig(  # code: two 3 x 256 critics (Mish; ours GELU), no
        width=256,  # LayerNorm, min of the two targets (rho = 1 at K = 2), Adam 1e-4
        depth=3,
        layer_norm=False,
        num_critics=2,
        rho=1.0,
        learning_rate=1e-4,
    )

    def __post_init__(self):
        LangevinSchedule(
            self.sigma_max, self.sigma_min, self.num_levels, self.steps_per_level, self.step_size
        )  # its checks name the field
        check_positive("tau", self.tau)
        check_positive("reward_scale", self.reward_scale)
        if self.num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")

    def schedule(self) -> LangevinSchedule:
        """The [`LangevinSchedule`][interpolant_rl.LangevinSchedule] of these fields."""
        return LangevinSchedule(
            self.sigma_max, self.sigma_min, self.num_levels, self.steps_per_level, self.step_size
        )


class NoiseConditionedQ(AbstractCritic):
    r"""A [`NoiseConditionedEnsemble`][interpolant_rl.nn.NoiseConditionedEnsemble] $Q_k(s, a, t)$
    and its EMA target. Its values (what `AbstractCritic` reads) are the clean level $t = 1$;
    `step` is TD there (the pessimistic target of [`LearnedCritic`][interpolant_rl.agents.LearnedCritic],
    through the shared [`td_fit`][interpolant_rl.agents.td_fit]); `fit_levels` fits the noisy
    levels ([`noise_level_loss`][interpolant_rl.objectives.noise_level_loss]).

    **Fields:** `online` (a `Trained` ensemble), `target`, `config` (static).
    """

    online: Trained
    target: NoiseConditionedEnsemble
    config: CriticConfig

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def discount(self) -> float:
        return self.config.discount

    def values(self, cond, action):
        return self.online.model(1.0, action, cond)

    def target_values(self, cond, action):
        return self.target(1.0, action, cond)

    def batch_values(self, obs, actions):
        return self.online.model.batch_values(obs, actions)

    def target_batch_values(self, obs, actions):
        return self.target.batch_values(obs, actions)

    def value_function(self):
        return self.online.model.batch_values  # the online ensemble alone, at t = 1

    def step(self, batch, next_actions):
        config = self.config
        targets = ensemble_td_targets(self.target, batch, next_actions, config)
        online, target, metrics = td_fit(
            self.online, self.target, batch, targets, config.target_rate
        )
        return NoiseConditionedQ(online, target, config), metrics

    def fit_levels(self, schedule, batch, targets, times, noise):
        """One optimiser step on `noise_level_loss` at the given level times and noise."""

        def loss_fn(ensemble):
            loss = noise_level_loss(
                ensemble.batch_values,
                schedule,
                batch.actions,
                batch.observations,
                targets,
                times,
                noise,
                weights=batch.valid,
            )
            return loss, loss

        online, loss = self.online.minimise(loss_fn)
        return NoiseConditionedQ(online, self.target, self.config), dict(level_loss=loss)


class LangevinPolicy(AbstractPolicy):
    r"""Step 3 of the algorithm box: annealed Langevin dynamics on
    $\tau\nabla_a \bar Q(s, a, t)$ (normalised, when `normalise_gradient`) from
    $\mathcal U[-1, 1]^d$, clipped to $[-1, 1]$ after every step.

    **Fields:** `critic` (the ensemble), `schedule`, `tau`, `normalise_gradient` (static).
    """

    critic: NoiseConditionedEnsemble
    schedule: LangevinSchedule
    tau: float
    normalise_gradient: bool = eqx.field(static=True)

    def score(self, t, action, cond):
        r"""$\tau g/\|g\|$ (or $\tau g$), $g = \nabla_a \frac1K\sum_k Q_k(s, a, t)$."""
        gradient = jax.grad(lambda a: jnp.mean(self.critic(t, a, cond)))(action)
        if self.normalise_gradient:
            gradient = gradient / (jnp.linalg.norm(gradient) + 1e-8)
        return self.tau * gradient

    def __call__(self, observations, key):
        start_key, noise_key = jr.split(key)
        batch = observations.shape[0]
        starts = jr.uniform(start_key, (batch, self.critic.action_dim), minval=-1.0, maxval=1.0)

        def one(cond, start, step_key):
            return annealed_langevin_sample(
                self.schedule, self.score, start, key=step_key, cond=cond, bounds=(-1.0, 1.0)
            )

        return jax.vmap(one)(observations, starts, jr.split(noise_key, batch))


class NCLQL(AbstractAgent):
    """NC-LQL: see the module docstring for the algorithm."""

    critic: NoiseConditionedQ
    config: NCLQLConfig

    def update_step(self, batch, key):
        """Steps 1 and 2 (step 2's target is the clean value *before* step 1, as in the
        authors' code, so the default `update_step` does not serve)."""
        target_key, level_key = jr.split(key)
        batch = eqx.tree_at(lambda b: b.rewards, batch, self.config.reward_scale * batch.rewards)
        next_actions = jax.lax.stop_gradient(
            self.target_policy(batch.next_observations, target_key)
        )
        clean = self.critic.mean_values(batch.observations, batch.actions)
        critic, critic_metrics = self.critic.step(batch, next_actions)
        agent, level_metrics = NCLQL(critic, self.config).fit_levels(batch, clean, level_key)
        return agent, {**critic_metrics, **level_metrics}

    def actor_step(self, batch, key):
        """Step 2 alone, against the current clean critic (NC-LQL has no actor: its noise
        levels are what shapes the policy)."""
        return self.fit_levels(
            batch, self.critic.mean_values(batch.observations, batch.actions), key
        )

    def fit_levels(self, batch, targets, key):
        """Step 2 towards the clean values `targets` (nothing to fit when $L = 1$)."""
        schedule = self.config.schedule()
        if schedule.num_levels == 1:
            return self, {}
        level_key, noise_key = jr.split(key)
        levels = jr.randint(level_key, targets.shape, 0, schedule.num_levels - 1)
        times = schedule.times()[levels].astype(batch.actions.dtype)
        noise = jr.normal(noise_key, batch.actions.shape, batch.actions.dtype)
        critic, metrics = self.critic.fit_levels(schedule, batch, targets, times, noise)
        return NCLQL(critic, self.config), metrics

    def acting_policy(self):
        config = self.config
        policy = LangevinPolicy(
            self.critic.online.model, config.schedule(), config.tau, config.normalise_gradient
        )
        if config.num_particles == 1:
            return policy
        return BestOfN(policy, self.critic.value_function(), config.num_particles)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: NCLQLConfig = NCLQLConfig()
) -> NCLQL:
    """A fresh NC-LQL agent."""
    online = trained_ensemble(
        obs_dim, action_dim, config.critic, key, network=NoiseConditionedEnsemble
    )
    return NCLQL(NoiseConditionedQ(online, online.model, config.critic), config)
