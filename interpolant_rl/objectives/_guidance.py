r"""The losses of classifier guidance by a critic (CGQL): the MSE or Linex regression that fits a
noise-conditioned critic ([`interpolant_rl.nn.NoiseConditionedCritic`][]) to the clean critic,
for the guided velocity [`interpolant_rl.nn.GuidedVelocity`][] (with its derivation)."""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, Scalar, ScalarLike, TimeValue
from .._interpolant import AbstractInterpolant
from ._weighting import weighted_mean


def _linex(x, clip):
    # e^x - x - 1 up to x = clip, continued by its tangent beyond (convex, C^1, no overflow)
    inside = jnp.minimum(x, clip)
    return jnp.exp(inside) * (1.0 + x - inside) - x - 1.0


def linex_loss(
    predictions: Float[Array, " batch"],
    targets: Float[Array, " batch"],
    tau: ScalarLike,
    *,
    clip: ScalarLike = 5.0,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""The Linex loss at inverse temperature $\tau$, whose minimiser is the log-mean-exp:

    $$\mathcal L(q) = \frac{\sum_i w_i\,\ell\big(\tau(y_i - q_i)\big)}{\tau^2\max(\sum_i w_i, 1)},
      \qquad \ell(x) = e^x - x - 1.$$

    Setting $\partial_q \mathbb E\,\ell(\tau(y - q)) = \tau\,(1 - \mathbb E e^{\tau(y - q)}) = 0$
    gives $q^* = \tfrac1\tau\log\mathbb E\,e^{\tau y}$, so a regression of $Q_\phi(s, x_u, u)$ on
    clean values $Q(s, a)$ learns $\tfrac1\tau\log\mathbb E[e^{\tau Q} \mid x_u]$, the exact
    guidance of the tilt $\pi_\beta e^{\tau Q}$. Underestimates are penalised exponentially,
    overestimates linearly; as $\tau \to 0$ the loss tends to $\tfrac12(y - q)^2$ (the $1/\tau^2$
    normalisation). For stability $\ell$ is continued by its tangent above $x =$ `clip`
    (convex and $C^1$; the minimiser is exact whenever every $\tau(y_i - q) \le$ `clip`).

    **Arguments:**

    - `predictions`: $q_i$, shape `(batch,)` (differentiated).
    - `targets`: $y_i$, shape `(batch,)` (held fixed: wrapped in `stop_gradient`).
    - `tau`: $\tau > 0$.
    - `clip`: where the exponential stops (5 in the QAM reference).
    - `weights`: optional per-sample weights (the validity mask).

    **Returns:** the scalar loss.
    """
    if not isinstance(tau, jax.core.Tracer) and not tau > 0:
        raise ValueError(f"linex_loss needs tau > 0, got {tau} (use a squared error for tau = 0)")
    scaled = tau * (jax.lax.stop_gradient(targets) - predictions)
    return weighted_mean(_linex(scaled, clip), weights) / tau**2


def noisy_critic_loss(
    interpolant: AbstractInterpolant,
    critic: TimeValue,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    targets: Float[Array, " batch"],
    key: PRNGKeyArray,
    *,
    tau: ScalarLike | None = None,
    clip: ScalarLike = 5.0,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""Fit a noise-conditioned critic to the clean critic's values: with $u \sim U[0, 1]$,
    $z \sim \mathcal N(0, I)$ and $x_u = \alpha_u a + \beta_u z$,

    $$\mathcal L(\phi) = \mathbb E\,\lambda\big(Q_\phi(s, x_u, u),\ y\big),\qquad y = Q(s, a),$$

    with $\lambda$ the squared error $\tfrac12(y - q)^2$ when `tau` is `None` (minimiser
    $\mathbb E[Q \mid x_u]$, CGQL-MSE: the exponential and logarithm dropped) or the
    [`linex_loss`][interpolant_rl.objectives.linex_loss] at inverse temperature `tau`
    (minimiser $\tfrac1\tau\log\mathbb E[e^{\tau Q} \mid x_u]$, CGQL-Linex: exact guidance).

    **Arguments:**

    - `interpolant`: the interpolant of the flow being guided.
    - `critic`: the noise-conditioned critic `(u, x, cond) -> scalar` being trained (e.g.
      [`NoiseConditionedCritic`][interpolant_rl.nn.NoiseConditionedCritic]).
    - `actions`: clean dataset actions $a$, shape `(batch, dim)`.
    - `cond`: per-sample states batched along axis 0 (or `None`).
    - `targets`: $y = Q(s, a)$ of the clean actions, shape `(batch,)` (held fixed).
    - `key`: randomness for $u$ and $z$.
    - `tau`, `clip`: `None` for the squared error, else the Linex loss's $\tau > 0$ and clip.
    - `weights`: optional per-sample weights (the validity mask).

    **Returns:** the scalar loss.
    """
    time_key, noise_key = jr.split(key)
    u = jr.uniform(time_key, targets.shape, dtype=actions.dtype)
    z = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    noisy = jax.vmap(interpolant.interpolate)(z, actions, u)
    predictions = jax.vmap(critic, in_axes=(0, 0, None if cond is None else 0))(u, noisy, cond)
    if tau is None:
        return weighted_mean(0.5 * (jax.lax.stop_gradient(targets) - predictions) ** 2, weights)
    return linex_loss(predictions, targets, tau, clip=clip, weights=weights)
