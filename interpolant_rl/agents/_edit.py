r"""A bounded action edit on top of another policy's action (QAM-EDIT, FEdit)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..nn import TanhGaussianPolicy
from ._core import AbstractCritic, Batch, build_network, NetworkConfig, Trained


class ActionEdit(eqx.Module):
    r"""A tanh-Gaussian edit policy $e \sim \pi_\psi(\cdot \mid s, a_0) \in (-1, 1)^d$ applied as

    $$a = \operatorname{clip}(a_0 + \lambda e, -1, 1),$$

    so $\|a - a_0\|_\infty \le \lambda$ (clipping into the box only moves $a$ toward $a_0 \in
    [-1, 1]^d$). Trained by the reparameterised critic gradient, $\min_\psi -\operatorname{mean}
    Q(s, a)$; $\lambda = 0$ switches the edit off.

    **Fields:** `policy` (a `Trained` [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]
    of `concat[s, a_0]`), `scale` $\lambda$ (static).
    """

    policy: Trained
    scale: float = eqx.field(static=True)

    @classmethod
    def create(cls, obs_dim, action_dim, net: NetworkConfig, optimiser, scale, key):
        if scale < 0:
            raise ValueError(f"edit scale must be >= 0, got {scale}")
        policy = build_network(TanhGaussianPolicy, action_dim, obs_dim + action_dim, net, key)
        return cls(Trained.create(policy, optimiser), float(scale))

    def edited(self, policy, observations, base_actions, key):
        """$\\operatorname{clip}(a_0 + \\lambda e, -1, 1)$ for a batch (differentiable in `policy`)."""
        inputs = jnp.concatenate([observations, base_actions], axis=-1)
        keys = jr.split(key, observations.shape[0])
        edits, _ = jax.vmap(policy.sample_and_log_prob)(inputs, keys)
        return jnp.clip(base_actions + self.scale * edits, -1.0, 1.0)

    def step(self, critic: AbstractCritic, batch: Batch, base_actions, key):
        base_actions = jax.lax.stop_gradient(base_actions)

        def loss_fn(policy):
            actions = self.edited(policy, batch.observations, base_actions, key)
            loss = -jnp.mean(critic.mean_values(batch.observations, actions))
            return loss, dict(edit_loss=loss)

        policy, metrics = self.policy.minimise(loss_fn)
        return dataclasses.replace(self, policy=policy), metrics

    def sample(self, observations, base_actions, key):
        return self.edited(self.policy.model, observations, base_actions, key)
