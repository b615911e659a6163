r"""The normalised Q term of Diffusion-QL-style actor losses (MoMa QL, OFQL)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Scalar


def normalised_q_loss(q_values: Float[Array, "*batch"], epsilon: float = 1e-6) -> Scalar:
    r"""The Q-maximisation term of a Diffusion-QL-style actor loss, normalised by the critic's
    scale:

    $$\mathcal L_Q = -\frac{\operatorname{mean}_i Q_i}{\max\big(\mathrm{sg}(\operatorname{mean}_i |Q_i|), \epsilon\big)},$$

    with $\mathrm{sg}$ a stop-gradient, so $\partial\mathcal L_Q/\partial Q_i = -1/(n\,\operatorname{mean}|Q|)$:
    the gradient is the plain $-\nabla\operatorname{mean}Q$ rescaled to be independent of the
    reward scale, and the value lies in $[-1, 1]$ ($-1$ when every $Q_i > 0$). Agents multiply
    it by $\eta$ and add their behaviour-cloning term (MoMa QL: the MMD loss; OFQL: the MeanFlow
    loss). Diffusion-QL has no floor on the denominator; we floor it at $\epsilon$ because it
    does vanish in practice: a deterministic policy in a single state at a critic's zero (the
    exact-tilt problems at initialisation) gives $0/0$.

    **Arguments:**

    - `q_values`: $Q(s_i, a_i^\pi)$ at the policy's actions, any shape (e.g. `(batch,)`, or
      `(ensemble, batch)` to average an ensemble's members as well).
    - `epsilon`: the floor of the denominator.

    **Returns:** the scalar $\mathcal L_Q$.
    """
    scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(q_values)))
    return -jnp.mean(q_values) / jnp.maximum(scale, epsilon)
