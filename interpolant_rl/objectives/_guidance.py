r"""Classifier guidance of a flow by a critic (CGQL): the guided velocity (with its derivation),
the noise-conditioned critic, and the losses (MSE or Linex) that fit it to the clean critic."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, Scalar, ScalarLike, Vector, VelocityField
from .._interpolant import AbstractInterpolant
from ..nn import MLP
from ..nn._mlp import _network_input
from ._weighting import weighted_mean


TimeValue = Callable[[Scalar, Vector, Cond], Scalar]
"""A scalar function of the flow time, the (noisy) action and the state: `(u, x, cond) -> Q`."""


class NoiseConditionedCritic(eqx.Module):
    r"""A critic of noisy actions, $Q_\phi(s, x_u, u)$ = `MLP(concat[cond, x, u])` (the flow time a
    raw scalar, as in [`interpolant_rl.nn.VelocityField`][]), with the signature
    `(u, x, cond) -> scalar` of a velocity field, so it plugs into
    [`GuidedVelocity`][interpolant_rl.objectives.GuidedVelocity].

    Fit it with [`noisy_critic_loss`][interpolant_rl.objectives.noisy_critic_loss].

    **Fields:** `mlp`, `action_dim`, `obs_dim`.
    """

    mlp: MLP
    action_dim: int = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)

    def __init__(
        self,
        action_dim: int,
        obs_dim: int,
        width: int,
        depth: int,
        *,
        layer_norm: bool = True,
        key: PRNGKeyArray,
    ):
        r"""**Arguments:**

        - `action_dim`: the dimension of $x$.
        - `obs_dim`: the dimension of `cond`; `0` for a critic of the action alone (`cond=None`).
        - `width`, `depth`, `layer_norm`: see [`interpolant_rl.nn.MLP`][] (LayerNorm on by
          default, as in the critics).
        - `key`: a JAX PRNG key.
        """
        self.mlp = MLP(obs_dim + action_dim + 1, 1, width, depth, layer_norm=layer_norm, key=key)
        self.action_dim = action_dim
        self.obs_dim = obs_dim

    def __call__(
        self,
        t: ScalarLike,
        x: Float[Array, " action_dim"],
        cond: Float[Array, " obs_dim"] | None = None,
    ) -> Scalar:
        r"""**Returns:** $Q_\phi(\text{cond}, x, t)$, a scalar."""
        inputs = _network_input("NoiseConditionedCritic", self.obs_dim, cond, x, self.action_dim, t)
        return self.mlp(inputs)[0]


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
      [`NoiseConditionedCritic`][interpolant_rl.objectives.NoiseConditionedCritic]).
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


class GuidedVelocity(eqx.Module):
    r"""A velocity field guided by a (noise-conditioned) critic:

    $$\tilde v(u, x \mid s) = v_\beta(u, x \mid s)
      + \vartheta\,\tau\,c(u)\,\nabla_x Q_u(s, x),\qquad
      c(u) = -\frac{\beta_u\Delta_u}{\alpha_u}\ \Big(= \frac{1 - u}{u}\text{ for the linear
      interpolant}\Big),$$

    the velocity that the interpolant associates with the score of $p_u\,h_u^{\vartheta}$, where
    $\log h_u = \tau Q_u$. With $\vartheta = 1$ and
    $Q_u = \tfrac1\tau\log\mathbb E[e^{\tau Q} \mid x_u]$ its flow samples exactly
    $\pi_\beta\,e^{\tau Q}/Z$; $\vartheta$ scales the guiding score as in classifier guidance
    ($\vartheta = 0$ is the behaviour flow).

    **Derivation** (linear interpolant $x_u = u\,a + (1 - u)\,z$, $u = 0$ noise, $u = 1$ data).
    The velocity is $v = \mathbb E[a - z \mid x_u = x]$; with $\hat a = x + (1-u)v$, $\hat z = x - uv$
    and the score $\nabla\log p_u = -\hat z/(1-u)$,

    $$v(x, u) = \frac{x + (1 - u)\,\nabla_x \log p_u(x)}{u}.$$

    Tilting the data, $\tilde p_1(a) \propto p_1(a)\,e^{\tau Q(a)}$, tilts every marginal by
    $h_u(x) = \mathbb E[e^{\tau Q(a)} \mid x_u = x]$, so the tilted score is
    $\nabla\log p_u + \nabla\log h_u$ and, $v$ being affine in the score,

    $$\tilde v(x, u) = v(x, u) + \frac{1 - u}{u}\,\nabla_x \log h_u(x)
      = v(x, u) + \frac{1 - u}{u}\,\tau\,\nabla_x Q_u(x),\qquad
      Q_u(x) = \tfrac1\tau\log\mathbb E\big[e^{\tau Q(a)} \mid x_u = x\big].$$

    For a general interpolant $\alpha_u a + \beta_u z$ the factor $\frac{1-u}{u}$ is
    $-\beta_u\Delta_u/\alpha_u = \beta_u(\dot\alpha_u\beta_u/\alpha_u - \dot\beta_u)$ ($\sigma_u^2/2$ of
    the memoryless schedule). The QAM issue writes the guided velocity as
    $v_\beta + \vartheta\,((1-u)\tau\nabla Q + a)/u$: that is $\vartheta$ times the velocity *of the
    score* $\tau\nabla Q$ alone, affine offset $x/u$ included. Only the score part belongs to the
    tilt; the extra $\vartheta x/u$ is a radial expansion that scales every trajectory by
    $(1/u_0)^{\vartheta}$ between a start time $u_0$ and 1 (2.3 % for $\vartheta = 0.01$,
    $u_0 = 0.1$), with no counterpart in the derivation, so it is left out here.

    **The singularity at $u = 0$.** $c(u) \sim 1/u$; the exact guidance stays finite because
    $\nabla_x \log h_u = O(u)$ (at pure noise $x_u$ says nothing about $a$), but a clean critic
    evaluated at a noisy point has no such factor. The guidance is therefore switched off for
    $u <$ `start` (and $c$ evaluated at $\max(u,$ `start`$)$): with 10 Euler steps and the default
    `start = 0.05`, only the first step (at $u = 0$) is unguided, as in the QAM reference. The
    exact guidance loses an $O(\text{start})$ part of its shift.

    **Fields:**

    - `interpolant`: the flow's interpolant.
    - `velocity`: the behaviour field $v_\beta$ `(u, x, cond) -> v`.
    - `value`: $Q_u$ as `(u, x, cond) -> scalar` (a noise-conditioned critic, or a clean critic
      that ignores $u$); differentiated in $x$ only.
    - `tau`: the inverse temperature $\tau$ of the tilt.
    - `guidance`: the guidance scale $\vartheta$.
    - `start`: the flow time from which the guidance acts, in $(0, 1]$.
    """

    interpolant: AbstractInterpolant
    velocity: VelocityField
    value: TimeValue
    tau: ScalarLike
    guidance: ScalarLike
    start: ScalarLike = 0.05

    def __check_init__(self):
        if not isinstance(self.start, jax.core.Tracer) and not 0.0 < self.start <= 1.0:
            raise ValueError(f"GuidedVelocity needs 0 < start <= 1, got {self.start}")

    def coefficient(self, t: ScalarLike) -> Scalar:
        r"""$c(u)$ at $\max(u,$ `start`$)$ for $u \ge$ `start`, else 0."""
        u = jnp.maximum(t, self.start)
        interpolant = self.interpolant
        c = -interpolant.beta(u) * interpolant.wronskian(u) / interpolant.alpha(u)
        return jnp.where(t >= self.start, c, 0.0)

    def __call__(self, t: ScalarLike, x: Vector, cond: Cond = None) -> Vector:
        r"""**Returns:** $\tilde v(t, x \mid \text{cond})$, shape `(dim,)`."""
        gradient = jax.grad(lambda y: self.value(t, y, cond))(x)
        scale = self.guidance * self.tau * self.coefficient(t)
        return self.velocity(t, x, cond) + scale * gradient
