r"""Samplers of two-time fields: jumps of a jump field (MoMa QL's sampler) and the one-step
map of an average-velocity field (MeanFlow's).

A *jump field* $G(t, s, x, c)$ predicts the data $\hat x_1$ from $x$ at time $t$; with the
interpolant's DDIM jump it moves $x$ from $t$ to a cleaner time $s > t$,
$f(x_t; t \to s) = \alpha_s \hat x_1 + \beta_s (x_t - \alpha_t \hat x_1)/\beta_t$. An
*average-velocity field* $u(t, s, x, c)$ moves it by $x_s = x_t + (s - t)\,u$.
"""

import jax
import jax.numpy as jnp

from ._custom_types import AverageVelocityField, Cond, JumpField, ScalarLike, Vector
from ._interpolant import AbstractInterpolant


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

    - `interpolant`, `field`: as in [`interpolant_rl.jump`][].
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


def meanflow_one_step(
    average_velocity: AverageVelocityField, x0: Vector, cond: Cond = None
) -> Vector:
    r"""One-step sampling $a = x_0 + u(x_0, 0, 1)$ (one network evaluation), the exact flow map
    from noise to data when $u$ is the exact average velocity.

    **Arguments:** `average_velocity` `u(t, s, x, cond)`; `x0` one noise sample `(dim,)`;
    `cond` one state, or `None`.

    **Returns:** the action, shape `(dim,)`.
    """
    zero = jnp.zeros((), dtype=x0.dtype)
    one = jnp.ones((), dtype=x0.dtype)
    return x0 + average_velocity(zero, one, x0, cond)
