r"""A bounded, SAC-style action edit on top of another policy's action (QAM-EDIT, FEdit)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..data import Batch
from ..nn import TanhGaussianPolicy
from ..objectives import sac_actor_loss, Temperature, temperature_loss
from ._agent import AbstractPolicy
from ._config import build_network, NetworkConfig
from ._critic import AbstractCritic
from ._optim import Optimiser, Trained


class ActionEdit(eqx.Module):
    r"""A tanh-Gaussian edit policy $e \sim \pi_\psi(\cdot \mid s, a_0) \in (-1, 1)^d$ applied as

    $$a = \operatorname{clip}(a_0 + \lambda e, -1, 1),$$

    so $\|a - a_0\|_\infty \le \lambda$ (clipping into the box only moves $a$ toward $a_0 \in
    [-1, 1]^d$). Trained SAC-style (the QAM paper's QAM-EDIT and FEdit, and the public reference
    code), reparameterised, with a learned temperature $\alpha$:

    $$\mathcal L(\psi) = \operatorname{mean}\big[\alpha\log\pi_\psi(e \mid s, a_0)
      - \bar Q\big(s, \operatorname{clip}(a_0 + \lambda e, -1, 1)\big)\big]$$

    ([`sac_actor_loss`][interpolant_rl.objectives.sac_actor_loss] on the input
    $\operatorname{concat}[s, a_0]$), then one step of $\log\alpha$ on
    [`temperature_loss`][interpolant_rl.objectives.temperature_loss] toward the target entropy
    $\bar{\mathcal H}$. The constrained entropy is that of the **edit** $e$ (the tanh-Gaussian's
    exact log-density), not of the action $a$: $a$'s density would need the scale $\lambda$
    (a constant $-d\log\lambda$) and the clip (a point mass on the box's faces), and the reference
    code also constrains $\log\pi(e)$.

    Target entropy and initial temperature: the reference code's FEdit and QAM-EDIT use
    $\bar{\mathcal H} = -d/2$ (`edit_target_entropy_multiplier = 0.5` times the flattened action
    dimension) and $\alpha_0 = 1$ (a default `LogParam`); the paper's text does not give them.
    The reference steps $\alpha$ on $\alpha\,(\hat{\mathcal H} - \bar{\mathcal H})$; the library's
    `temperature_loss` steps $\log\alpha$ on $\log\alpha\,(\hat{\mathcal H} - \bar{\mathcal H})$
    (same direction, as RLPD and DSRL here).

    $\lambda = 0$ switches the edit off (QAM-EDIT then builds plain QAM and trains no edit).

    **Fields:** `policy` (a `Trained` [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]
    of `concat[s, a_0]`), `temperature` (a `Trained`
    [`Temperature`][interpolant_rl.objectives.Temperature]), `scale` $\lambda$ and
    `target_entropy` $\bar{\mathcal H}$ (static).
    """

    policy: Trained
    temperature: Trained
    scale: float = eqx.field(static=True)
    target_entropy: float = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        obs_dim: int,
        action_dim: int,
        net: NetworkConfig,
        optimiser: Optimiser,
        scale: float,
        key,
        *,
        initial_temperature: float = 1.0,
        target_entropy_per_dim: float = -0.5,
    ) -> "ActionEdit":
        r"""A fresh edit policy and temperature $\alpha_0$ = `initial_temperature`, target entropy
        $\bar{\mathcal H}$ = `target_entropy_per_dim * action_dim`; `optimiser` steps both."""
        if scale < 0:
            raise ValueError(f"edit scale must be >= 0, got {scale}")
        policy = build_network(TanhGaussianPolicy, action_dim, obs_dim + action_dim, net, key)
        return cls(
            Trained.create(policy, optimiser),
            Trained.create(Temperature(initial_temperature), optimiser),
            float(scale),
            float(target_entropy_per_dim * action_dim),
        )

    @property
    def alpha(self):
        r"""The current temperature $\alpha$."""
        return self.temperature.model()

    def edited(self, policy, observations, base_actions, key):
        """$\\operatorname{clip}(a_0 + \\lambda e, -1, 1)$ for a batch (differentiable in `policy`);
        the same per-row keys as the training loss."""
        return _edited(policy, self.scale, observations, base_actions, key)

    def apply(self, base_actions, edits):
        """$\\operatorname{clip}(a_0 + \\lambda e, -1, 1)$."""
        return _apply(self.scale, base_actions, edits)

    def acting_policy(self, base: AbstractPolicy) -> "EditedPolicy":
        """The edit applied to the actions of a `base` policy, as an acting policy."""
        return EditedPolicy(base, self.policy.model, self.scale)

    def step(self, critic: AbstractCritic, batch: Batch, base_actions, key):
        """One edit-policy step on the SAC loss above, then one temperature step.

        **Returns:** `(edit, metrics)` with `edit_loss`, `edit_q_loss` ($-\\operatorname{mean}Q$),
        `edit_entropy` $\\hat{\\mathcal H}$ of $e$, `edit_temperature` $\\alpha$ (the one used in
        this step) and `edit_temperature_loss`."""
        base_actions = jax.lax.stop_gradient(base_actions)
        observations = batch.observations
        inputs = jnp.concatenate([observations, base_actions], axis=-1)
        alpha = self.alpha

        def q_of_edit(_, edits):
            return critic.mean_values(observations, self.apply(base_actions, edits))

        def loss_fn(policy):
            return sac_actor_loss(policy, inputs, q_of_edit, alpha, key)

        policy, sac = self.policy.minimise(loss_fn)

        def alpha_loss(temperature):
            loss = temperature_loss(temperature, sac["entropy"], self.target_entropy)
            return loss, loss

        temperature, alpha_metric = self.temperature.minimise(alpha_loss)
        metrics = dict(
            edit_loss=sac["actor_loss"],
            edit_q_loss=sac["q_loss"],
            edit_entropy=sac["entropy"],
            edit_temperature=alpha,
            edit_temperature_loss=alpha_metric,
        )
        return dataclasses.replace(self, policy=policy, temperature=temperature), metrics


def _apply(scale, base_actions, edits):
    return jnp.clip(base_actions + scale * edits, -1.0, 1.0)


def _edited(policy, scale, observations, base_actions, key):
    inputs = jnp.concatenate([observations, base_actions], axis=-1)
    keys = jr.split(key, observations.shape[0])
    edits, _ = jax.vmap(policy.sample_and_log_prob)(inputs, keys)
    return _apply(scale, base_actions, edits)


class EditedPolicy(AbstractPolicy):
    r"""$a = \operatorname{clip}(a_0 + \lambda e, -1, 1)$ with $a_0$ from the `base` policy and
    $e \sim \pi_\psi(\cdot \mid s, a_0)$ (QAM-EDIT, FEdit); `key` is split into the base's
    key and the edit's.

    **Fields:** `base`, `network` (the edit's
    [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy]), `scale` $\lambda$ (static).
    """

    base: AbstractPolicy
    network: TanhGaussianPolicy
    scale: float = eqx.field(static=True)

    def __call__(self, observations, key):
        base_key, edit_key = jr.split(key)
        base_actions = self.base(observations, base_key)
        return _edited(self.network, self.scale, observations, base_actions, edit_key)
