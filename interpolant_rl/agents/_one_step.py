r"""A one-step policy distilled from a teacher flow and trained against a critic (FQL, QAM-FQL)."""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ..data import Batch
from ..nn import OneStepPolicy
from ..objectives import normalised_q_loss, one_step_distillation_loss
from ._config import build_network, Hyperparameters, NetworkConfig
from ._critic import AbstractCritic
from ._optim import Trained
from ._policies import NoisePolicy


@dataclasses.dataclass(frozen=True)
class DistillationSettings(Hyperparameters):
    """The one-step policy's loss settings, copied from its agent's configuration (a
    configuration itself, so that a sweep of the agent's $\alpha$ reaches it)."""

    alpha: float  # distillation weight
    normalise_q: bool


class OneStepDistilled(eqx.Module):
    r"""A one-step policy distilled from a teacher flow and trained against the critic (shared
    by FQL and QAM-FQL).

    **Fields:** `policy` (a `Trained` [`OneStepPolicy`][interpolant_rl.nn.OneStepPolicy]),
    `action_dim` (static), `settings` ($\alpha$ and whether $Q$ is normalised), `distil`
    (static: $\alpha > 0$).
    """

    policy: Trained
    action_dim: int = eqx.field(static=True)
    settings: DistillationSettings
    distil: bool = eqx.field(static=True)

    @classmethod
    def create(cls, obs_dim, action_dim, net: NetworkConfig, optimiser, alpha, normalise_q, key):
        policy = build_network(OneStepPolicy, action_dim, obs_dim, net, key)
        settings = DistillationSettings(alpha, normalise_q)
        return cls(Trained.create(policy, optimiser), action_dim, settings, alpha != 0)

    @property
    def alpha(self) -> float | Array:
        return self.settings.alpha

    @property
    def normalise_q(self) -> bool:
        return self.settings.normalise_q

    def step(self, critic: AbstractCritic, batch: Batch, teacher: Callable, key: PRNGKeyArray):
        """One step on the distillation + Q loss; `teacher(observations, noise) -> actions`,
        whose actions are clipped to $[-1, 1]$ before they are distilled.

        With `alpha == 0` (FQL without distillation; QAM-FQL's $\alpha = 0$ is plain QAM and
        never gets here) the distillation term is multiplied by zero, so
        the teacher is not run at all (a 10-step flow per update that XLA cannot remove, since
        `0.0 * x` is not `0` for non-finite `x`): the loss is the Q term alone, with the same
        value and gradient, and the `distillation_loss` metric is left out.
        """
        noise = jr.normal(key, batch.actions.shape)
        if not self.distil:  # static: decided when tracing

            def q_only_loss(policy):
                actions = jax.vmap(policy)(noise, batch.observations)
                q = critic.mean_values(batch.observations, jnp.clip(actions, -1.0, 1.0))
                q_loss = normalised_q_loss(q) if self.normalise_q else -jnp.mean(q)
                return q_loss, dict(q_loss=q_loss)

            policy, metrics = self.policy.minimise(q_only_loss)
            return dataclasses.replace(self, policy=policy), metrics

        # FQL eq. (39) / QAM-FQL eq. (42): the teacher's ODE action clipped to the action box
        teacher_actions = jnp.clip(teacher(batch.observations, noise), -1.0, 1.0)

        def loss_fn(policy):
            return one_step_distillation_loss(
                policy,
                teacher_actions,
                noise,
                batch.observations,
                critic.mean_values,
                self.alpha,
                normalise_q=self.normalise_q,
            )

        policy, metrics = self.policy.minimise(loss_fn)
        return dataclasses.replace(self, policy=policy), metrics

    def acting_policy(self) -> NoisePolicy:
        """$a = \\operatorname{clip}(\\pi_\\omega(z, s), -1, 1)$, $z \\sim \\mathcal N(0, I)$."""
        return NoisePolicy(self.policy.model, self.action_dim)
