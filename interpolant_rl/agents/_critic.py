r"""Critics: what policy extraction reads from $Q$, and the TD steps that fit it.

- [`LearnedCritic`][interpolant_rl.agents.LearnedCritic]: an ensemble fitted to the pessimistic
  target of its EMA copy at the policy's next actions (every actor-critic agent);
- [`ExpectileCritic`][interpolant_rl.agents.ExpectileCritic]: IQL's in-sample critic, an ensemble
  and a state value $V$ fitted by expectile regression (IFQL);
- [`FixedCritic`][interpolant_rl.agents.FixedCritic]: a known $Q$ that TD leaves alone (the
  exact-tilt benchmark);
- [`StateValue`][interpolant_rl.agents.StateValue] and
  [`expectile_value_step`][interpolant_rl.agents.expectile_value_step]: the $V(s)$ network and its
  expectile regression step (IFQL's value, FAWAC's baseline).

Both learned critics end their TD step in one shared [`td_fit`][interpolant_rl.agents.td_fit].
"""

import abc
import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Scalar, ScalarLike
from ..data import Batch
from ..nn import (
    CriticEnsemble,
    ema_update,
    MLP,
    NoiseConditionedEnsemble,
    pessimistic,
    td_target,
)
from ..objectives import expectile_loss, weighted_mean
from ._config import check_positive, Hyperparameters, NetworkConfig
from ._optim import adam, check_optimiser, ClipMode, Trained


Metrics = dict[str, Float[Array, ""]]


@dataclasses.dataclass(frozen=True)
class CriticConfig(Hyperparameters):
    """The critic ensemble and its TD target $r + \\gamma^h m (\\bar Q' - \\rho\\,\\mathrm{std}\\,Q')$."""

    width: int = 512  # hidden units per layer
    depth: int = 4  # hidden layers
    layer_norm: bool = True  # LayerNorm in the critic (QAM protocol: yes)
    num_critics: int = 10  # ensemble size K (QAM protocol: 10)
    rho: float = 0.5  # pessimism rho of the target (0 for humanoidmaze)
    discount: float = 0.99  # gamma per environment step (0.995 for giant / humanoid mazes)
    horizon: int = 1  # action-chunk length h: the target discounts by gamma**h (5 for manipulation)
    target_rate: float = 0.005  # EMA rate of the target critic
    learning_rate: float = 3e-4  # Adam step size
    grad_clip: float | None = None  # gradient clipping of the critic (None: off; QAM*/QSM/DAC: 1)
    clip_mode: ClipMode = "elementwise"  # paper: element-wise; reference code: "global_norm"

    def __post_init__(self):
        if self.num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {self.num_critics}")
        if self.horizon < 1:
            raise ValueError(f"horizon (chunk length) must be >= 1, got {self.horizon}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must lie in [0, 1], got {self.discount}")
        if not 0.0 <= self.target_rate <= 1.0:
            raise ValueError(f"target_rate must lie in [0, 1], got {self.target_rate}")
        check_positive("rho", self.rho, allow_zero=True)
        check_optimiser(self.learning_rate, self.grad_clip, self.clip_mode)
        NetworkConfig(self.width, self.depth)


def trained_ensemble(
    obs_dim: int,
    action_dim: int,
    config: CriticConfig,
    key: PRNGKeyArray,
    network: type = CriticEnsemble,
):
    """A fresh `config`-sized ensemble (a `network`: `CriticEnsemble`, or NC-LQL's
    `NoiseConditionedEnsemble`, which is built alike) and its optimiser state."""
    ensemble = network(
        action_dim,
        obs_dim,
        config.width,
        config.depth,
        num_critics=config.num_critics,
        layer_norm=config.layer_norm,
        key=key,
    )
    return Trained.create(ensemble, adam(config.learning_rate, config.grad_clip, config.clip_mode))


def ensemble_td_targets(target, batch: Batch, next_actions, config: CriticConfig):
    r"""The TD targets $r + \gamma^h m\,\mathrm{pess}_\rho(Q_{\bar\phi}(s', a'))$ of a batch from the
    target ensemble's values at the next actions (the chunk's discounting by `config`)."""
    next_values = target.batch_values(batch.next_observations, next_actions)
    return jax.vmap(
        lambda r, m, q: td_target(
            r, m, q, discount=config.discount, horizon=config.horizon, rho=config.rho
        )
    )(batch.rewards, batch.masks, next_values)


def td_fit(
    online: Trained,
    target: CriticEnsemble | NoiseConditionedEnsemble,
    batch: Batch,
    targets: Float[Array, " batch"],
    target_rate: ScalarLike,
    penalty: Callable[[CriticEnsemble], tuple[Scalar, Metrics]] | None = None,
) -> tuple[Trained, CriticEnsemble | NoiseConditionedEnsemble, Metrics]:
    r"""One TD step of an ensemble towards fixed `targets` $y$, then the EMA of its target:

    $$\mathcal L = \operatorname{mean}_i w_i \tfrac1K\sum_k \big(Q_k(s_i, a_i) - y_i\big)^2,
      \qquad Q^- \leftarrow (1 - \lambda) Q^- + \lambda Q,$$

    with $w$ the batch's validity weights (a [`weighted_mean`][interpolant_rl.objectives.weighted_mean])
    and $\lambda$ = `target_rate`. The ensemble is a [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble]
    or, for NC-LQL, a [`NoiseConditionedEnsemble`][interpolant_rl.nn.NoiseConditionedEnsemble] (fitted
    at its clean level $t = 1$). Every learned critic's TD step ends here; they differ only in
    how they build $y$, and in an optional `penalty(ensemble) -> (loss, metrics)` added to the TD
    loss (CQL's conservative term). Returns `(online, target, metrics)`.
    """
    targets = jax.lax.stop_gradient(targets)

    def loss_fn(ensemble):
        values = ensemble.batch_values(batch.observations, batch.actions)
        loss = weighted_mean(jnp.mean((values - targets[:, None]) ** 2, axis=-1), batch.valid)
        metrics = dict(critic_loss=loss, q_mean=jnp.mean(values))
        if penalty is not None:
            extra, extra_metrics = penalty(ensemble)
            loss = loss + extra
            metrics.update(extra_metrics)
        return loss, metrics

    online, metrics = online.minimise(loss_fn)
    return online, ema_update(target, online.model, target_rate), metrics


class AbstractCritic(eqx.Module):
    """What policy extraction needs from a critic: its values, its target's values, and a TD step."""

    @property
    @abc.abstractmethod
    def horizon(self) -> int:
        """The action-chunk length $h$ of the transitions it learns from (its target discounts
        the bootstrap by $\\gamma^h$); the training loop cuts the data's chunks to it."""

    @property
    @abc.abstractmethod
    def discount(self) -> float:
        """$\\gamma$ per environment step (chunk rewards are discounted with it)."""

    @abc.abstractmethod
    def values(self, cond: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]) -> Array:
        """The $K$ online values $Q_k(s, a)$ of one state and action, shape `(K,)`."""

    @abc.abstractmethod
    def target_values(
        self, cond: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]
    ) -> Array:
        """The $K$ target-network values, shape `(K,)`."""

    @abc.abstractmethod
    def step(
        self, batch: Batch, next_actions: Float[Array, "batch action_dim"]
    ) -> tuple["AbstractCritic", Metrics]:
        """One TD update, given the policy's actions at the next observations."""

    def batch_values(
        self, obs: Float[Array, "batch obs_dim"], actions: Float[Array, "batch action_dim"]
    ) -> Array:
        """The online values of a batch, shape `(batch, K)`: `jax.vmap(values)` by default;
        critics override it with a faster batched evaluation (as `LearnedCritic` does)."""
        return jax.vmap(self.values)(obs, actions)

    def target_batch_values(
        self, obs: Float[Array, "batch obs_dim"], actions: Float[Array, "batch action_dim"]
    ) -> Array:
        """The target-network values of a batch, shape `(batch, K)` (see `batch_values`)."""
        return jax.vmap(self.target_values)(obs, actions)

    def value_function(self):
        """`batch_values` as a pytree callable holding only what it reads (for acting
        policies that score actions, such as [`BestOfN`][interpolant_rl.agents.BestOfN])."""
        return self.batch_values

    def mean_values(self, obs, actions):
        """Ensemble-mean online values of a batch, shape `(batch,)`."""
        return jnp.mean(self.batch_values(obs, actions), axis=-1)

    def target_mean_gradient(self, cond, action):
        r"""$\nabla_a \bar Q^-(s, \operatorname{clip}(a, -1, 1))$ of the target ensemble mean (the
        QAM reference's terminal condition), for one state and action. The derivative is taken
        *through* the clip, as the reference does: coordinates of $a$ outside $[-1, 1]$ get a zero
        gradient."""
        return jax.grad(lambda a: jnp.mean(self.target_values(cond, jnp.clip(a, -1.0, 1.0))))(
            action
        )


class AbstractEnsembleCritic(AbstractCritic):
    """A critic whose values are a trained [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble]
    `online` and its EMA copy `target`, evaluated in batches with the members outermost."""

    online: eqx.AbstractVar[Trained]
    target: eqx.AbstractVar[CriticEnsemble]
    config: eqx.AbstractVar[CriticConfig]

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def discount(self) -> float:
        return self.config.discount

    def value_function(self):
        return self.online.model.batch_values  # the online ensemble alone

    def values(self, cond, action):
        return self.online.model(cond, action)

    def target_values(self, cond, action):
        return self.target(cond, action)

    def batch_values(self, obs, actions):
        return self.online.model.batch_values(obs, actions)

    def target_batch_values(self, obs, actions):
        return self.target.batch_values(obs, actions)


class LearnedCritic(AbstractEnsembleCritic):
    r"""A [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble] fitted by TD to the pessimistic
    target of its EMA copy:

    $$\mathcal L = \tfrac1K\sum_k \operatorname{mean}_i w_i\big(Q_k(s_i, a_i) - y_i\big)^2,\qquad
      y_i = r_i + \gamma^h m_i\big(\bar Q^-(s_i', a_i') - \rho\,\mathrm{std}\,Q^-(s_i', a_i')\big),$$

    with $a'$ the agent's policy at $s'$ and $w$ the batch's validity weights.

    Batches are evaluated with
    [`CriticEnsemble.batch_values`][interpolant_rl.nn.CriticEnsemble.batch_values] (members
    outermost, which XLA compiles without a transpose around every layer), here and in
    `batch_values` / `mean_values`, which the agents' actor losses use.

    **Fields:** `online` (a `Trained` ensemble), `target`, `config` (static).
    """

    online: Trained
    target: CriticEnsemble
    config: CriticConfig

    @classmethod
    def create(cls, obs_dim: int, action_dim: int, config: CriticConfig, key: PRNGKeyArray):
        online = trained_ensemble(obs_dim, action_dim, config, key)
        return cls(online, online.model, config)

    def step(self, batch, next_actions, penalty=None):
        """The TD step above; `penalty(ensemble) -> (loss, metrics)` is added to its loss
        (see [`td_fit`][interpolant_rl.agents.td_fit])."""
        config = self.config
        targets = ensemble_td_targets(self.target, batch, next_actions, config)
        online, target, metrics = td_fit(
            self.online, self.target, batch, targets, config.target_rate, penalty
        )
        return LearnedCritic(online, target, config), metrics


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
    expectile: ScalarLike,
    weights: Float[Array, " batch"],
) -> tuple[Trained, Float[Array, ""]]:
    """One step of expectile regression of a [`StateValue`][interpolant_rl.agents.StateValue]
    towards `targets` (held fixed), weighted by the validity `weights`; returns
    `(value, loss)`. With `expectile = 0.5` it fits the (weighted) mean of the targets."""

    def loss_fn(network):
        loss = expectile_loss(jax.vmap(network)(observations), targets, expectile, weights=weights)
        return loss, loss

    return value.minimise(loss_fn)


class ExpectileCritic(AbstractEnsembleCritic):
    r"""IQL's critic: a $Q$ ensemble with an EMA target, and a state value $V$, learned in
    sample (no next action, hence no policy, enters the targets).

    One TD step fits $V$ by expectile regression
    ([`expectile_value_step`][interpolant_rl.agents.expectile_value_step]) to the
    pessimistic target value of the dataset action, $\bar Q^- - \rho\,\mathrm{std}\,Q^-$ (with
    $K = 2$ and $\rho = 1$ this is IQL's minimum of two critics), and each $Q_k$ by squared error
    to $r + \gamma^h m V(s')$ (the value before this step's update), then moves $Q^-$ by EMA.
    `step` ignores its `next_actions`.

    **Fields:** `online` (a `Trained` [`CriticEnsemble`][interpolant_rl.nn.CriticEnsemble]),
    `target`, `value` (a `Trained` [`StateValue`][interpolant_rl.agents.StateValue]),
    `config` and `expectile` (static).
    """

    online: Trained
    target: CriticEnsemble
    value: Trained
    config: CriticConfig
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
        online = trained_ensemble(obs_dim, action_dim, config, q_key)
        state_value = Trained.create(StateValue(obs_dim, value, key=v_key), online.optimiser)
        return cls(online, online.model, state_value, config, expectile)

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
        online, target, metrics = td_fit(
            self.online, self.target, batch, targets, config.target_rate
        )
        critic = ExpectileCritic(online, target, value, config, self.expectile)
        return critic, dict(metrics, value_loss=value_loss, v_mean=jnp.mean(next_v))


class FixedCritic(AbstractCritic):
    r"""A known critic that never changes: online and target values are both `function`, and
    the TD step does nothing. Use it to run an agent's policy extraction alone against a given
    $Q$ (e.g. [`interpolant_rl.testing.QuadraticCritic`][] in the exact-tilt benchmark).

    **Fields:** `function`, any `(cond, action) -> values` with values of shape `(K,)`;
    `horizon` and `discount` (static, default 1 and 0.99), the chunking of the data it is
    trained beside (no TD uses them).
    """

    function: Callable[[Array, Array], Array]
    horizon: int = eqx.field(static=True, default=1)
    discount: float = eqx.field(static=True, default=0.99)

    def values(self, cond, action):
        return self.function(cond, action)

    def target_values(self, cond, action):
        return self.function(cond, action)

    def step(self, batch, next_actions):
        return self, {}


def _zero_values(cond: Float[Array, " obs_dim"], action: Float[Array, " action_dim"]) -> Array:
    del cond, action
    return jnp.zeros(1)


def no_critic(horizon: int = 1, discount: float = 0.99) -> FixedCritic:
    """The critic of an agent that never reads $Q$ (behaviour cloning): a
    [`FixedCritic`][interpolant_rl.agents.FixedCritic] of zeros whose TD step does nothing, only
    recording the chunk length and discount of the data."""
    return FixedCritic(_zero_values, horizon=horizon, discount=discount)


class FixedExpectileCritic(AbstractCritic):
    r"""A known $Q$ with IQL's learned state value: [`FixedCritic`][interpolant_rl.agents.FixedCritic]'s
    values, and a TD step that only fits $V(s)$ by expectile regression to the mean of
    $Q(s, a)$ over its values at the dataset actions (the value half of
    [`ExpectileCritic`][interpolant_rl.agents.ExpectileCritic]'s step; its $Q$ half has nothing
    to learn). The exact-tilt benchmark gives it to agents whose critic is an `ExpectileCritic`,
    so that policy extraction that reads $V$ (IQL) runs against the known $Q$ too.

    **Fields:** `function`, `value` (a `Trained` [`StateValue`][interpolant_rl.agents.StateValue]),
    `expectile`, `horizon` and `discount` (static).
    """

    function: Callable[[Array, Array], Array]
    value: Trained
    expectile: float = eqx.field(static=True)
    horizon: int = eqx.field(static=True, default=1)
    discount: float = eqx.field(static=True, default=0.99)

    def values(self, cond, action):
        return self.function(cond, action)

    def target_values(self, cond, action):
        return self.function(cond, action)

    def step(self, batch, next_actions):
        del next_actions
        data_values = jnp.mean(self.target_batch_values(batch.observations, batch.actions), axis=-1)
        value, value_loss = expectile_value_step(
            self.value, batch.observations, data_values, self.expectile, batch.valid
        )
        return dataclasses.replace(self, value=value), dict(value_loss=value_loss)
