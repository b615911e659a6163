r"""MeanFlow: one-step policies from an average-velocity field (OFQL's behaviour-cloning term).

The average velocity of the probability-flow ODE $\dot x_\tau = v(x_\tau, \tau)$ between a
(noisier) time $t$ and a (cleaner) time $s$ is

$$u(x_t, t, s) = \frac1{s - t}\int_t^s v(x_\tau, \tau)\,d\tau,\qquad\text{so}\qquad
  x_s = x_t + (s - t)\,u(x_t, t, s),$$

and $u(x, t, t) = v(x, t)$. Differentiating $(s - t)\,u(x_t, t, s) = \int_t^s v\,d\tau$ in $t$
along the trajectory (with $s$ fixed) gives $-u + (s - t)\frac{du}{dt} = -v(x_t, t)$, that is

$$u = v + (s - t)\,\frac{du}{dt},\qquad
  \frac{du}{dt} = \partial_x u\;v + \partial_t u .$$

(The MeanFlow paper writes $u = v - (t - r)\frac{du}{dt}$ with its time running from data to
noise and $r$ the *target* time; both say "target time minus current time", which is $s - t > 0$
here.) This identity turns into a regression target that needs only one forward-mode
derivative, and one evaluation $a = x_0 + u(x_0, 0, 1)$ then samples.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._custom_types import AverageVelocityField, Cond, Scalar, ScalarLike, Vector
from .._interpolant import AbstractInterpolant
from ._time_sampling import (
    AbstractTimeSampler,
    importance_weighted,
    LogitNormalTimes,
)


class MeanFlowPreset(eqx.Module):
    r"""The time law and loss weighting of one published MeanFlow configuration, written in this
    package's time direction ($t = 0$ noise, $t = 1$ data).

    MeanFlow draws two logit-normal times and orders them; on a fraction of the pairs the two
    times are set equal (plain flow matching), and each sample's squared error $e$ is weighted
    by $\mathrm{sg}(1/(e + \epsilon)^p)$. Its two published settings:

    | preset | pairs with $t \ne s$ | logit-normal (MeanFlow's direction) | here | $p$ |
    |---|---|---|---|---|
    | `"imagenet"` | 25 % | $(-0.4, 1.0)$ | $(0.4, 1.0)$ | 1 |
    | `"cifar10"` | 75 % | $(-2.0, 2.0)$ | $(2.0, 2.0)$ | 0.75 |

    (The mean's sign flips with the time direction, see
    [`LogitNormalTimes`][interpolant_rl.objectives.LogitNormalTimes]; both put most of the
    mass on the data side, the CIFAR-10 law much more so.) Get one with
    [`meanflow_preset`][interpolant_rl.objectives.meanflow_preset]; pass it to
    [`meanflow_loss`][interpolant_rl.objectives.meanflow_loss] as `**preset.loss_kwargs()`.

    **Fields:** `equal_time_fraction` (the fraction of pairs with $s = t$), `time_sampler`,
    `adaptive_weight_power` $p$.
    """

    equal_time_fraction: float
    time_sampler: AbstractTimeSampler
    adaptive_weight_power: float

    def loss_kwargs(self) -> dict:
        """The keyword arguments of `meanflow_loss` that this preset sets."""
        return dict(
            equal_time_fraction=self.equal_time_fraction,
            time_sampler=self.time_sampler,
            adaptive_weight_power=self.adaptive_weight_power,
        )


def meanflow_preset(name: str) -> MeanFlowPreset:
    r"""MeanFlow's published setting `name`: `"imagenet"` (25 % of pairs with $t \ne s$,
    logit-normal $(0.4, 1)$ here, $p = 1$) or `"cifar10"` (75 %, logit-normal $(2, 2)$ here,
    $p = 0.75$); see [`MeanFlowPreset`][interpolant_rl.objectives.MeanFlowPreset]."""
    presets = {
        "imagenet": MeanFlowPreset(0.75, LogitNormalTimes(0.4, 1.0), 1.0),
        "cifar10": MeanFlowPreset(0.25, LogitNormalTimes(2.0, 2.0), 0.75),
    }
    if name not in presets:
        raise ValueError(f"unknown MeanFlow preset {name!r}; available: {', '.join(presets)}")
    return presets[name]


def meanflow_target(
    average_velocity: AverageVelocityField,
    x_t: Vector,
    velocity: Vector,
    t: ScalarLike,
    s: ScalarLike,
    cond: Cond = None,
) -> tuple[Vector, Vector]:
    r"""The prediction $u_\theta(x_t, t, s)$ and its MeanFlow regression target

    $$u_{\text{tgt}} = \mathrm{sg}\Big(v + (s - t)\,\frac{du_\theta}{dt}\Big),\qquad
      \frac{du_\theta}{dt} = \partial_x u_\theta\,v + \partial_t u_\theta,$$

    both from one `jax.jvp` of $(x, t, s) \mapsto u_\theta(t, s, x, c)$ with tangents
    $(v, 1, 0)$ (see the module docstring for the identity). With the marginal velocity
    $v(x_t, t)$ the exact average velocity is a fixed point ($u_{\text{tgt}} = u$); with the
    conditional velocity $\dot\alpha_t x_1 + \dot\beta_t x_0$ it is so in conditional mean. At
    $s = t$ the target is $v$ itself, i.e. flow matching.

    **Arguments:**

    - `average_velocity`: the field `u(t, s, x, cond)`.
    - `x_t`: one point at time `t`, shape `(dim,)`.
    - `velocity`: the velocity $v$ at `x_t` (conditional or marginal), shape `(dim,)`.
    - `t`, `s`: the current and the target time.
    - `cond`: the field's conditioning (one state), or `None`.

    **Returns:** `(u, target)`, each `(dim,)`; `target` carries no gradient.
    """
    t = jnp.asarray(t, dtype=x_t.dtype)
    s = jnp.asarray(s, dtype=x_t.dtype)
    u, du_dt = jax.jvp(
        lambda x, t, s: average_velocity(t, s, x, cond),
        (x_t, t, s),
        (velocity, jnp.ones_like(t), jnp.zeros_like(s)),
    )
    target = jax.lax.stop_gradient(velocity + (s - t) * du_dt)
    return u, target


def meanflow_loss(
    interpolant: AbstractInterpolant,
    average_velocity: AverageVelocityField,
    actions: Float[Array, "batch dim"],
    cond: Cond,
    key: PRNGKeyArray,
    *,
    equal_time_fraction: float = 0.25,
    time_sampler: AbstractTimeSampler = LogitNormalTimes(),
    adaptive_weight_power: float = 1.0,
    adaptive_weight_eps: float = 1e-3,
    weights: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""The MeanFlow loss with adaptive weighting:

    $$\mathcal L = \frac1B\sum_i \mathrm{sg}\big((e_i + \epsilon)^{-p}\big)\,e_i,\qquad
      e_i = \tfrac1d\big\|u_\theta(x_t, t, s) - u_{\text{tgt}}\big\|^2,$$

    with $x_t = \alpha_t x_1 + \beta_t x_0$, $x_0 \sim \mathcal N(0, I)$, the conditional velocity
    $v = \dot\alpha_t x_1 + \dot\beta_t x_0$ and $u_{\text{tgt}} = \mathrm{sg}(v + (s - t)\,du_\theta/dt)$
    from [`interpolant_rl.objectives.meanflow_target`][]. The times are two independent draws of
    `time_sampler`, ordered so that $t \le s$ ($t$ the noisier one); on a random subset of
    `round(equal_time_fraction * batch)` samples $s$ is set to $t$, where the loss is plain flow
    matching. $e_i$ is a mean over the action dimensions as in
    [`interpolant_rl.objectives.flow_matching_loss`][], so with `equal_time_fraction=1` and
    `adaptive_weight_power=0` the two losses agree.

    **Arguments:**

    - `interpolant`: the interpolant defining $x_t$ and $v$.
    - `average_velocity`: the field $u_\theta$ being trained, `(t, s, x, cond) -> u`.
    - `actions`: data $x_1$, shape `(batch, dim)`.
    - `cond`: per-sample conditioning batched along axis 0, or `None`.
    - `key`: split as `noise_key, time_key, equal_key = jax.random.split(key, 3)`.
    - `equal_time_fraction`: the fraction of samples with $s = t$, in $[0, 1]$ (MeanFlow uses
      25–75 %).
    - `time_sampler`: the law of the two unordered times (default MeanFlow's logit-normal, see
      [`interpolant_rl.objectives.LogitNormalTimes`][]). A sampler with importance weights
      (e.g. [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler], whose
      target law is uniform) weights each pair by $w(\tau_1)\,w(\tau_2)$, the density ratio of
      the two independent draws, so the loss is the one of its target law (ordering the pair
      and choosing the equal-time subset do not change that).
    - `adaptive_weight_power`: $p$ ($p = 0$: plain squared error; MeanFlow uses $p = 1$).
    - `adaptive_weight_eps`: $\epsilon > 0$.
    - `weights`: optional per-sample weights $w_i$ (e.g. chunk validity): the loss is then
      $\frac1B\sum_i w_i\,\mathrm{sg}((e_i + \epsilon)^{-p})\,e_i$.

    **Returns:** the scalar loss $\mathcal L$.
    """
    noise_key, time_key, equal_key = jr.split(key, 3)
    x0 = jr.normal(noise_key, actions.shape, dtype=actions.dtype)
    t, s, pair_importance = meanflow_time_pairs(
        time_sampler,
        time_key,
        equal_key,
        actions.shape[0],
        equal_time_fraction,
        actions.dtype,
    )
    x_t = jax.vmap(interpolant.interpolate)(x0, actions, t)
    velocity = jax.vmap(interpolant.velocity_target)(x0, actions, t)
    return meanflow_regression_loss(
        average_velocity,
        x_t,
        velocity,
        t,
        s,
        cond,
        adaptive_weight_power=adaptive_weight_power,
        adaptive_weight_eps=adaptive_weight_eps,
        weights=weights,
        importance=pair_importance,
    )


def meanflow_time_pairs(
    time_sampler: AbstractTimeSampler,
    time_key: PRNGKeyArray,
    equal_key: PRNGKeyArray,
    batch: int,
    equal_time_fraction: float,
    dtype=None,
) -> tuple[Float[Array, " batch"], Float[Array, " batch"], Float[Array, " batch"] | None]:
    r"""MeanFlow's time pairs: two independent draws of `time_sampler` per sample, ordered so
    that $t \le s$, with $s$ set to $t$ on a random subset of `round(equal_time_fraction *
    batch)` samples (chosen with `equal_key`).

    **Returns:** `(t, s, importance)`: the times, each `(batch,)`, and the pair's importance
    weight $w(\tau_1)\,w(\tau_2)$ (the product of the sampler's density ratios; `None` for a
    sampler without weights).
    """
    if not 0.0 <= equal_time_fraction <= 1.0:
        raise ValueError(f"equal_time_fraction must lie in [0, 1], got {equal_time_fraction}")
    draws = time_sampler(time_key, (2, batch))
    importance = time_sampler.importance_weights(draws)
    times = draws if dtype is None else draws.astype(dtype)
    t, s = jnp.min(times, axis=0), jnp.max(times, axis=0)
    equal = jr.permutation(equal_key, batch) < round(equal_time_fraction * batch)
    s = jnp.where(equal, t, s)
    pair_importance = None if importance is None else importance[0] * importance[1]
    return t, s, pair_importance


def meanflow_regression_loss(
    average_velocity: AverageVelocityField,
    x_t: Float[Array, "batch dim"],
    velocity: Float[Array, "batch dim"],
    t: Float[Array, " batch"],
    s: Float[Array, " batch"],
    cond: Cond,
    *,
    adaptive_weight_power: float = 1.0,
    adaptive_weight_eps: float = 1e-3,
    weights: Float[Array, " batch"] | None = None,
    importance: Float[Array, " batch"] | None = None,
) -> Scalar:
    r"""The MeanFlow regression at given points, velocities and time pairs:

    $$\mathcal L = \frac1B\sum_i \rho_i\,w_i\,\mathrm{sg}\big((e_i + \epsilon)^{-p}\big)\,e_i,\qquad
      e_i = \tfrac1d\big\|u_\theta(x_i, t_i, s_i) - \mathrm{sg}\big(v_i + (s_i - t_i)\,du_\theta/dt\big)\big\|^2,$$

    the target from [`meanflow_target`][interpolant_rl.objectives.meanflow_target] with the
    given velocity $v_i$ at $x_i$ ($\rho_i$ = `importance`, $w_i$ = `weights`, both 1 when
    `None`). [`meanflow_loss`][interpolant_rl.objectives.meanflow_loss] calls it with the
    interpolant's points and conditional velocities; SOM
    ([`som_loss`][interpolant_rl.objectives.som_loss]) with a velocity estimated from a critic.

    **Returns:** the scalar loss $\mathcal L$.
    """

    def one(x, v, t, s, c):
        return meanflow_target(average_velocity, x, v, t, s, c)

    cond_axis = None if cond is None else 0
    u, target = jax.vmap(one, in_axes=(0, 0, 0, 0, cond_axis))(x_t, velocity, t, s, cond)
    error = jnp.mean((u - target) ** 2, axis=-1)
    weight = jax.lax.stop_gradient(1.0 / (error + adaptive_weight_eps) ** adaptive_weight_power)
    if weights is not None:
        weight = weight * weights
    return jnp.mean(importance_weighted(weight * error, importance))
