r"""The normalised Q term of Diffusion-QL-style actor losses (MoMa QL, OFQL)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Scalar


def normalised_q_loss(q_values: Float[Array, "*batch"]) -> Scalar:
    r"""The Q-maximisation term of a Diffusion-QL-style actor loss, normalised by the critic's
    scale:

    $$\mathcal L_Q = -\frac{\operatorname{mean}_i Q_i}{\mathrm{sg}\big(\operatorname{mean}_i |Q_i|\big)},$$

    with $\mathrm{sg}$ a stop-gradient, so $\partial\mathcal L_Q/\partial Q_i = -1/(n\,\operatorname{mean}|Q|)$:
    the gradient is the plain $-\nabla\operatorname{mean}Q$ rescaled to be independent of the
    reward scale, and the value lies in $[-1, 1]$ ($-1$ when every $Q_i > 0$). Agents multiply
    it by $\eta$ and add their behaviour-cloning term (MoMa QL: the MMD loss; OFQL: the MeanFlow
    loss). As in Diffusion-QL there is no floor on the denominator: it is zero only when every
    $Q_i$ is exactly zero.

    **Arguments:**

    - `q_values`: $Q(s_i, a_i^\pi)$ at the policy's actions, any shape (e.g. `(batch,)`, or
      `(ensemble, batch)` to average an ensemble's members as well).

    **Returns:** the scalar $\mathcal L_Q$.
    """
    return -jnp.mean(q_values) / jax.lax.stop_gradient(jnp.mean(jnp.abs(q_values)))
