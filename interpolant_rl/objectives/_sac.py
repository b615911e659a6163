r"""Soft actor-critic pieces shared by DSRL (SAC in the noise space of a flow) and RLPD (SAC in
the action space): the reparameterised actor loss of a tanh-Gaussian policy, the learned
temperature and its loss, and the soft (entropy-regularised) TD reward.

The policy is an [`interpolant_rl.nn.TanhGaussianPolicy`][]: $a = \tanh(\mu + \sigma\varepsilon)$
with the exact change-of-variables log-density (its `sample_and_log_prob` already subtracts
$\sum_i\log(1 - \tanh^2 u_i)$). The temperature is a scalar $\alpha = e^{\log\alpha}$, learned so
that the policy's entropy tracks a target $\bar{\mathcal H}$.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Scalar, ScalarLike
from ..nn import TanhGaussianPolicy


QFunction = Callable[
    [Float[Array, "batch obs_dim"], Float[Array, "batch dim"]], Float[Array, " batch"]
]


class Temperature(eqx.Module):
    r"""The SAC temperature $\alpha = e^{\log\alpha} > 0$, stored as its logarithm (the
    parameter [`temperature_loss`][interpolant_rl.objectives.temperature_loss] trains).

    **Fields:** `log_alpha`, a scalar array.
    """

    log_alpha: Float[Array, ""]

    def __init__(self, initial: float = 1.0):
        r"""**Arguments:** `initial`, the starting $\alpha > 0$ (1 in RLPD and in DSRL's SAC)."""
        if not initial > 0:
            raise ValueError(f"the initial temperature must be > 0, got {initial}")
        self.log_alpha = jnp.log(jnp.asarray(initial, dtype=jnp.float32))

    def __call__(self) -> Scalar:
        r"""$\alpha = e^{\log\alpha}$."""
        return jnp.exp(self.log_alpha)


def sac_actor_loss(
    policy: TanhGaussianPolicy,
    observations: Float[Array, "batch obs_dim"],
    q_function: QFunction,
    temperature: ScalarLike,
    key: PRNGKeyArray,
) -> tuple[Scalar, dict[str, Scalar]]:
    r"""The SAC actor loss of a tanh-Gaussian policy, reparameterised:

    $$\mathcal L(\phi) = \operatorname{mean}_i\big[\alpha\log\pi_\phi(a_i \mid s_i) - Q(s_i, a_i)\big],
      \qquad a_i = \tanh\big(\mu_\phi(s_i) + \sigma_\phi(s_i)\,\varepsilon_i\big),\
      \varepsilon_i \sim \mathcal N(0, I),$$

    with $\log\pi_\phi$ the exact tanh-squashed density and $\alpha$ held fixed (a stop-gradient:
    the temperature has its own loss). The gradient flows into $\phi$ through both the
    log-density and the actions (through $Q$ into its action argument only: hold the critic's
    own parameters fixed).

    **Arguments:**

    - `policy`: the [`TanhGaussianPolicy`][interpolant_rl.nn.TanhGaussianPolicy] being trained.
    - `observations`: the states (the policy's inputs), shape `(batch, obs_dim)`.
    - `q_function`: the batched critic `(observations, actions) -> (batch,)` at the policy's
      actions in $(-1, 1)^d$ (DSRL passes a noise-space critic of the scaled action).
    - `temperature`: $\alpha \ge 0$.
    - `key`: one key, split into one per row.

    **Returns:** `(loss, metrics)` with `actor_loss`, `q_loss` ($-\operatorname{mean}Q$) and
    `entropy`, the (stop-gradient) estimate $\hat{\mathcal H} = -\operatorname{mean}_i\log\pi(a_i\mid s_i)$
    that [`temperature_loss`][interpolant_rl.objectives.temperature_loss] takes.
    """
    keys = jr.split(key, observations.shape[0])
    actions, log_probs = jax.vmap(policy.sample_and_log_prob)(observations, keys)
    q = q_function(observations, actions)
    alpha = jax.lax.stop_gradient(jnp.asarray(temperature, dtype=log_probs.dtype))
    loss = jnp.mean(alpha * log_probs - q)
    entropy = -jnp.mean(jax.lax.stop_gradient(log_probs))
    return loss, dict(actor_loss=loss, q_loss=-jnp.mean(q), entropy=entropy)


def temperature_loss(
    temperature: Temperature, entropy: ScalarLike, target_entropy: ScalarLike
) -> Scalar:
    r"""The temperature loss on $\log\alpha$,

    $$\mathcal L(\log\alpha) = \log\alpha\cdot\mathrm{sg}\big(\hat{\mathcal H} - \bar{\mathcal H}\big),$$

    whose gradient step raises $\alpha$ when the policy's entropy $\hat{\mathcal H}$ is below the
    target $\bar{\mathcal H}$ (more weight on $-\log\pi$ in the actor loss, hence more entropy)
    and lowers it when above. This is SAC's automatic entropy tuning written on $\log\alpha$ (as
    softlearning and Stable-Baselines3 do: the step in $\log\alpha$ does not depend on $\alpha$'s
    size); RLPD's code writes $\alpha\cdot(\hat{\mathcal H} - \bar{\mathcal H})$, the same
    direction.

    **Arguments:**

    - `temperature`: the [`Temperature`][interpolant_rl.objectives.Temperature] being trained.
    - `entropy`: $\hat{\mathcal H}$, e.g. the `entropy` metric of
      [`sac_actor_loss`][interpolant_rl.objectives.sac_actor_loss] (no gradient is taken).
    - `target_entropy`: $\bar{\mathcal H}$ (RLPD: $-d/2$; SAC: $-d$).

    **Returns:** the scalar loss.
    """
    gap = jax.lax.stop_gradient(jnp.asarray(entropy) - target_entropy)
    return temperature.log_alpha * gap


def soft_td_rewards(
    rewards: Float[Array, " batch"],
    masks: Float[Array, " batch"],
    next_log_probs: Float[Array, " batch"],
    temperature: ScalarLike,
    discount: ScalarLike,
) -> Float[Array, " batch"]:
    r"""Rewards that turn an ordinary TD target into SAC's soft one (the entropy backup):

    $$\tilde r = r - \gamma\,m\,\alpha\log\pi(a' \mid s'),\qquad\text{so}\qquad
      \tilde r + \gamma\,m\,Q'(s', a') = r + \gamma\,m\big(Q'(s', a') - \alpha\log\pi(a'\mid s')\big),$$

    with $a'$ the policy's sample at $s'$. The shift is the same for every ensemble member, so a
    pessimistic target $\bar Q' - \rho\,\mathrm{std}\,Q'$ becomes its soft version exactly. For
    action chunks pass $\gamma^h$ as `discount`.

    **Arguments:** the batch's `rewards` and `masks`, `next_log_probs`
    $\log\pi(a' \mid s')$, `temperature` $\alpha$ and `discount` (no gradient is taken).

    **Returns:** $\tilde r$, shape `(batch,)`.
    """
    shift = discount * masks * jnp.asarray(temperature) * next_log_probs
    return rewards - jax.lax.stop_gradient(shift)
