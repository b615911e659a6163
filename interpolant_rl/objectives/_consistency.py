r"""Consistency training (Song et al. 2023): the loss and its discretisation schedule $N(k)$.

A consistency function $f_\theta(t, x, c)$ (see [`interpolant_rl.consistency_sample`][] for the
time convention: $t = 0$ is $\sigma_{\max}$, $t = 1$ is $\epsilon$) is trained without a teacher
by making its predictions at two neighbouring noise levels of the same perturbed action agree:
the Karras grid of $N$ levels is $t_j = j/(N - 1)$ in our time, and one term of the loss uses
the pair $(t_j, t_{j+1})$, $t_{j+1}$ the cleaner.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._consistency import KarrasSchedule
from .._custom_types import Cond, Scalar, ScalarLike, VelocityField
from ._weighting import weighted_mean


def consistency_scales(
    step: Int[Array, ""] | int,
    total_steps: int,
    initial: int = 2,
    final: int = 150,
) -> Int[Array, ""]:
    r"""The number of noise levels $N(k)$ at training step $k$ (Song et al. 2023, consistency
    training, their Appendix C; $s_0 = 2$, $s_1 = 150$ are their CIFAR-10 values):

    $$N(k) = \Big\lceil \sqrt{\tfrac{k}{K}\big((s_1 + 1)^2 - s_0^2\big) + s_0^2} - 1 \Big\rceil + 1,$$

    growing from $s_0$ at $k = 0$ to $s_1 + 1$ at $k = K$ (and held there after $K$). Ding & Jin's
    public code evaluates $\lceil\sqrt{\tfrac kK(s_1^2 - s_0^2) + s_0^2} - 1\rceil + 1$ with
    $s_1 = 150$, which is this formula at `final` $= 149$.

    **Arguments:**

    - `step`: $k \ge 0$ (a traced integer is fine).
    - `total_steps`: $K \ge 1$.
    - `initial`, `final`: $s_0 \ge 2$ and $s_1 \ge s_0$.

    **Returns:** $N(k)$, an integer scalar $\ge 2$.
    """
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not 2 <= initial <= final:
        raise ValueError(f"need 2 <= initial <= final, got {initial} and {final}")
    fraction = jnp.minimum(jnp.asarray(step, dtype=jnp.float32) / total_steps, 1.0)
    span = (final + 1) ** 2 - initial**2
    scales = jnp.ceil(jnp.sqrt(fraction * span + initial**2) - 1.0).astype(jnp.int32) + 1
    return jnp.maximum(scales, 2)


def consistency_training_loss(
    function: VelocityField,
    target: VelocityField,
    schedule: KarrasSchedule,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    num_scales: Int[Array, ""] | int,
    interval_weight: ScalarLike | None = None,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""The consistency-training loss (Song et al. 2023, Algorithm 3, with the squared
    Euclidean metric) on the Karras grid of $N$ = `num_scales` levels:

    $$\mathcal L = \operatorname{mean}_i\, w_i\,\lambda_i\,\tfrac1d\Big\|
        f_\theta\big(t_{j_i},\ a_i + \sigma(t_{j_i})\,z_i,\ c_i\big)
        - \mathrm{sg}\,f_{\theta^-}\big(t_{j_i + 1},\ a_i + \sigma(t_{j_i + 1})\,z_i,\ c_i\big)\Big\|^2,$$

    with $t_j = j/(N - 1)$, $j_i \sim \mathcal U\{0, \dots, N - 2\}$ (the noisier level of a
    neighbouring pair), one $z_i \sim \mathcal N(0, I)$ shared by both levels, and $f_{\theta^-}$
    the target (EMA) function, held fixed. The weight is $\lambda_i = 1$ (Song et al.) or, with
    `interval_weight` $= c$, Ding & Jin's loss scaling in their public code,
    $\lambda_i = c/(\sigma(t_{j_i}) - \sigma(t_{j_i + 1}))$ ($c = 100$ there): the inverse of
    the noise interval, which keeps the terms of the finest intervals (whose differences are of
    the order of the interval) from vanishing against the Q term.

    Draws, in this order: `index_key, noise_key = jax.random.split(key)`,
    $j$ = `jax.random.randint(index_key, (batch,), 0, N - 1)`,
    $z$ = `jax.random.normal(noise_key, actions.shape)`.

    **Arguments:**

    - `function`, `target`: $f_\theta$ and $f_{\theta^-}$, `(t, x, cond) -> action` (e.g.
      [`ConsistencyFunction`][interpolant_rl.nn.ConsistencyFunction]s); `target` may be
      `function` itself (no EMA), it is stop-gradiented either way.
    - `schedule`: the [`KarrasSchedule`][interpolant_rl.KarrasSchedule] $\sigma(t)$.
    - `actions`: data $a$, shape `(batch, dim)`.
    - `cond`: per-sample conditioning batched along axis 0 (or `None`).
    - `key`: randomness for $j$ and $z$.
    - `num_scales`: $N \ge 2$ (e.g. [`consistency_scales`][interpolant_rl.objectives.consistency_scales]; may be traced).
    - `interval_weight`: `None` for $\lambda = 1$, or $c > 0$.
    - `weights`: optional per-sample weights (the validity of action chunks).

    **Returns:** the scalar loss.
    """
    index_key, noise_key = jr.split(key)
    batch = actions.shape[0]
    num_scales = jnp.asarray(num_scales)
    index = jr.randint(index_key, (batch,), 0, num_scales - 1)
    z = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    last = (num_scales - 1).astype(actions.dtype)
    t_noisy = index.astype(actions.dtype) / last
    t_clean = (index + 1).astype(actions.dtype) / last
    sigma_noisy = jax.vmap(schedule.sigma)(t_noisy)
    sigma_clean = jax.vmap(schedule.sigma)(t_clean)
    x_noisy = actions + sigma_noisy[:, None] * z
    x_clean = actions + sigma_clean[:, None] * z
    cond_axis = None if cond is None else 0
    prediction = jax.vmap(function, in_axes=(0, 0, cond_axis))(t_noisy, x_noisy, cond)
    goal = jax.vmap(target, in_axes=(0, 0, cond_axis))(t_clean, x_clean, cond)
    distance = jnp.mean((prediction - jax.lax.stop_gradient(goal)) ** 2, axis=-1)
    if interval_weight is not None:
        distance = interval_weight / (sigma_noisy - sigma_clean) * distance
    return weighted_mean(distance, weights)
