r"""Value learning without a policy in the loop: IQL's expectile regression (IFQL's value, FAWAC's
baseline) and AWAC's clipped exponential advantage weights (FAWAC)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Scalar, ScalarLike
from ._weighting import weighted_mean


def expectile_loss(
    predictions: Float[Array, " batch"],
    targets: Float[Array, " batch"],
    expectile: ScalarLike,
    *,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""IQL's asymmetric squared error (expectile regression) of `predictions` $v$ towards
    `targets` $y$:

    $$\mathcal L(v) = \frac{\sum_i w_i\,\big|\kappa - \mathbf 1[y_i < v_i]\big|\,(y_i - v_i)^2}
      {\max(\sum_i w_i, 1)}.$$

    Over a constant $v$ its minimiser is the $\kappa$-expectile of the targets, the $m$ that
    solves $\kappa\,\mathbb E(y - m)_+ = (1 - \kappa)\,\mathbb E(m - y)_+$: the mean at
    $\kappa = \tfrac12$ (where the loss is half the mean squared error), tending to the maximum as
    $\kappa \to 1$. IFQL fits $V(s)$ to $Q(s, a)$ on dataset actions with $\kappa = 0.9$, an
    in-sample soft maximum over the behaviour's actions.

    **Arguments:**

    - `predictions`: $v_i$, e.g. $V(s_i)$, shape `(batch,)` (differentiated).
    - `targets`: $y_i$, e.g. $Q^-(s_i, a_i)$, shape `(batch,)` (held fixed: wrapped in
      `stop_gradient`).
    - `expectile`: $\kappa \in (0, 1)$.
    - `weights`: optional per-sample weights $w_i$ (the validity mask; all ones if `None`,
      then the loss is the plain mean).

    **Returns:** the scalar loss.
    """
    if not isinstance(expectile, jax.core.Tracer) and not 0.0 < expectile < 1.0:
        raise ValueError(f"expectile must lie in (0, 1), got {expectile}")
    differences = jax.lax.stop_gradient(targets) - predictions
    asymmetry = jnp.where(differences >= 0, expectile, 1.0 - expectile)
    return weighted_mean(asymmetry * differences**2, weights)


def advantage_weights(
    q_values: Float[Array, " batch"],
    values: Float[Array, " batch"],
    tau: ScalarLike,
    max_weight: ScalarLike,
) -> Float[Array, " batch"]:
    r"""AWAC / IQL's clipped exponential advantage weights,

    $$w_i = \min\big(e^{\tau\,(Q(s_i, a_i) - V(s_i))},\ w_{\max}\big),$$

    computed as $e^{\min(\tau A_i,\ \log w_{\max})}$ so that a large advantage never overflows.
    Weighting flow matching on dataset pairs by $e^{\tau A}$ makes its minimiser the velocity of
    $\pi_\beta(a\mid s)\,e^{\tau Q(s, a)}/Z(s)$ (the baseline $V(s)$ only rescales each state's
    weights), so $\tau$ is the inverse temperature of that tilt; the clip $w_{\max}$ bounds the
    variance of the weighted loss and truncates the tilt where $\tau A > \log w_{\max}$.

    **Arguments:**

    - `q_values`: $Q(s_i, a_i)$ at the dataset actions, shape `(batch,)`.
    - `values`: the baseline $V(s_i)$, shape `(batch,)`.
    - `tau`: the inverse temperature $\tau \ge 0$.
    - `max_weight`: the clip $w_{\max} > 0$ (100 in IQL, AWAC and the QAM reference).

    **Returns:** the weights, shape `(batch,)`, with no gradient (they weight a loss).
    """
    if not isinstance(max_weight, jax.core.Tracer) and not max_weight > 0:
        raise ValueError(f"max_weight must be > 0, got {max_weight}")
    exponent = jnp.minimum(tau * (q_values - values), jnp.log(max_weight))
    return jax.lax.stop_gradient(jnp.exp(exponent))


def cql_penalty(
    candidate_values: Float[Array, "batch samples members"],
    log_densities: Float[Array, "batch samples"],
    data_values: Float[Array, "batch members"],
    temperature: ScalarLike = 1.0,
    weights: Float[Array, " batch"] | None = None,
) -> Float[Array, ""]:
    r"""CQL's conservative penalty (CQL(H), Kumar et al. 2020) with the importance-sampled
    log-sum-exp of its public code, averaged over the ensemble's members $k$:

    $$\operatorname{mean}_i w_i \tfrac1K\sum_k\Big[T\log\sum_j \exp\Big(\frac{Q_k(s_i, a_{ij}) - \log\mu(a_{ij})}{T}\Big)
      - Q_k(s_i, a_i)\Big],$$

    the soft maximum of $Q$ over actions estimated from candidates $a_{ij} \sim \mu$ (e.g.
    uniform ones and policy samples at $s$ and $s'$) divided by their proposal density, minus
    $Q$ at the dataset action: pushing it down lowers out-of-distribution values relative to
    the data's.

    **Arguments:** `candidate_values` $Q_k(s_i, a_{ij})$, `log_densities` $\log\mu(a_{ij})$
    (held fixed), `data_values` $Q_k(s_i, a_i)$, the `temperature` $T$ and the batch's validity
    `weights`.

    **Returns:** the penalty (before CQL's weight $\alpha$)."""
    shifted = (candidate_values - jax.lax.stop_gradient(log_densities)[..., None]) / temperature
    soft_max = temperature * jax.scipy.special.logsumexp(shifted, axis=1)  # (batch, members)
    return weighted_mean(jnp.mean(soft_max - data_values, axis=-1), weights)
