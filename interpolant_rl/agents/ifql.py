r"""IFQL — implicit flow Q-learning: IQL's in-sample value learning, a behaviour flow, and
best-of-$N$ action selection.

Algorithm box, per update on a batch $(s, a, r, m, s')$:

1. **Value.** $V_\psi \leftarrow$ one step of expectile regression towards the pessimistic
   target-ensemble value of the *dataset* action,
   $\mathcal L(\psi) = \operatorname{mean}_i |\kappa - \mathbf 1[y_i < V_\psi(s_i)]|\,(y_i - V_\psi(s_i))^2$,
   $y_i = \bar Q^-(s_i, a_i) - \rho\,\mathrm{std}\,Q^-(s_i, a_i)$
   ([`expectile_loss`][interpolant_rl.objectives.expectile_loss]); $\kappa = 0.9$ makes
   $V(s)$ a soft maximum of $Q(s, \cdot)$ over the behaviour's actions.
2. **Critic.** TD with no policy in the target:
   $\frac1K\sum_k \operatorname{mean}_i (Q_k(s_i, a_i) - r_i - \gamma^h m_i V_\psi(s_i'))^2$;
   $Q^- \leftarrow$ EMA of $Q$. Steps 1 and 2 are the
   [`ExpectileCritic`][interpolant_rl.agents.ExpectileCritic]'s TD step.
3. **Behaviour flow.** $f_\beta \leftarrow$ one flow-matching step on $(s, a)$.
4. **Act.** Draw $N = 32$ actions $a_j = \operatorname{clip}(\mathrm{ODE}_{f_\beta}(s, z_j), -1, 1)$
   (10 Euler steps) and return the one with the largest ensemble minimum $\min_k Q_k(s, a_j)$.

The policy never enters the critic's training, so nothing is queried out of distribution
during learning; the critic only ranks behaviour samples at acting time.
"""

import dataclasses

import equinox as eqx
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..nn import VelocityField
from ._agent import AbstractAgent
from ._config import build_network, check_positive, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic, CriticConfig, ExpectileCritic
from ._flow import flow_matching_step, FlowPolicy
from ._optim import adam, Trained
from ._policies import BestOfN


@dataclasses.dataclass(frozen=True)
class IFQLConfig(Hyperparameters):
    """IFQL hyperparameters (defaults: the QAM paper's cube-double column)."""

    expectile: float = 0.9  # IQL expectile kappa (cube-triple 0.95, puzzle 0.95, humanoidmaze 0.7)
    num_samples: int = 32  # N behaviour samples per state; act by the best under the ensemble min
    flow_steps: int = 10  # Euler steps of the behaviour flow
    actor: NetworkConfig = NetworkConfig()  # behaviour flow: 4x512 GELU, no LayerNorm
    value: NetworkConfig = NetworkConfig(layer_norm=True)  # V(s): 4x512 with LayerNorm, as Q
    critic: CriticConfig = CriticConfig()  # K = 10; rho = 0.5 in V's target; lr also for V
    learning_rate: float = 3e-4  # Adam step size of the behaviour flow
    grad_clip: float | None = None  # no clipping in the protocol for IFQL

    def __post_init__(self):
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"expectile must lie in (0, 1), got {self.expectile}")
        check_positive("num_samples", self.num_samples)
        check_positive("flow_steps", self.flow_steps)


class IFQL(AbstractAgent):
    """IFQL: see the module docstring for the algorithm."""

    behaviour: Trained
    critic: AbstractCritic
    action_dim: int = eqx.field(static=True)
    config: IFQLConfig

    def actor_step(self, batch, key):
        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, key)
        agent = IFQL(behaviour, self.critic, self.action_dim, self.config)
        return agent, dict(flow_matching_loss=bc_loss)

    def behaviour_policy(self) -> FlowPolicy:
        """The behaviour flow as a policy: $\\operatorname{clip}(\\mathrm{ODE}_{f_\\beta}(s, z), -1, 1)$."""
        return FlowPolicy(self.behaviour.model, self.action_dim, self.config.flow_steps)

    def acting_policy(self):
        """The best of $N$ behaviour samples under the online ensemble's minimum."""
        return BestOfN(
            self.behaviour_policy(), self.critic.value_function(), self.config.num_samples
        )

    def candidates(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch num_samples action_dim"]:
        """The $N$ clipped behaviour-flow actions per state that the policy chooses from."""
        return self.acting_policy().candidates(observations, key)

    def target_policy(self, observations, key):
        # IQL bootstraps from V(s'): the ExpectileCritic never reads the next actions, so the
        # default (the acting policy) would spend N flow integrations and N*K critic evaluations
        # per next state for nothing. One plain behaviour sample is returned instead; unused, it
        # is dead code that XLA removes under jit. A critic that does bootstrap from Q(s', a')
        # (e.g. a LearnedCritic swapped in) gets an in-sample, SARSA-like behaviour action.
        return self.behaviour_policy()(observations, key)


def create(
    obs_dim: int, action_dim: int, key: PRNGKeyArray, config: IFQLConfig = IFQLConfig()
) -> IFQL:
    """A fresh IFQL agent."""
    flow_key, critic_key = jr.split(key)
    behaviour = build_network(VelocityField, action_dim, obs_dim, config.actor, flow_key)
    critic = ExpectileCritic.create(
        obs_dim, action_dim, config.critic, config.value, config.expectile, critic_key
    )
    return IFQL(
        Trained.create(behaviour, adam(config.learning_rate, config.grad_clip)),
        critic,
        action_dim,
        config,
    )
