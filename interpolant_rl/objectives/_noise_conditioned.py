r"""The loss that teaches a noise-conditioned critic its smoothed landscapes (NC-LQL)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._custom_types import Cond, Scalar
from .._langevin import LangevinSchedule
from ._weighting import weighted_mean


def noise_level_loss(
    values: Callable[[Cond, Float[Array, "batch dim"], Float[Array, " batch"]], Array],
    schedule: LangevinSchedule,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    targets: Float[Array, " batch"],
    times: Float[Array, " batch"],
    noise: Float[Array, "batch dim"],
    *,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""Regress a noise-conditioned critic, at perturbed actions, on the clean values (NC-LQL,
    Ki et al. 2026): with one level time $t_i$ and one $z_i \sim \mathcal N(0, I)$ per row,

    $$\mathcal L(\phi) = \operatorname{mean}_i\, w_i\,\frac1K\sum_{k=1}^K
      \Big(Q_{\phi,k}\big(s_i,\ a_i + \sigma(t_i)\,z_i,\ t_i\big) - y_i\Big)^2,
      \qquad y_i = \bar Q(s_i, a_i)\ \text{(held fixed)},$$

    with $\sigma(t)$ the [`LangevinSchedule`][interpolant_rl.LangevinSchedule]'s noise at $t$
    and $w$ the validity weights (a [`weighted_mean`][interpolant_rl.objectives.weighted_mean]).
    Its minimiser at level $t$ is $\mathbb E[\bar Q(s, a) \mid a + \sigma(t) z]$, the clean
    critic smoothed by the noise: the landscapes annealed Langevin dynamics moves through
    ([`annealed_langevin_sample`][interpolant_rl.annealed_langevin_sample]).

    **Arguments:**

    - `values`: the critic on a batch, `(cond, actions, times) -> (batch, K)` or `(batch,)`,
      e.g. [`NoiseConditionedEnsemble.batch_values`][interpolant_rl.nn.NoiseConditionedEnsemble.batch_values]
      (differentiated).
    - `schedule`: gives $\sigma(t)$.
    - `actions`: the clean actions $a_i$, shape `(batch, dim)`.
    - `cond`: the states, batched along axis 0 (or `None`).
    - `targets`: $y_i$, shape `(batch,)` (wrapped in `stop_gradient`).
    - `times`: the level times $t_i$, shape `(batch,)`.
    - `noise`: the standard normal $z_i$, shape `(batch, dim)`.
    - `weights`: optional per-row weights (the validity mask).

    **Returns:** the scalar loss.
    """
    sigmas = schedule.sigma(times).astype(actions.dtype)
    perturbed = actions + sigmas[:, None] * noise
    predictions = values(cond, perturbed, times).reshape(actions.shape[0], -1)
    errors = (predictions - jax.lax.stop_gradient(targets)[:, None]) ** 2
    return weighted_mean(jnp.mean(errors, axis=-1), weights)
