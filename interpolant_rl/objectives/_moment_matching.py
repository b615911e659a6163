r"""Moment matching of one-jump samplers (MoMa QL, in the style of inductive moment matching).

A *jump field* $G_\theta(t, s, x, c)$ predicts the data $\hat x_1$ from a point $x$ at time $t$;
with the interpolant's DDIM jump it defines a one-jump sampler from $t$ to a cleaner time $s > t$,

$$f_\theta(x_t; t \to s) = \mathrm{DDIM}_{t\to s}\big(x_t, G_\theta(t, s, x_t, c)\big)
  = \alpha_s \hat x_1 + \beta_s\,\frac{x_t - \alpha_t \hat x_1}{\beta_t}.$$

It is trained so that it pushes the interpolant's marginal $p_t$ forward to $p_s$, by matching,
in maximum mean discrepancy, its jumps from $t$ with the jumps of a stop-gradient copy
$G_{\theta^-}$ from an intermediate time $r \in [t, s)$ (the *inductive* target: a shorter jump,
hence easier to get right first). Sampling takes 1 or a few jumps from $t = 0$ to $t = 1$.
"""

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, Scalar, ScalarLike, Vector
from .._interpolant import AbstractInterpolant
from .._kernels import AbstractKernel, mmd_squared, RBFKernel


JumpField = Callable[[Scalar, Scalar, Vector, Cond], Vector]
r"""A two-time field `G(t, s, x, cond) -> x1_hat`: the prediction of the data $\hat x_1$ used
to jump from `x` at time `t` to time `s`, acting on one unbatched sample `x` of shape `(dim,)`."""

Bandwidth = Callable[[Scalar, Scalar], ScalarLike]
r"""A kernel bandwidth $\ell(t, s)$ for the group jumping from time `t` to time `s`."""


def jump(
    interpolant: AbstractInterpolant,
    field: JumpField,
    x_t: Vector,
    t: ScalarLike,
    s: ScalarLike,
    cond: Cond = None,
) -> Vector:
    r"""The one-jump sampler from time $t$ to time $s$:

    $$f(x_t; t \to s) = \mathrm{DDIM}_{t\to s}\big(x_t, G(t, s, x_t, c)\big).$$

    With the exact $\hat x_1$ that makes the jump follow the probability-flow ODE this is the
    ODE's flow map, which is deterministic and maps $p_t$ to $p_s$; $s = t$ is the identity and
    $s = 1$ returns $\hat x_1$ itself.

    **Arguments:**

    - `interpolant`: defines $\alpha, \beta$ and the DDIM jump.
    - `field`: the jump field `G(t, s, x, cond) -> x1_hat`.
    - `x_t`: one sample at time `t`, shape `(dim,)`.
    - `t`, `s`: start and end times ($t < 1$, where $\beta_t > 0$).
    - `cond`: the field's conditioning (one state), or `None`.

    **Returns:** the sample at time `s`, shape `(dim,)`.
    """
    t = jnp.asarray(t, dtype=x_t.dtype)
    s = jnp.asarray(s, dtype=x_t.dtype)
    return interpolant.ddim(x_t, field(t, s, x_t, cond), t, s)


def multi_jump_sample(
    interpolant: AbstractInterpolant,
    field: JumpField,
    x0: Vector,
    cond: Cond = None,
    num_jumps: int = 1,
) -> Vector:
    r"""Sample with `num_jumps` jumps along the uniform grid $t_k = k/K$, $K$ = `num_jumps`:

    $$x_{t_{k+1}} = f(x_{t_k}; t_k \to t_{k+1}),\qquad k = 0, \dots, K - 1,$$

    from the noise $x_0 \sim \mathcal N(0, I)$ at $t = 0$ (one network evaluation per jump, in
    one `jax.lax.scan`). Differentiable, so it also produces the actions of the actor's Q term.

    **Arguments:**

    - `interpolant`, `field`: as in [`interpolant_rl.objectives.jump`][].
    - `x0`: one noise sample, shape `(dim,)`.
    - `cond`: the field's conditioning (one state), or `None`.
    - `num_jumps`: $K \ge 1$ (a Python integer).

    **Returns:** the action at $t = 1$, shape `(dim,)`.
    """
    if not isinstance(num_jumps, int) or num_jumps < 1:
        raise ValueError(f"num_jumps must be a positive integer, got {num_jumps!r}")
    ts = jnp.linspace(0.0, 1.0, num_jumps + 1, dtype=x0.dtype)

    def step(x, times):
        t, s = times
        return jump(interpolant, field, x, t, s, cond), None

    x1, _ = jax.lax.scan(step, x0, (ts[:-1], ts[1:]))
    return x1


class AbstractJumpTimes(eqx.Module):
    r"""Draws the times $(t, r, s)$, $0 \le t \le r < s \le 1$, of one group of particles: the
    online model jumps $t \to s$, the stop-gradient target $r \to s$."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar, Scalar]:
        r"""One draw of `(t, r, s)` (scalars)."""


class UniformJumpTimes(AbstractJumpTimes):
    r"""$s \sim U(\varepsilon, 1]$, $t \sim U[0, s)$ and $r = t + \gamma\,(s - t)$.

    The gap fraction $\gamma \in [0, 1)$ (`gap`) sets how much shorter the target's jump is:

    - $\gamma \to 0$ ($r \to t$): the target is the stop-gradient model's own jump from a point
      an instant further along the same interpolation path; with one particle per group and
      $s = 1$ this is consistency training (the self-consistency of the jump along the path).
    - $\gamma \to 1$ ($r \to s$): the target jump shrinks to the identity and the target set is
      the interpolated $x_s = \alpha_s x_1 + \beta_s x_0$ itself, so the loss matches
      $f_\theta(\cdot; t\to s)_\# p_t$ directly with samples of $p_s$ (no bootstrapping).

    (DESIGN.md §1 attributes the consistency-model limit to $r \to s$; in this time direction it
    is $r \to t$, as in inductive moment matching, where $r$ is a small step from $t$ toward $s$.)
    $\gamma = 1$ itself is excluded because the target jump would start at $r = s = 1$, where
    $\beta_r = 0$.

    **Fields:**

    - `gap`: $\gamma \in [0, 1)$ (default 0.1, a small step as in inductive moment matching).
    - `epsilon`: $\varepsilon \in [0, 1)$, the smallest end time $s$ (default $10^{-3}$).
    """

    gap: float = 0.1
    epsilon: float = 1e-3

    def __check_init__(self):
        if not 0.0 <= self.gap < 1.0:
            raise ValueError(f"gap must lie in [0, 1), got {self.gap}")
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must lie in [0, 1), got {self.epsilon}")

    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar, Scalar]:
        s_key, t_key = jr.split(key)
        s = 1.0 - jr.uniform(s_key, (), minval=0.0, maxval=1.0 - self.epsilon)
        t = s * jr.uniform(t_key, ())
        r = t + self.gap * (s - t)
        return t, r, s


class ConstantBandwidth(eqx.Module):
    r"""$\ell(t, s) = \ell_0$ (`value`), the same bandwidth for every pair of times."""

    value: float

    def __check_init__(self):
        if not self.value > 0:
            raise ValueError(f"the bandwidth must be positive, got {self.value}")

    def __call__(self, t: ScalarLike, s: ScalarLike) -> Scalar:
        return jnp.asarray(self.value, dtype=float)


class JumpScaledBandwidth(eqx.Module):
    r"""A bandwidth proportional to the weight of the prediction in the jump:

    $$\ell(t, s) = \max\big(c\,|c_{\text{out}}(t, s)|,\ \ell_{\min}\big),\qquad
      c_{\text{out}}(t, s) = \alpha_s - \beta_s\,\frac{\alpha_t}{\beta_t}$$

    (the coefficient of $\hat x_1$ in $\mathrm{DDIM}_{t\to s}$; linear interpolant:
    $(s - t)/(1 - t)$). Distances between jumps are then measured in units of the prediction
    $\hat x_1$, the time-dependent kernel weight $w = 1/c_{\text{out}}$ of inductive moment
    matching. Short jumps get narrow kernels, so the loss then leans on the pairs built from the
    same $(x_0, x_1)$ and behaves like a consistency loss.

    **Fields:** `interpolant`; `scale` $c$ (e.g. $\sqrt{\text{dim}}$, default 1); `minimum`
    $\ell_{\min} > 0$ (default $10^{-2}$), which keeps the kernel finite as $s \to t$.
    """

    interpolant: AbstractInterpolant
    scale: float = 1.0
    minimum: float = 1e-2

    def __check_init__(self):
        if not (self.scale > 0 and self.minimum > 0):
            raise ValueError("scale and minimum must be positive")

    def __call__(self, t: ScalarLike, s: ScalarLike) -> Scalar:
        interp = self.interpolant
        c_out = interp.alpha(s) - interp.beta(s) * interp.alpha(t) / interp.beta(t)
        return jnp.maximum(self.scale * jnp.abs(c_out), self.minimum)


def moment_matching_loss(
    interpolant: AbstractInterpolant,
    field: JumpField,
    target_field: JumpField,
    actions: Float[Array, "groups particles dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    times: AbstractJumpTimes = UniformJumpTimes(),
    kernel: Callable[[Scalar], AbstractKernel] = RBFKernel,
    bandwidth: Bandwidth | None = None,
    unbiased: bool = False,
    cond_per_particle: bool = False,
    weights: Float[Array, " groups"] | None = None,
) -> Scalar:
    r"""The moment-matching (MMD) loss of MoMa QL, averaged over groups of particles:

    $$\mathcal L = \frac1B\sum_{g=1}^B \mathrm{MMD}^2_{k_g}\Big(
      \big\{f_\theta(x_t^{i}; t \to s)\big\}_{i=1}^M,\
      \big\{\mathrm{sg}\,f_{\theta^-}(x_r^{j}; r \to s)\big\}_{j=1}^M\Big),$$

    $$x_t^i = \alpha_t x_1^i + \beta_t x_0^i,\qquad x_r^i = \alpha_r x_1^i + \beta_r x_0^i,$$

    where group $g$ has its own times $(t, r, s)$ from `times`, its particles share the state
    and the times, $x_t^i$ and $x_r^i$ are built from the *same* pair $(x_0^i, x_1^i)$ with
    $x_0^i \sim \mathcal N(0, I)$, $f$ is [`interpolant_rl.objectives.jump`][], $\mathrm{sg}$ is a
    stop-gradient (no gradient reaches `target_field`), and $k_g$ is `kernel(bandwidth(t, s))`.

    The population $\mathrm{MMD}^2$ of the two push-forwards vanishes exactly when
    $f_\theta(\cdot; t\to s)$ maps $p_t$ to the law that the target's jump gives $p_r$ — $p_s$
    once the shorter jumps are right, the induction that starts from the identity at $r = s$.
    The estimator also sees the pairs, which make the two sets dependent: at the exact flow map,
    writing $\rho = \mathbb E\,k(f(x_t^i), f(x_r^i))$ for partners and $\kappa = \mathbb E\,k(y, y')$
    for independent $y, y' \sim p_s$, the V-statistic averages $\frac2M(1 - \rho)$ and the
    U-statistic $\frac2M(\kappa - \rho)$, not zero (negative when partners are closer than
    strangers). This $O(1/M)$ pull of each particle toward its partner is the consistency-model
    part of the loss (all of it when $M = 1$).

    **Arguments:**

    - `interpolant`: the interpolant defining $x_t$ and the DDIM jump.
    - `field`: the jump field $G_\theta$ being trained, `(t, s, x, cond) -> x1_hat`.
    - `target_field`: the target $G_{\theta^-}$ (an EMA copy, or the online field itself); its
      jumps are wrapped in `jax.lax.stop_gradient`.
    - `actions`: data $x_1$ grouped by state, shape `(groups, particles, dim)`: row `g` holds
      $M$ = `particles` independent actions of state `g`. (Repeating one dataset action $M$
      times, `jnp.repeat(actions[:, None], M, axis=1)`, runs but changes the objective: each
      group then matches jumps of $p_t(\cdot \mid x_1)$ and $p_r(\cdot \mid x_1)$, which the
      exact flow map sends to different laws unless $r = t$.)
    - `cond`: one conditioning per group, batched along axis 0 (`groups` leading), or `None`;
      with `cond_per_particle`, one per particle (`groups, particles` leading).
    - `key`: split as `time_key, noise_key = jax.random.split(key)`; group `g` draws its times
      with `jax.random.split(time_key, groups)[g]`, the noise is
      `jax.random.normal(noise_key, actions.shape)`.
    - `times`: the sampler of $(t, r, s)$ per group (default
      [`interpolant_rl.objectives.UniformJumpTimes`][]`()`).
    - `kernel`: a kernel constructor taking the bandwidth, e.g.
      [`interpolant_rl.RBFKernel`][] (default, as in the MoMa QL seed) or
      [`interpolant_rl.LaplaceKernel`][] (as in inductive moment matching).
    - `bandwidth`: $\ell(t, s)$, a callable; default `None` is
      `ConstantBandwidth(sqrt(dim))`, the typical distance between two actions with unit
      per-coordinate scale. [`interpolant_rl.objectives.JumpScaledBandwidth`][] gives inductive
      moment matching's time-dependent choice.
    - `unbiased`: use the U-statistic instead of the biased V-statistic (needs $M \ge 2$); see
      [`interpolant_rl.mmd_squared`][].
    - `cond_per_particle`: the particles of a group carry their own states (offline data has
      one action per state, so an agent groups $M$ dataset pairs). The MMD then compares the
      groups' action sets pooled over their states: it still vanishes at the exact flow map
      (both sets are pushed from the same state-action pairs), and the partner pull supplies
      the per-state consistency; with all states equal it is the loss above.

    - `weights`: optional per-group weights (e.g. 0 for a group holding an invalid chunk); the
      loss is then $\frac1B\sum_g w_g\,\mathrm{MMD}^2_g$.

    **Returns:** the scalar loss $\mathcal L$.
    """
    groups, _, dim = actions.shape
    if bandwidth is None:
        bandwidth = ConstantBandwidth(math.sqrt(dim))
    time_key, noise_key = jr.split(key)
    t, r, s = jax.vmap(times)(jr.split(time_key, groups))
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    interpolate = jax.vmap(interpolant.interpolate, in_axes=(0, 0, None))

    def group_loss(x0, x1, cond, t, r, s):
        x_t = interpolate(x0, x1, t)
        x_r = interpolate(x0, x1, r)
        particle_axis = 0 if cond_per_particle else None
        online = jax.vmap(
            lambda x, c: jump(interpolant, field, x, t, s, c), in_axes=(0, particle_axis)
        )(x_t, cond)
        target = jax.lax.stop_gradient(
            jax.vmap(
                lambda x, c: jump(interpolant, target_field, x, r, s, c),
                in_axes=(0, particle_axis),
            )(x_r, cond)
        )
        width = jnp.asarray(bandwidth(t, s), dtype=actions.dtype)
        return mmd_squared(kernel(width), online, target, unbiased=unbiased)

    cond_axis = None if cond is None else 0
    per_group = jax.vmap(group_loss, in_axes=(0, 0, cond_axis, 0, 0, 0))(x0, actions, cond, t, r, s)
    if weights is not None:
        per_group = weights * per_group
    return jnp.mean(per_group)
