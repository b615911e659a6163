r"""SOM — score-based one-step MeanFlow policy optimisation (Kim, Ki, Ahn & Lee, *Score-Based
One-step MeanFlow Policy Optimization*, arXiv:2605.23365, 2026): online RL with a one-step
MeanFlow policy whose regression target is built from the critic, not from data.

The policy should sample the Boltzmann policy $\pi(a \mid s) \propto \exp(Q(s, a)/\lambda)$, of
which there are no samples. SOM puts $\pi$ at the data end of the linear interpolant
$x_t = t\,x_1 + (1 - t)\,x_0$ ($t = 0$ noise, $t = 1$ data) and regresses the average-velocity
field $u_\theta$ onto the *probability-flow velocity* of that interpolant,
$v(x, t) = (\hat x_1(x, t) - x)/(1 - t)$ with $\hat x_1 = \mathbb E_\pi[x_1 \mid x_t = x]$
(equivalently $v = (x + (1 - t)\nabla\log p_t(x))/t$: score and velocity are one quantity), which
is estimated from the critic's values and its action gradient $\nabla_a Q/\lambda$ (the Boltzmann
score) by self-normalised importance sampling
([`boltzmann_velocity`][interpolant_rl.objectives.boltzmann_velocity], whose docstring derives
it). The exact average velocity of $\pi$'s probability-flow ODE is then the fixed point of the
MeanFlow identity $u = v + (s - t)\,du/dt$, and the policy acts with one evaluation.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD of the ensemble ([`LearnedCritic`][interpolant_rl.agents.LearnedCritic]) to
   $y = r + \gamma^h m\big(\bar Q^-(s', a') - \rho\,\mathrm{std}\,Q^-(s', a')\big)$ with
   $a' = \operatorname{clip}(z + u_{\theta^-}(z, 0, 1))$ from the EMA policy (no entropy backup:
   the one-step policy has no tractable likelihood; $\lambda$ is fixed).
2. **Actor.** One step on [`som_loss`][interpolant_rl.objectives.som_loss]: at the
   reference interpolant's points $x_t = t\,y + (1 - t)\,\varepsilon$, $y, \varepsilon \sim \mathcal N(0, I)$,
   $$\mathcal L(\theta) = \operatorname{mean}\,\mathrm{sg}\big((e + \epsilon)^{-p}\big)\,e,\quad
     e = \tfrac1d\big\|u_\theta(x_t, t, s) - \mathrm{sg}\big(\hat v + (s - t)\,du_\theta/dt\big)\big\|^2,$$
   $\hat v$ the Boltzmann velocity of the online ensemble mean $\bar Q(s, \cdot)$ with $K$
   proposals; time pairs of the `meanflow_preset` (CIFAR-10's by default: 75 % of pairs with
   $t \ne s$), plain squared error ($p = 0$); $\theta^- \leftarrow$ EMA.
3. **Act.** $a = \operatorname{clip}(z + u_\theta(z, 0, 1), -1, 1)$, $z \sim \mathcal N(0, I)$
   ([`meanflow_one_step`][interpolant_rl.meanflow_one_step]); with `num_candidates` $N > 1$, the
   best of $N$ such actions by $\min_k Q_k$.

SOM is online-only: `experiments/run.py --agent som` trains it like RLPD (no offline phase,
random actions first; see `AGENT_PRESETS`).

Where the values come from: only the paper's abstract and a third-party summary (score
estimated iDEM-style from the critic, converted to a probability-flow velocity, MeanFlow
regression, candidates at acting time) could be read here. Every default below is **ours**,
unverified against the paper: the temperature, the number of proposals, the estimator's
reference prior and blend, the points $x_t$ of the regression, the critic ensemble, the
MeanFlow preset and $p = 0$ (the last three measured on the quadratic critic of
`tests/test_som.py`, see [`som_loss`][interpolant_rl.objectives.som_loss] and
[`boltzmann_velocity`][interpolant_rl.objectives.boltzmann_velocity]). The Boltzmann policy is
the one on $\mathbb R^d$; the box $[-1, 1]^d$ enters only by clipping at acting time, and the
critic is read at the proposals wherever they fall (near the box: they are drawn around a
rescaled $x_t$ with at most unit spread).
"""

import dataclasses

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from .._jump_sampling import meanflow_one_step
from ..nn import ema_update, TwoTimeField
from ..objectives import meanflow_preset, som_loss
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._optim import adam, Trained
from ._policies import BestOfN, NoisePolicy


@dataclasses.dataclass(frozen=True)
class SOMConfig(Hyperparameters):
    """SOM hyperparameters; every default is ours (see the module docstring)."""

    temperature: float = 0.1  # lambda of pi ∝ exp(Q / lambda) (ours, untuned)
    num_samples: int = 32  # K proposals per point of the velocity estimate (ours)
    num_candidates: int = 1  # acting: best of N one-step actions by min_k Q (ours: 1, plain)
    meanflow_preset: str = "cifar10"  # MeanFlow's time law: "cifar10" / "imagenet" (ours: cifar10)
    equal_time_fraction: float | None = None  # fraction of pairs with s = t; None: the preset's
    adaptive_weight_power: float | None = 0.0  # p of 1/sg(e + c)^p (ours: 0); None: the preset's
    target_rate: float = 0.005  # EMA rate of the target policy (TD's next actions)
    actor: NetworkConfig = NetworkConfig()  # the average-velocity field u(t, s, x | s)
    critic: CriticConfig = CriticConfig(num_critics=2, rho=1.0)  # double Q, min target (ours)
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # global-norm clipping of the actor (off)

    def __post_init__(self):
        check_positive("temperature", self.temperature)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        meanflow_preset(self.meanflow_preset)
        if self.equal_time_fraction is not None and not 0.0 <= self.equal_time_fraction <= 1.0:
            raise ValueError(
                f"equal_time_fraction must lie in [0, 1], got {self.equal_time_fraction}"
            )

    def meanflow_settings(self) -> dict:
        """The MeanFlow keyword arguments: the preset's, with the overrides on top."""
        settings = meanflow_preset(self.meanflow_preset).loss_kwargs()
        if self.equal_time_fraction is not None:
            settings["equal_time_fraction"] = self.equal_time_fraction
        if self.adaptive_weight_power is not None:
            settings["adaptive_weight_power"] = self.adaptive_weight_power
        return settings


def _one_step_policy(field: TwoTimeField) -> NoisePolicy:
    """$a = \\operatorname{clip}(z + u(z, 0, 1 \\mid s), -1, 1)$: one MeanFlow jump from noise."""
    return NoisePolicy(jax.tree_util.Partial(meanflow_one_step, field), field.action_dim)


class SOM(AbstractAgent):
    """SOM: see the module docstring for the algorithm."""

    field: Trained
    target_field: TwoTimeField
    critic: AbstractCritic
    config: SOMConfig

    def actor_step(self, batch, key):
        config = self.config
        critic = self.critic

        def q_function(cond, action):
            return jnp.mean(critic.values(cond, action))

        def loss_fn(field):
            loss = som_loss(
                LinearInterpolant(),
                field,
                q_function,
                batch.observations,
                key,
                shape=batch.actions.shape,
                temperature=config.temperature,
                num_samples=config.num_samples,
                weights=batch.valid,
                **config.meanflow_settings(),
            )
            return loss, dict(som_loss=loss)

        field, metrics = self.field.minimise(loss_fn)
        target_field = ema_update(self.target_field, field.model, config.target_rate)
        return SOM(field, target_field, self.critic, config), metrics

    def acting_policy(self):
        policy = _one_step_policy(self.field.model)
        if self.config.num_candidates == 1:
            return policy
        return BestOfN(policy, self.critic.value_function(), self.config.num_candidates)

    def target_policy(self, observations, key):
        return _one_step_policy(self.target_field)(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: SOMConfig = SOMConfig()
) -> SOM:
    """A fresh SOM agent."""
    field_key, critic_key = jr.split(key)
    field = build_network(TwoTimeField, action_dim, obs_dim, config.actor, field_key)
    return SOM(
        Trained.create(field, adam(config.learning_rate, config.grad_clip)),
        field,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        config,
    )
