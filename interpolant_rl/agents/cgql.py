r"""CGQL — classifier-guided flow Q-learning: a behaviour flow steered at sampling time by the
critic's action gradient.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Critic.** TD on the pessimistic target with $a'$ from the guided flow at $s'$ (step 4).
2. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on $(s, a)$; its EMA copy
   $\bar f_\beta$ is the flow that gets guided (the reference's target actor).
3. **Noise-conditioned critic** (variants `"mse"` and `"linex"` only). $Q_\phi(s, a_u, u)$
   $\leftarrow$ one step of regression on the clean target-ensemble mean $\bar Q^-(s, a)$ from
   $a_u = u\,a + (1-u)\,z$, $u \sim U[0, 1]$
   ([`noisy_critic_loss`][interpolant_rl.objectives.noisy_critic_loss]): squared error
   (`"mse"`, $Q_\phi \to \mathbb E[Q \mid a_u]$) or Linex at $\tau$ (`"linex"`,
   $Q_\phi \to \frac1\tau\log\mathbb E[e^{\tau Q} \mid a_u]$, the exact guidance of the tilt).
4. **Act.** Integrate the guided velocity
   ([`GuidedVelocity`][interpolant_rl.nn.GuidedVelocity]) from $z \sim \mathcal N(0, I)$
   with 10 Euler steps and clip to $[-1, 1]$:

   $$\tilde v(u, x) = \bar f_\beta(u, x \mid s) + \vartheta\,\tau\,\frac{1-u}{u}\,\nabla_x Q_u(s, x),$$

   with $Q_u$ the online critic's ensemble mean at the noisy point, $\bar Q(s, x)$ (`"simple"`),
   or $Q_\phi(s, x, u)$ (`"mse"`, `"linex"`); the guidance is off for $u <$ `guidance_start`
   (only the first Euler step, at $u = 0$, by default).

$\tau$ is the inverse temperature of the tilt $\pi_\beta e^{\tau Q}$ whose score the guidance
adds; $\vartheta$ scales that score (classifier-guidance weight). With $\vartheta = 1$ and the
Linex critic at its optimum the guided flow samples the tilt exactly; the protocol's
$(\tau, \vartheta) = (10, 0.01)$ guides with $\vartheta\tau = 0.1$. The QAM issue's form
$v_\beta + \vartheta((1-u)\tau\nabla Q + a)/u$ adds a term $\vartheta a/u$ that is not part of
the tilt (see [the derivation][interpolant_rl.nn.GuidedVelocity]); it is left out.
"""

import dataclasses
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from .._interpolant import LinearInterpolant
from ..nn import ema_update, GuidedVelocity, NoiseConditionedCritic, VelocityField
from ..objectives import noisy_critic_loss
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, LearnedCritic
from ._flow import flow_matching_step, FlowPolicy
from ._optim import adam, Trained


VARIANTS = ("simple", "mse", "linex")


@dataclasses.dataclass(frozen=True)
class CGQLConfig(Hyperparameters):
    """CGQL hyperparameters (defaults: the QAM paper's cube-double column, (tau, guidance) =
    (10, 0.01))."""

    variant: Literal["simple", "mse", "linex"] = "simple"  # which Q_u guides (module docstring)
    tau: float = 10.0  # inverse temperature of the tilt whose score guides (10 on every domain)
    guidance: float = 0.01  # guidance scale theta (0.1 on cube-triple/scene/puzzle/antmaze)
    guidance_start: float = 0.05  # flow time u below which guidance is off ((1-u)/u blows up)
    flow_steps: int = 10  # Euler steps of the guided flow
    linex_clip: float = 5.0  # Linex exponent tau*(y - Q_u) beyond which the loss is linear
    base_rate: float = 0.005  # EMA rate of the guided copy of the behaviour flow (1: online)
    actor: NetworkConfig = NetworkConfig()  # behaviour flow: 4x512 GELU, no LayerNorm
    noisy_critic: NetworkConfig = NetworkConfig(layer_norm=True)  # Q_phi(s, a_u, u): mse/linex
    critic: CriticConfig = CriticConfig()  # K = 10, rho = 0.5; lr also for Q_phi
    learning_rate: float = 3e-4  # Adam step size of the behaviour flow
    grad_clip: float | None = None  # no clipping in the protocol for CGQL

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        check_positive("tau", self.tau, allow_zero=self.variant != "linex")
        check_positive("guidance", self.guidance, allow_zero=True)
        if not 0.0 < self.guidance_start <= 1.0:
            raise ValueError(f"guidance_start must lie in (0, 1], got {self.guidance_start}")
        check_positive("flow_steps", self.flow_steps)
        check_positive("linex_clip", self.linex_clip)
        if not 0.0 <= self.base_rate <= 1.0:
            raise ValueError(f"base_rate must lie in [0, 1], got {self.base_rate}")


class CleanCriticValue(eqx.Module):
    r"""The `"simple"` variant's $Q_u$: the critic's online ensemble mean $\bar Q(s, x)$ at the
    noisy point, whatever the flow time, as a `(u, x, cond) -> scalar` function.

    **Fields:** `critic`.
    """

    critic: AbstractCritic

    def __call__(self, t, x, cond):
        del t
        return jnp.mean(self.critic.values(cond, x))


class CGQL(AbstractAgent):
    """CGQL: see the module docstring for the algorithm. `noisy_critic` is `None` for the
    `"simple"` variant."""

    behaviour: Trained
    base: VelocityField
    noisy_critic: Trained | None
    critic: AbstractCritic
    action_dim: int = eqx.field(static=True)
    config: CGQLConfig

    def actor_step(self, batch, key):
        config = self.config
        fm_key, noisy_key = jr.split(key)
        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, fm_key)
        base = ema_update(self.base, behaviour.model, config.base_rate)
        metrics = dict(flow_matching_loss=bc_loss)
        noisy = self.noisy_critic
        if noisy is not None:
            obs, actions = batch.observations, batch.actions
            targets = jnp.mean(self.critic.target_batch_values(obs, actions), axis=-1)

            def loss_fn(network):
                loss = noisy_critic_loss(
                    LinearInterpolant(),
                    network,
                    actions,
                    obs,
                    targets,
                    noisy_key,
                    tau=config.tau if config.variant == "linex" else None,
                    clip=config.linex_clip,
                    weights=batch.valid,
                )
                return loss, loss

            noisy, metrics["noisy_critic_loss"] = noisy.minimise(loss_fn)
        agent = CGQL(behaviour, base, noisy, self.critic, self.action_dim, config)
        return agent, metrics

    def guided_velocity(self) -> GuidedVelocity:
        """The guided field $\\tilde v$ that the acting policy integrates."""
        config = self.config
        if self.noisy_critic is None:
            value = CleanCriticValue(self.critic)
        else:
            value = self.noisy_critic.model
        return GuidedVelocity(
            LinearInterpolant(),
            self.base,
            value,
            config.tau,
            config.guidance,
            config.guidance_start,
        )

    def acting_policy(self):
        return FlowPolicy(self.guided_velocity(), self.action_dim, self.config.flow_steps)


def mse_config() -> CGQLConfig:
    """CGQL-MSE's defaults: `CGQLConfig(variant="mse")` (registered as `cgql_mse`)."""
    return CGQLConfig(variant="mse")


def linex_config() -> CGQLConfig:
    """CGQL-Linex's defaults: `CGQLConfig(variant="linex")` (registered as `cgql_linex`)."""
    return CGQLConfig(variant="linex")


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: CGQLConfig = CGQLConfig()
) -> CGQL:
    """A fresh CGQL agent of `config.variant` (the registry's `cgql`, `cgql_mse` and
    `cgql_linex` are this function with the three variants' defaults)."""
    flow_key, noisy_key, critic_key = jr.split(key, 3)
    behaviour = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    noisy = None
    if config.variant != "simple":
        net = config.noisy_critic
        network = NoiseConditionedCritic(
            action_dim, obs_dim, net.width, net.depth, layer_norm=net.layer_norm, key=noisy_key
        )
        noisy = Trained.create(network, adam(config.critic.learning_rate, config.critic.grad_clip))
    return CGQL(
        Trained.create(behaviour, adam(config.learning_rate, config.grad_clip)),
        behaviour,
        noisy,
        LearnedCritic.create(obs_dim, action_dim, config.critic, critic_key),
        action_dim,
        config,
    )
