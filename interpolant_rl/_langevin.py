r"""Annealed Langevin dynamics (Song & Ermon 2019) on geometric noise levels indexed by the
library's time.

**The levels.** A density $p$ is smoothed by Gaussian noise of scale $\sigma$,
$p_\sigma = p * \mathcal N(0, \sigma^2 I)$. Annealed Langevin dynamics samples $p$ by running
Langevin dynamics on $p_{\sigma_1}, p_{\sigma_2}, \dots, p_{\sigma_L}$ in turn, from a large
$\sigma_1 = \sigma_{\max}$ (a smooth landscape in which particles move between modes) to a small
$\sigma_L = \sigma_{\min}$ (where $p_{\sigma_L} \approx p$). The levels are geometric, and we
index them by the library's time, $t = 0$ at the noise end and $t = 1$ at the data end:

$$\sigma(t) = \sigma_{\max}^{1 - t}\,\sigma_{\min}^{t},\qquad
  t_l = \frac{l}{L - 1},\quad l = 0, \dots, L - 1$$

(one level, $L = 1$, is $t_0 = 1$: plain Langevin dynamics at $\sigma_{\min}$).

**The steps.** At level $l$ the sampler takes $T$ unadjusted Langevin steps of size
$\epsilon_l = \epsilon\,\sigma(t_l)^2/\sigma_{\min}^2$ (Song & Ermon's choice, which keeps the
signal-to-noise ratio of a step the same on every level):

$$x \leftarrow x + \frac{\epsilon_l}{2}\,s\big(t_l, x, c\big) + \sqrt{\epsilon_l}\;z,\qquad
  z \sim \mathcal N(0, I),$$

with $s(t, x, c) \approx \nabla_x \log p_{\sigma(t)}(x \mid c)$ the score at the level's noise.
For a Boltzmann policy $\pi(a \mid s) \propto \exp(\tau Q(s, a))$ the score is
$\tau\,\nabla_a Q(s, a)$ (NC-LQL's noise-conditioned critic gives one per level).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._custom_types import Cond, Scalar, ScalarLike, Times, Trajectory, Vector


class LangevinSchedule(eqx.Module):
    r"""The levels and step sizes of annealed Langevin dynamics (see
    [the Sampling page](#annealed-langevin-dynamics-nc-lql)): $L$ geometric noise levels
    $\sigma(t_l) = \sigma_{\max}^{1 - t_l}\sigma_{\min}^{t_l}$ at the times $t_l = l/(L-1)$
    ($t = 0$: $\sigma_{\max}$, noise; $t = 1$: $\sigma_{\min}$, data), $T$ steps on each, of size
    $\epsilon_l = \epsilon\,\sigma(t_l)^2/\sigma_{\min}^2$.

    **Fields:**

    - `sigma_max`: $\sigma_{\max} > 0$, the first (largest) level.
    - `sigma_min`: $\sigma_{\min}$, with $0 < \sigma_{\min} \le \sigma_{\max}$, the last level.
    - `num_levels`: $L \ge 1$ (1: plain Langevin dynamics at $\sigma_{\min}$).
    - `steps_per_level`: $T \ge 1$.
    - `step_size`: $\epsilon > 0$, the step size at $\sigma_{\min}$.
    """

    sigma_max: float
    sigma_min: float
    num_levels: int = eqx.field(static=True)
    steps_per_level: int = eqx.field(static=True)
    step_size: float

    def __check_init__(self):
        if not 0.0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                "LangevinSchedule needs 0 < sigma_min <= sigma_max, got "
                f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        if self.num_levels < 1 or self.steps_per_level < 1:
            raise ValueError(
                "LangevinSchedule needs num_levels >= 1 and steps_per_level >= 1, got "
                f"{self.num_levels} and {self.steps_per_level}"
            )
        if not self.step_size > 0:
            raise ValueError(f"LangevinSchedule needs step_size > 0, got {self.step_size}")

    def sigma(self, t: ScalarLike | Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        r"""$\sigma(t) = \sigma_{\max}^{1 - t}\,\sigma_{\min}^{t}$, elementwise."""
        log_max, log_min = jnp.log(self.sigma_max), jnp.log(self.sigma_min)
        return jnp.exp(log_max + jnp.asarray(t) * (log_min - log_max))

    def times(self) -> Times:
        r"""The level times $t_l = l/(L-1)$, shape `(L,)` (`[1.0]` when $L = 1$)."""
        if self.num_levels == 1:
            return jnp.ones(1)
        return jnp.linspace(0.0, 1.0, self.num_levels)

    def step_sizes(self) -> Float[Array, " levels"]:
        r"""$\epsilon_l = \epsilon\,\sigma(t_l)^2/\sigma_{\min}^2$, shape `(L,)`."""
        return self.step_size * (self.sigma(self.times()) / self.sigma_min) ** 2

    def draw_noise(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None
    ) -> Float[Array, "steps ..."]:
        r"""The standard normal $z$ of every step, drawn up front: shape `(L * T, *shape)`."""
        dtype = float if dtype is None else dtype
        return jr.normal(key, (self.num_levels * self.steps_per_level, *shape), dtype)


def annealed_langevin_sample(
    schedule: LangevinSchedule,
    score: Callable[[Scalar, Vector, Cond], Vector],
    x0: Vector,
    *,
    key: PRNGKeyArray | None = None,
    cond: Cond = None,
    noise: Float[Array, "steps dim"] | None = None,
    bounds: tuple[float, float] | None = None,
    save_trajectory: bool = False,
) -> Vector | Trajectory:
    r"""Annealed Langevin dynamics from `x0` through the levels of `schedule`, in one
    `jax.lax.scan` over its $L T$ steps: at level $l$ (time $t_l$), $T$ times,

    $$x \leftarrow \Pi\Big(x + \frac{\epsilon_l}{2}\,s(t_l, x, c) + \sqrt{\epsilon_l}\;z_k\Big),
      \qquad \epsilon_l = \epsilon\,\frac{\sigma(t_l)^2}{\sigma_{\min}^2},$$

    with $\Pi$ the clip to `bounds` (the identity when `bounds` is `None`).

    **Arguments:**

    - `schedule`: the [`LangevinSchedule`][interpolant_rl.LangevinSchedule] ($t_l$, $\epsilon_l$, $T$).
    - `score`: $s(t, x, c) \approx \nabla_x \log p_{\sigma(t)}(x \mid c)$, called with the
      level's time $t$ (map it to the noise with `schedule.sigma(t)`), one unbatched `x` of
      shape `(dim,)` and `cond`; e.g. $\tau\nabla_a Q(s, a, t)$ of a noise-conditioned critic.
    - `x0`: the starting point, shape `(dim,)` (e.g. uniform on $[-1, 1]^d$).
    - `key`: randomness of the steps (drawn up front with `schedule.draw_noise`).
    - `cond`: passed to `score` (the RL state), or `None`.
    - `noise`: the standard normal $z_k$ of every step, shape `(L * T, dim)`, instead of `key`
      (the same noise can then drive two schedules of equal length).
    - `bounds`: `(low, high)`: clip after every step (projected Langevin; NC-LQL clips actions
      to $[-1, 1]$), or `None`.
    - `save_trajectory`: return the state after every step instead, shape `(L * T + 1, dim)`
      with `x0` first.

    **Returns:** the final state, shape `(dim,)` (or the trajectory).

    !!! example
        ```python
        schedule = LangevinSchedule(1.0, 0.01, num_levels=10, steps_per_level=100, step_size=2e-5)
        score = lambda t, x, c: -x / (1.0 + schedule.sigma(t) ** 2)  # N(0, I), smoothed
        x = annealed_langevin_sample(schedule, score, jnp.zeros(2), key=jr.key(0))
        ```
    """
    total = schedule.num_levels * schedule.steps_per_level
    if noise is None:
        if key is None:
            raise ValueError("annealed_langevin_sample needs key= or noise=")
        noise = schedule.draw_noise(key, x0.shape, x0.dtype)
    elif noise.shape != (total, *x0.shape):
        raise ValueError(
            f"noise must have shape {(total, *x0.shape)} (one draw per step), got {noise.shape}"
        )
    times = jnp.repeat(schedule.times(), schedule.steps_per_level).astype(x0.dtype)
    steps = jnp.repeat(schedule.step_sizes(), schedule.steps_per_level).astype(x0.dtype)

    def step(x, inputs):
        t, step_size, z = inputs
        x = x + 0.5 * step_size * score(t, x, cond) + jnp.sqrt(step_size) * z
        if bounds is not None:
            x = jnp.clip(x, bounds[0], bounds[1])
        return x, (x if save_trajectory else None)

    x, trajectory = jax.lax.scan(step, x0, (times, steps, noise))
    if save_trajectory:
        return jnp.concatenate([x0[None], trajectory], axis=0)
    return x
