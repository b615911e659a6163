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
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import Cond, JumpField, Scalar, ScalarLike
from .._interpolant import AbstractInterpolant
from .._jump_sampling import jump
from .._kernels import AbstractKernel, median_distance, mmd_squared, RBFKernel
from ._time_sampling import AbstractTimeSampler, UniformTimes


class AbstractJumpTimes(eqx.Module):
    r"""Draws the times $(t, r, s)$, $0 \le t \le r < s \le 1$, of one group of particles: the
    online model jumps $t \to s$, the stop-gradient target $r \to s$."""

    @abc.abstractmethod
    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar, Scalar]:
        r"""One draw of `(t, r, s)` (scalars)."""

    def importance_weight(self, t: ScalarLike, s: ScalarLike) -> Scalar | None:
        r"""The importance weight of a draw toward the sampler's target law (`None`: the
        draws follow it, weight 1), multiplying the group's loss."""
        del t, s
        return None


class UniformJumpTimes(AbstractJumpTimes):
    r"""$s \sim U(\varepsilon, 1]$, $t \sim U[0, s)$ and $r = t + \gamma\,(s - t)$; with probability
    `grid_fraction` instead one of the sampler's own jumps, $(t, s) = (k/K, (k+1)/K)$ with
    $k \sim U\{0, \dots, K - 1\}$ and $K$ = `num_jumps` (for $K = 1$: $0 \to 1$, the one-jump
    policy itself, which uniform times almost never draw).

    The gap fraction $\gamma \in [0, 1]$ (`gap`) sets how much shorter the target's jump is:

    - $\gamma \to 0$ ($r \to t$): the target is the stop-gradient model's own jump from a point
      an instant further along the same interpolation path; with one particle per group and
      $s = 1$ this is consistency training (the self-consistency of the jump along the path).
    - $\gamma \to 1$ ($r \to s$): the target jump shrinks to the identity and the target set is
      the interpolated $x_s = \alpha_s x_1 + \beta_s x_0$ itself, so the loss matches
      $f_\theta(\cdot; t\to s)_\# p_t$ directly with samples of $p_s$ (no bootstrapping);
      $\gamma = 1$ is exactly that ([`moment_matching_loss`][interpolant_rl.objectives.moment_matching_loss]
      uses $x_s$ as the target when $r = s$).

    (DESIGN.md §1 attributes the consistency-model limit to $r \to s$; in this time direction it
    is $r \to t$, as in inductive moment matching, where $r$ is a small step from $t$ toward $s$.)

    **Fields:**

    - `gap`: $\gamma \in [0, 1]$ (default 0.1, a small step as in inductive moment matching;
      MoMa QL's agent uses 0.9, see [`interpolant_rl.agents.moma_ql`][]).
    - `epsilon`: $\varepsilon \in [0, 1)$, the smallest end time $s$ (default $10^{-3}$).
    - `grid_fraction`: the probability of a grid jump, in $[0, 1]$ (default 0).
    - `num_jumps`: $K \ge 1$, the sampler's number of jumps (default 1).
    """

    gap: float = 0.1
    epsilon: float = 1e-3
    grid_fraction: float = 0.0
    num_jumps: int = 1

    def __check_init__(self):
        if not 0.0 <= self.grid_fraction <= 1.0:
            raise ValueError(f"grid_fraction must lie in [0, 1], got {self.grid_fraction}")
        if not isinstance(self.num_jumps, int) or self.num_jumps < 1:
            raise ValueError(f"num_jumps must be a positive integer, got {self.num_jumps!r}")
        if not 0.0 <= self.gap <= 1.0:
            raise ValueError(f"gap must lie in [0, 1], got {self.gap}")
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must lie in [0, 1), got {self.epsilon}")

    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar, Scalar]:
        s_key, t_key, grid_key, k_key = jr.split(key, 4)
        s = 1.0 - jr.uniform(s_key, (), minval=0.0, maxval=1.0 - self.epsilon)
        t = s * jr.uniform(t_key, ())
        k = jr.randint(k_key, (), 0, self.num_jumps)
        on_grid = jr.uniform(grid_key, ()) < self.grid_fraction
        t = jnp.where(on_grid, k / self.num_jumps, t)
        s = jnp.where(on_grid, (k + 1) / self.num_jumps, s)
        r = t + self.gap * (s - t)
        return t, r, s


class SampledJumpTimes(AbstractJumpTimes):
    r"""Jump times from any [`AbstractTimeSampler`][interpolant_rl.objectives.AbstractTimeSampler]
    (e.g. the [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler]): two
    independent draws $\tau_1, \tau_2$, ordered as $t = \min$, $s = \max$ (MeanFlow's pairs,
    [`meanflow_time_pairs`][interpolant_rl.objectives.meanflow_time_pairs]), and
    $r = t + \gamma\,(s - t)$; the group's loss is weighted by $w(\tau_1)\,w(\tau_2)$.

    The target law is that of two ordered *uniform* draws (density 2 on $\{t \le s\}$; not
    [`UniformJumpTimes`][interpolant_rl.objectives.UniformJumpTimes]' $s \sim U$, $t \sim U[0, s)$,
    density $1/s$): with [`UniformTimes`][interpolant_rl.objectives.UniformTimes] the weights are
    1, and with an adaptive sampler the weighted loss has the same expectation (and minimiser)
    as with uniform times, whatever the sampler's current law.

    **Fields:** `sampler` (default `UniformTimes()`), `gap` $\gamma \in [0, 1]$ (default 0.1).
    """

    sampler: AbstractTimeSampler = UniformTimes()
    gap: float = 0.1

    def __check_init__(self):
        if not 0.0 <= self.gap <= 1.0:
            raise ValueError(f"gap must lie in [0, 1], got {self.gap}")

    def __call__(self, key: PRNGKeyArray) -> tuple[Scalar, Scalar, Scalar]:
        draws = self.sampler(key, (2,))
        t, s = jnp.min(draws), jnp.max(draws)
        return t, t + self.gap * (s - t), s

    def importance_weight(self, t: ScalarLike, s: ScalarLike) -> Scalar | None:
        weights = self.sampler.importance_weights(jnp.stack([t, s]))
        return None if weights is None else weights[0] * weights[1]


class AbstractBandwidth(eqx.Module):
    r"""The kernel bandwidth $\ell$ of one group, jumping from time `t` to time `s`, given the
    group's pooled particles (its online and target jumps, `(2M, dim)`); the result is used
    under stop-gradient."""

    @abc.abstractmethod
    def __call__(self, t: ScalarLike, s: ScalarLike, samples: Float[Array, "n dim"]) -> Scalar:
        r"""The bandwidth (a positive scalar)."""


class ConstantBandwidth(AbstractBandwidth):
    r"""$\ell(t, s) = \ell_0$ (`value`), the same bandwidth for every group."""

    value: float

    def __check_init__(self):
        if not self.value > 0:
            raise ValueError(f"the bandwidth must be positive, got {self.value}")

    def __call__(self, t: ScalarLike, s: ScalarLike, samples: Float[Array, "n dim"]) -> Scalar:
        return jnp.asarray(self.value, dtype=samples.dtype)


class JumpScaledBandwidth(AbstractBandwidth):
    r"""A bandwidth proportional to the weight of the prediction in the jump:

    $$\ell(t, s) = \max\big(c\,|c_{\text{out}}(t, s)|,\ \ell_{\min}\big),\qquad
      c_{\text{out}}(t, s) = \alpha_s - \beta_s\,\frac{\alpha_t}{\beta_t}$$

    (the coefficient of $\hat x_1$ in $\mathrm{DDIM}_{t\to s}$; linear interpolant:
    $(s - t)/(1 - t)$). Distances between jumps are then measured in units of the prediction
    $\hat x_1$, the time-dependent kernel weight $w = 1/c_{\text{out}}$ of inductive moment
    matching.

    **Fields:** `interpolant`; `scale` $c$ (e.g. $\sqrt{\text{dim}}$, default 1); `minimum`
    $\ell_{\min} > 0$ (default $10^{-2}$), which keeps the kernel finite as $s \to t$.
    """

    interpolant: AbstractInterpolant
    scale: float = 1.0
    minimum: float = 1e-2

    def __check_init__(self):
        if not (self.scale > 0 and self.minimum > 0):
            raise ValueError("scale and minimum must be positive")

    def __call__(self, t: ScalarLike, s: ScalarLike, samples: Float[Array, "n dim"]) -> Scalar:
        interp = self.interpolant
        c_out = interp.alpha(s) - interp.beta(s) * interp.alpha(t) / interp.beta(t)
        return jnp.maximum(self.scale * jnp.abs(c_out), self.minimum).astype(samples.dtype)


class MedianBandwidth(AbstractBandwidth):
    r"""The adaptive bandwidth of the MoMa QL seed, by the **median heuristic per group**:

    $$\ell_g = \max\Big(c\cdot\mathrm{sg}\big(\operatorname{median}_{a<b}\|z_a - z_b\|\big),\
      \ell_{\min}\Big)$$

    over the group's $2M$ pooled particles $z$ (its $M$ online and $M$ target jumps), with
    $\mathrm{sg}$ a stop-gradient ([`interpolant_rl._kernels.median_distance`][]). Distances are
    then measured in units of the group's own spread, so the kernel neither saturates (a
    bandwidth far above the spread: $k \approx 1$, vanishing gradients) nor separates every
    pair (far below: $k \approx 0$), whatever the action scale, the dimension or the times
    $(t, s)$; the pull of the MMD on a particle scales like $1/\ell$, i.e. with the behaviour's
    own scale. Pooling both sets keeps $\ell$ at the target's spread even when the online jumps
    have collapsed onto one point (their own median would then be 0).

    **Fields:** `scale` $c > 0$ (default 1); `minimum` $\ell_{\min} > 0$ (default $10^{-3}$),
    for groups whose particles all coincide.
    """

    scale: float = 1.0
    minimum: float = 1e-3

    def __check_init__(self):
        if not (self.scale > 0 and self.minimum > 0):
            raise ValueError("scale and minimum must be positive")

    def __call__(self, t: ScalarLike, s: ScalarLike, samples: Float[Array, "n dim"]) -> Scalar:
        return jnp.maximum(self.scale * median_distance(samples), self.minimum)


def moment_matching_loss(
    interpolant: AbstractInterpolant,
    field: JumpField,
    target_field: JumpField,
    actions: Float[Array, "groups n dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    noises: int = 1,
    times: AbstractJumpTimes = UniformJumpTimes(),
    kernel: Callable[[Scalar], AbstractKernel] = RBFKernel,
    bandwidth: AbstractBandwidth = MedianBandwidth(),
    unbiased: bool = True,
    shared_noise: bool = False,
    weights: Float[Array, " groups"] | None = None,
) -> Scalar:
    r"""The moment-matching (MMD) loss of MoMa QL, averaged over groups of particles:

    $$\mathcal L = \frac1G\sum_{g=1}^G w_g\,\widehat{\mathrm{MMD}}{}^2_{k_g}\Big(
      \big\{f_\theta(x_t^{i}; t \to s)\big\}_{i=1}^M,\
      \big\{\mathrm{sg}\,f_{\theta^-}(x_r^{j}; r \to s)\big\}_{j=1}^M\Big),$$

    $$x_t^i = \alpha_t x_1^{a(i)} + \beta_t \varepsilon_i,\qquad
      x_r^j = \alpha_r x_1^{a(j)} + \beta_r \varepsilon'_j,$$

    where group $g$ has one state $c_g$ (every particle jumps with it) and its own times
    $(t, r, s)$ from `times`; its $M = n\cdot m$ particles are its $n$ actions $x_1^a$, each
    with $m$ = `noises` noises; $f$ is [`interpolant_rl.jump`][], $\mathrm{sg}$ a
    stop-gradient (no gradient reaches `target_field`), and $k_g$ is `kernel(bandwidth(t, s, z))`
    with $z$ the group's pooled jumps (the bandwidth under stop-gradient).

    **Groups from offline data.** A dataset has one action per state, so the agent passes
    `actions[:, None]` (`n = 1`) and `noises = M`: the group of state $c$ is the interpolation of
    its one action $x_1$ with $M$ independent noises, the same state and the same times. Two
    particles of *different* states are never compared (pooling states would compare the
    action marginal over the group's states, and the MMD would mostly pull each particle
    toward its partner built from the same pair).

    **Independence and what the estimator estimates.** The target particles get their *own*
    noises $\varepsilon'_j$, independent of the online ones (`shared_noise=False`). Given the
    group's actions the two sets are then independent and each is i.i.d. within (for
    $n = 1$), so the U-statistic (`unbiased=True`) is unbiased:

    $$\mathbb E\big[\widehat{\mathrm{MMD}}{}^2_U \,\big|\, x_1\big]
      = \big\|\mu_{P \mid x_1} - \mu_{Q \mid x_1}\big\|_{\mathcal H}^2,$$

    the squared MMD between $P_{x_1}$, the law of the online jump of
    $p_t(\cdot \mid x_1)$, and $Q_{x_1}$, that of the target's jump of $p_r(\cdot \mid x_1)$. Had
    the two sets shared their noises (`shared_noise=True`, the pairing of inductive moment
    matching), the cross term would contain the $M$ partner pairs, each correlated, and the
    expectation would gain $-\frac2M(\rho - \kappa)$ ($\rho$: the mean kernel between partners,
    $\kappa$: between independent draws): a pull of each particle toward its partner, not a
    comparison of distributions; the V-statistic adds $+\frac1M(2 - \kappa_P - \kappa_Q)$ (its
    diagonal) on top.

    Averaged over the states' actions $x_1 \sim \pi_\beta(\cdot \mid c)$ this is the
    per-state MMD between the mixtures, plus the variance
    $\mathbb E\|\Delta_{x_1} - \mathbb E\Delta_{x_1}\|^2$ of
    $\Delta_{x_1} = \mu_{P \mid x_1} - \mu_{Q \mid x_1}$ (Jensen); with one action per state no
    estimator can remove it. At $t = 0$ it does not depend on $\theta$: $x_0^i = \varepsilon_i$
    carries no information on $x_1$, so $P_{x_1} = P$ and the loss is the MMD between the
    one-jump sampler's law $f_\theta(\cdot; 0 \to s)_\# \mathcal N(0, I)$ and the target's
    $p_s(\cdot \mid c)$ plus a constant — the start time of the one-jump sampler that acts
    and enters the Q term is matched without bias. For $t > 0$ the conditional loss is an upper
    bound of the per-state one (equal when the jumps forget $x_1$).

    With $n > 1$ genuine actions of one state and `noises = 1` the U-statistic is unbiased
    for the MMD between the group's action law pushed from $t$ and from $r$ (inductive moment
    matching's setting, e.g. a single-state problem with `actions` of shape `(groups, M, dim)`).

    **Arguments:**

    - `interpolant`: the interpolant defining $x_t$ and the DDIM jump.
    - `field`: the jump field $G_\theta$ being trained, `(t, s, x, cond) -> x1_hat`.
    - `target_field`: the target $G_{\theta^-}$ (an EMA copy, or the online field itself).
    - `actions`: data $x_1$, shape `(groups, n, dim)`: $n$ actions of the group's state.
    - `cond`: one conditioning per group, batched along axis 0, or `None`.
    - `key`: split as `time_key, noise_key, target_noise_key = jax.random.split(key, 3)`; group
      `g` draws its times with `jax.random.split(time_key, groups)[g]`; the noises are
      `jax.random.normal(noise_key, (groups, n, noises, dim))` and the same with
      `target_noise_key` (or the same noises, with `shared_noise`).
    - `noises`: $m \ge 1$, the noises per action (offline data: $M$).
    - `times`: the sampler of $(t, r, s)$ per group (default
      [`interpolant_rl.objectives.UniformJumpTimes`][]`()`;
      [`SampledJumpTimes`][interpolant_rl.objectives.SampledJumpTimes] draws them from any time
      sampler, e.g. the adaptive one, and its importance weights multiply each group's loss).
    - `kernel`: a kernel constructor taking the bandwidth, e.g.
      [`interpolant_rl.RBFKernel`][] (default, as in the MoMa QL seed) or
      [`interpolant_rl.LaplaceKernel`][] (as in inductive moment matching).
    - `bandwidth`: an [`AbstractBandwidth`][interpolant_rl.objectives.AbstractBandwidth];
      default [`MedianBandwidth`][interpolant_rl.objectives.MedianBandwidth]`()`, the
      seed's adaptive bandwidth; [`ConstantBandwidth`][interpolant_rl.objectives.ConstantBandwidth]
      and [`JumpScaledBandwidth`][interpolant_rl.objectives.JumpScaledBandwidth] are fixed
      rules.
    - `unbiased`: the U-statistic (default, as the seed asks; needs $M \ge 2$); `False`: the
      biased V-statistic of inductive moment matching. See [`interpolant_rl.mmd_squared`][].
    - `shared_noise`: build $x_r^i$ from the same noise as $x_t^i$ (inductive moment matching's
      pairs; dependent sets, see above). Default `False`.
    - `weights`: optional per-group weights $w_g$ (e.g. 0 for a group holding an invalid chunk).

    **Returns:** the scalar loss $\mathcal L$.
    """
    groups, n, dim = actions.shape
    if not isinstance(noises, int) or noises < 1:
        raise ValueError(f"noises must be a positive integer, got {noises!r}")
    if unbiased and n * noises < 2:
        raise ValueError("the unbiased MMD needs at least 2 particles per group (n * noises)")
    time_key, noise_key, target_noise_key = jr.split(key, 3)
    t, r, s = jax.vmap(times)(jr.split(time_key, groups))
    shape = (groups, n * noises, dim)
    x1 = jnp.repeat(actions, noises, axis=1)  # particle i holds action i // noises
    eps = jr.normal(noise_key, shape, dtype=actions.dtype)
    eps_target = eps if shared_noise else jr.normal(target_noise_key, shape, dtype=actions.dtype)
    interpolate = jax.vmap(interpolant.interpolate, in_axes=(0, 0, None))

    def group_loss(eps, eps_target, x1, cond, t, r, s):
        x_t = interpolate(eps, x1, t)
        x_r = interpolate(eps_target, x1, r)
        online = jax.vmap(lambda x: jump(interpolant, field, x, t, s, cond))(x_t)
        # r = s (gap 1): the target's jump is the identity, the target set is x_s itself
        r_jump = jnp.where(r < s, r, 0.0)  # keeps the unused jump finite at r = s = 1
        jumped = jax.vmap(lambda x: jump(interpolant, target_field, x, r_jump, s, cond))(x_r)
        target = jax.lax.stop_gradient(jnp.where(r < s, jumped, x_r))
        pooled = jax.lax.stop_gradient(jnp.concatenate([online, target]))
        width = jax.lax.stop_gradient(bandwidth(t, s, pooled))
        return mmd_squared(kernel(width), online, target, unbiased=unbiased)

    cond_axis = None if cond is None else 0
    per_group = jax.vmap(group_loss, in_axes=(0, 0, 0, cond_axis, 0, 0, 0))(
        eps, eps_target, x1, cond, t, r, s
    )
    importance = jax.vmap(times.importance_weight)(t, s)
    if importance is not None:  # a non-uniform time law, weighted back to its target law
        per_group = importance * per_group
    if weights is not None:
        per_group = weights * per_group
    return jnp.mean(per_group)
