r"""Consistency models in this library's time: the Karras noise levels as a function of $t$, and
the multistep consistency sampler.

**The mapping from Karras' $\sigma$ to our $t$.** Consistency models (Song et al. 2023) perturb
the data by the variance-exploding process $x_\sigma = x_1 + \sigma\,x_0$, $x_0 \sim \mathcal N(0, I)$,
for $\sigma \in [\epsilon, \sigma_{\max}]$, and discretise it on Karras et al.'s (2022) grid, uniform
in $\sigma^{1/\rho}$. We index those noise levels by the library's time, $t = 0$ at the noise end
($\sigma = \sigma_{\max}$) and $t = 1$ at the data end ($\sigma = \epsilon$):

$$\sigma(t) = \Big(\sigma_{\max}^{1/\rho} + t\,\big(\epsilon^{1/\rho} - \sigma_{\max}^{1/\rho}\big)\Big)^{\rho},
  \qquad t(\sigma) = \frac{\sigma^{1/\rho} - \sigma_{\max}^{1/\rho}}{\epsilon^{1/\rho} - \sigma_{\max}^{1/\rho}}.$$

The Karras grid of $N$ levels is then the uniform grid $t_j = j/(N - 1)$, $j = 0, \dots, N - 1$
(their index $i = N - j$ counts from the data end). A *consistency function* $f(t, x, c)$ maps
any point $x_{\sigma(t)}$ of a probability-flow ODE trajectory of this process to the
trajectory's point at $\sigma = \epsilon$ (i.e. at $t = 1$, the action); $f(1, x, c) = x$.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ._custom_types import Cond, Scalar, ScalarLike, TimesLike, Vector, VelocityField


class KarrasSchedule(eqx.Module):
    r"""The variance-exploding noise levels of consistency models, indexed by the library's
    time (see [the module](#consistency-models)): $\sigma(t)$ from $\sigma_{\max}$ at $t = 0$
    (noise) to $\epsilon$ at $t = 1$ (data), uniform in $\sigma^{1/\rho}$.

    **Fields** (defaults: Karras et al. 2022 / Song et al. 2023, which Ding & Jin's code also
    uses):

    - `sigma_min`: $\epsilon = 0.002$, the smallest noise level (where $f$ is the identity).
    - `sigma_max`: $\sigma_{\max} = 80$.
    - `rho`: $\rho = 7$.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __check_init__(self):
        if not 0.0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"KarrasSchedule needs 0 < sigma_min < sigma_max, got {self.sigma_min} and "
                f"{self.sigma_max}"
            )
        if not self.rho > 0:
            raise ValueError(f"KarrasSchedule needs rho > 0, got {self.rho}")

    def sigma(self, t: ScalarLike) -> Scalar:
        r"""$\sigma(t) = \big(\sigma_{\max}^{1/\rho} + t(\epsilon^{1/\rho} - \sigma_{\max}^{1/\rho})\big)^\rho$."""
        top, bottom = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return jnp.asarray(top + t * (bottom - top)) ** self.rho

    def time(self, sigma: ScalarLike) -> Scalar:
        r"""The inverse map $t(\sigma)$."""
        top, bottom = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return (jnp.asarray(sigma) ** (1 / self.rho) - top) / (bottom - top)

    def perturb(self, x1: Vector, x0: Vector, t: ScalarLike) -> Vector:
        r"""$x_{\sigma(t)} = x_1 + \sigma(t)\,x_0$: the data $x_1$ with noise $x_0$ at time $t$."""
        return x1 + self.sigma(t) * x0


def consistency_sample(
    schedule: KarrasSchedule,
    function: VelocityField,
    x0: Vector,
    key: PRNGKeyArray,
    cond: Cond = None,
    *,
    times: TimesLike | Sequence[float],
) -> Vector:
    r"""The multistep consistency sampler (Song et al. 2023, Algorithm 1) on the times
    $t_0 < t_1 < \dots < t_{K-1}$ (one `jax.lax.scan`):

    $$a_0 = f\big(t_0, \sigma(t_0)\,x_0, c\big),\qquad
      a_k = f\big(t_k,\ a_{k-1} + \sqrt{\sigma(t_k)^2 - \epsilon^2}\;\xi_k,\ c\big),\quad
      \xi_k \sim \mathcal N(0, I).$$

    The first step starts from $\sigma(t_0)\,x_0$, the perturbed data with the data term dropped
    (Song et al.'s $\hat x_T \sim \mathcal N(0, \sigma_{\max}^2 I)$ at $t_0 = 0$): accurate when
    $\sigma(t_0)$ is large against the data's scale. With the exact consistency function every
    $a_k$ has the law of the ODE's end point, the data perturbed at $\sigma = \epsilon$: step $k$
    re-noises $a_{k-1}$ to exactly the marginal at $\sigma(t_k)$ (the tests check it on Gaussian
    data, where the consistency function is linear). Differentiable, so it also gives the
    actions of Consistency-AC's Q term.

    **Arguments:**

    - `schedule`: the [`KarrasSchedule`][interpolant_rl.KarrasSchedule] ($\sigma(t)$, $\epsilon$).
    - `function`: the consistency function `f(t, x, cond) -> action`, e.g. a
      [`ConsistencyFunction`][interpolant_rl.nn.ConsistencyFunction].
    - `x0`: standard normal noise, shape `(dim,)`.
    - `key`: randomness of the re-noising steps.
    - `cond`: the function's conditioning (one state), or `None`.
    - `times`: the increasing times $t_k \in [0, 1)$ (an array or a sequence of $K \ge 1$
      floats; one network
      evaluation each; $t_0 = 0$ starts at $\sigma_{\max}$).

    **Returns:** the sample, shape `(dim,)`.
    """
    times = jnp.asarray(times, dtype=x0.dtype)
    if times.ndim != 1 or times.shape[0] < 1:
        raise ValueError(f"times must be a non-empty 1-D grid, got shape {times.shape}")
    action = function(times[0], schedule.sigma(times[0]) * x0, cond)
    if times.shape[0] == 1:
        return action

    def step(action, inputs):
        t, step_key = inputs
        scale = jnp.sqrt(jnp.maximum(schedule.sigma(t) ** 2 - schedule.sigma_min**2, 0.0))
        x = action + scale * jr.normal(step_key, action.shape, action.dtype)
        return function(t, x, cond), None

    keys = jr.split(key, times.shape[0] - 1)
    action, _ = jax.lax.scan(step, action, (times[1:], keys))
    return action
