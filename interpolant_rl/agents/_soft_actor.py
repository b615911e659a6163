r"""A tanh-Gaussian policy trained by SAC with a learned temperature (RLPD, DSRL, CQL)."""

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..nn import TanhGaussianPolicy
from ..objectives import sac_actor_loss, Temperature, temperature_loss
from ._config import build_network, NetworkConfig
from ._optim import adam, Trained
from ._policies import StochasticPolicy


@runtime_checkable
class SoftActorSettings(Protocol):
    """The fields of an agent's frozen config that configure its `SoftActor`
    (RLPD's, DSRL's and CQL's configs have them, with their papers' defaults)."""

    actor: NetworkConfig
    learning_rate: float
    grad_clip: float | None
    initial_temperature: float
    target_entropy_per_dim: float


class SoftActor(eqx.Module):
    r"""A tanh-Gaussian policy trained by SAC with a learned temperature (shared by RLPD and CQL,
    in the action space, and DSRL, in the noise space of a flow).

    One `step` is an actor step on
    [`sac_actor_loss`][interpolant_rl.objectives.sac_actor_loss] (plus an optional regulariser)
    followed by a temperature step on
    [`temperature_loss`][interpolant_rl.objectives.temperature_loss] with the entropy estimated
    in that actor step.

    **Fields:** `policy` (a `Trained` [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]),
    `temperature` (a `Trained` [`Temperature`][interpolant_rl.objectives.Temperature]),
    `target_entropy` $\bar{\mathcal H}$ (static).
    """

    policy: Trained
    temperature: Trained
    target_entropy: float = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        obs_dim: int,
        action_dim: int,
        net: NetworkConfig,
        learning_rate: float,
        grad_clip: float | None,
        initial_temperature: float,
        target_entropy_per_dim: float,
        key: PRNGKeyArray,
    ) -> "SoftActor":
        """A fresh policy of `obs_dim` inputs and `action_dim` outputs, temperature
        `initial_temperature`, target entropy `target_entropy_per_dim * action_dim`."""
        if obs_dim < 1:
            raise ValueError(f"the SAC policy needs an observation: obs_dim >= 1, got {obs_dim}")
        policy = build_network(TanhGaussianPolicy, action_dim, obs_dim, net, key)
        return cls(
            Trained.create(policy, adam(learning_rate, grad_clip)),
            Trained.create(Temperature(initial_temperature), adam(learning_rate)),
            float(target_entropy_per_dim * action_dim),
        )

    @classmethod
    def from_config(
        cls, obs_dim: int, action_dim: int, config: SoftActorSettings, key: PRNGKeyArray
    ) -> "SoftActor":
        """[`create`](#create) with the settings of an agent's config."""
        return cls.create(
            obs_dim,
            action_dim,
            config.actor,
            config.learning_rate,
            config.grad_clip,
            config.initial_temperature,
            config.target_entropy_per_dim,
            key,
        )

    @property
    def alpha(self):
        r"""The current temperature $\alpha$."""
        return self.temperature.model()

    def sample(self, observations, key):
        """`(actions, log_probs)` for a batch: actions strictly inside $(-1, 1)^d$."""
        keys = jr.split(key, observations.shape[0])
        return jax.vmap(self.policy.model.sample_and_log_prob)(observations, keys)

    def acting_policy(self) -> "StochasticPolicy":
        """The policy network alone, acting (the actions of `sample`)."""
        return StochasticPolicy(self.policy.model)

    def step(
        self,
        q_function: Callable,
        observations,
        key: PRNGKeyArray,
        regulariser: Callable | None = None,
    ) -> tuple["SoftActor", dict]:
        """One actor step against the batched `q_function(observations, actions) -> (batch,)`
        (plus `regulariser(policy) -> (loss, metrics)` if given), then one temperature step."""
        alpha = self.alpha

        def loss_fn(policy):
            loss, metrics = sac_actor_loss(policy, observations, q_function, alpha, key)
            if regulariser is not None:
                extra, extra_metrics = regulariser(policy)
                loss, metrics = (
                    loss + extra,
                    {**metrics, **extra_metrics, "actor_loss": loss + extra},
                )
            return loss, metrics

        policy, metrics = self.policy.minimise(loss_fn)

        def alpha_loss(temperature):
            loss = temperature_loss(temperature, metrics["entropy"], self.target_entropy)
            return loss, loss

        temperature, alpha_metric = self.temperature.minimise(alpha_loss)
        actor = SoftActor(policy, temperature, self.target_entropy)
        return actor, dict(metrics, temperature=alpha, temperature_loss=alpha_metric)
