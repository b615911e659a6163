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
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Scalar
from .._interpolant import LinearInterpolant
from ..nn import CriticEnsemble, ema_update, MLP, pessimistic, td_target, VelocityField
from ..objectives import expectile_loss
from ..objectives._actor_critic import _weighted_mean
from ._core import (
    AbstractAgent,
    AbstractCritic,
    adam,
    build_network,
    check_positive,
    CriticConfig,
    flow_actions,
    flow_matching_step,
    NetworkConfig,
    Trained,
)


@dataclasses.dataclass(frozen=True)
class IFQLConfig:
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


class StateValue(eqx.Module):
    """A state-value network $V(s)$ = `MLP(s)` with a scalar output (IFQL's value, FAWAC's
    baseline).

    **Fields:** `mlp`, `obs_dim`.
    """

    mlp: MLP
    obs_dim: int = eqx.field(static=True)

    def __init__(self, obs_dim: int, config: NetworkConfig, *, key: PRNGKeyArray):
        if obs_dim < 1:
            raise ValueError(f"a state value needs an observation: obs_dim >= 1, got {obs_dim}")
        self.mlp = MLP(
            obs_dim, 1, config.width, config.depth, layer_norm=config.layer_norm, key=key
        )
        self.obs_dim = obs_dim

    def __call__(self, cond: Float[Array, " obs_dim"]) -> Scalar:
        return self.mlp(cond)[0]


def expectile_value_step(
    value: Trained,
    observations: Float[Array, "batch obs_dim"],
    targets: Float[Array, " batch"],
    expectile: float,
    weights: Float[Array, " batch"],
) -> tuple[Trained, Float[Array, ""]]:
    """One step of expectile regression of a [`StateValue`][interpolant_rl.agents.ifql.StateValue]
    towards `targets` (held fixed), weighted by the validity `weights`; returns
    `(value, loss)`. With `expectile = 0.5` it fits the (weighted) mean of the targets."""

    def loss_fn(network):
        loss = expectile_loss(jax.vmap(network)(observations), targets, expectile, weights=weights)
        return loss, loss

    return value.minimise(loss_fn)


class ExpectileCritic(AbstractCritic):
    r"""IQL's critic: a $Q$ ensemble with an EMA target, and a state value $V$, learned in
    sample (no next action, hence no policy, enters the targets).

    One TD step fits $V$ by expectile regression
    ([`expectile_value_step`][interpolant_rl.agents.ifql.expectile_value_step]) to the
    pessimistic target value of the dataset action, $\bar Q^- - \rho\,\mathrm{std}\,Q^-$ (with
    $K = 2$ and $\rho = 1$ this is IQL's minimum of two critics), and each $Q_k$ by squared error
    to $r + \gamma^h m V(s')$ (the value before this step's update), then moves $Q^-$ by EMA.
    `step` ignores its `next_actions`.

    **Fields:** `online` (a `Trained` [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble]),
    `target`, `value` (a `Trained` [`StateValue`][interpolant_rl.agents.ifql.StateValue]),
    `config` and `expectile` (static).
    """

    online: Trained
    target: CriticEnsemble
    value: Trained
    config: CriticConfig = eqx.field(static=True)
    expectile: float = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        obs_dim: int,
        action_dim: int,
        config: CriticConfig,
        value: NetworkConfig,
        expectile: float,
        key: PRNGKeyArray,
    ) -> "ExpectileCritic":
        """A fresh critic: a `config`-sized ensemble and a `value`-sized $V$."""
        q_key, v_key = jr.split(key)
        ensemble = CriticEnsemble(
            action_dim,
            obs_dim,
            config.width,
            config.depth,
            num_critics=config.num_critics,
            layer_norm=config.layer_norm,
            key=q_key,
        )
        optimiser = adam(config.learning_rate, config.grad_clip)
        return cls(
            Trained.create(ensemble, optimiser),
            ensemble,
            Trained.create(StateValue(obs_dim, value, key=v_key), optimiser),
            config,
            expectile,
        )

    def values(self, cond, action):
        return self.online.model(cond, action)

    def target_values(self, cond, action):
        return self.target(cond, action)

    def batch_values(self, obs, actions):
        return self.online.model.batch_values(obs, actions)

    def target_batch_values(self, obs, actions):
        return self.target.batch_values(obs, actions)

    def step(self, batch, next_actions):
        del next_actions  # the target bootstraps from V(s'), not from Q(s', a')
        config = self.config
        data_values = self.target.batch_values(batch.observations, batch.actions)
        value, value_loss = expectile_value_step(
            self.value,
            batch.observations,
            pessimistic(data_values, config.rho),
            self.expectile,
            batch.valid,
        )
        next_v = jax.vmap(self.value.model)(batch.next_observations)
        targets = jax.vmap(
            lambda r, m, v: td_target(
                r, m, v[None], discount=config.discount, horizon=config.horizon
            )
        )(batch.rewards, batch.masks, next_v)
        targets = jax.lax.stop_gradient(targets)

        def loss_fn(ensemble):
            q = ensemble.batch_values(batch.observations, batch.actions)
            loss = _weighted_mean(jnp.mean((q - targets[:, None]) ** 2, axis=-1), batch.valid)
            return loss, dict(critic_loss=loss, q_mean=jnp.mean(q))

        online, metrics = self.online.minimise(loss_fn)
        target = ema_update(self.target, online.model, config.target_rate)
        critic = ExpectileCritic(online, target, value, config, self.expectile)
        return critic, dict(metrics, value_loss=value_loss, v_mean=jnp.mean(next_v))


class IFQL(AbstractAgent):
    """IFQL: see the module docstring for the algorithm."""

    behaviour: Trained
    critic: AbstractCritic
    action_dim: int = eqx.field(static=True)
    config: IFQLConfig = eqx.field(static=True)

    def actor_step(self, batch, key):
        behaviour, bc_loss = flow_matching_step(self.behaviour, batch, key)
        agent = IFQL(behaviour, self.critic, self.action_dim, self.config)
        return agent, dict(flow_matching_loss=bc_loss)

    def candidates(
        self, observations: Float[Array, "batch obs_dim"], key: PRNGKeyArray
    ) -> Float[Array, "batch num_samples action_dim"]:
        """The $N$ clipped behaviour-flow actions per state that `policy` chooses from."""
        batch, n = observations.shape[0], self.config.num_samples
        noise = jr.normal(key, (batch * n, self.action_dim))
        repeated = jnp.repeat(observations, n, axis=0)
        actions = flow_actions(
            LinearInterpolant(), self.behaviour.model, repeated, noise, self.config.flow_steps
        )
        return jnp.clip(actions, -1.0, 1.0).reshape(batch, n, self.action_dim)

    def policy(self, observations, key):
        candidates = self.candidates(observations, key)
        batch, n, dim = candidates.shape
        values = self.critic.batch_values(  # Q_k(s, a_j), flattened over (state, candidate)
            jnp.repeat(observations, n, axis=0), candidates.reshape(batch * n, dim)
        )
        scores = jnp.min(values, axis=-1).reshape(batch, n)  # min_k Q_k(s, a_j)
        best = jnp.argmax(scores, axis=-1)
        return jnp.take_along_axis(candidates, best[:, None, None], axis=1)[:, 0]

    def target_policy(self, observations, key):
        # IQL bootstraps from V(s'): the ExpectileCritic never reads the next actions, so the
        # default (the acting policy) would spend N flow integrations and N*K critic evaluations
        # per next state for nothing. One plain behaviour sample is returned instead; unused, it
        # is dead code that XLA removes under jit. A critic that does bootstrap from Q(s', a')
        # (e.g. a LearnedCritic swapped in) gets an in-sample, SARSA-like behaviour action.
        noise = jr.normal(key, (observations.shape[0], self.action_dim))
        actions = flow_actions(
            LinearInterpolant(), self.behaviour.model, observations, noise, self.config.flow_steps
        )
        return jnp.clip(actions, -1.0, 1.0)


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
