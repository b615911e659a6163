r"""Adjoint ODEs solved backwards along a stored forward trajectory.

For a cost $J = \int_0^1 f(X_t, t)\,\mathrm dt + g(X_1)$ along $\mathrm dX = b\,\mathrm dt + \sigma\,\mathrm dB$,
the adjoint $a(t) = \partial J/\partial X_t$ solves, backwards from $a(1) = \nabla g(X_1)$,

$$\frac{\mathrm d a}{\mathrm dt} = -\big(a^\top \nabla_x b(X_t, t) + \nabla_x f(X_t, t)\big).$$
"""

import abc

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from ._custom_types import Cond, Scalar, ScalarLike, Times, TimesLike, Trajectory, Vector
from ._process import AbstractProcess
from ._sampling import integrate_on_grid


class AbstractAdjointODE(eqx.Module):
    r"""The right-hand side $\mathrm da/\mathrm dt = F(t, x, a)$ of an adjoint ODE, evaluated at a
    point $x$ of the stored forward trajectory."""

    @abc.abstractmethod
    def vector_field(self, t: ScalarLike, x: Vector, adjoint: Vector, cond: Cond) -> Vector:
        r"""$\mathrm d a/\mathrm dt$ at time `t`, forward state `x` and adjoint state `adjoint`."""


class LeanAdjointODE(AbstractAdjointODE):
    r"""The lean adjoint of adjoint matching:

    $$\frac{\mathrm d\tilde a}{\mathrm dt} = -\tilde a^\top \nabla_x b_\beta(x, t),\qquad
      \tilde a(1) = -\tau\,\nabla_a Q(s, X_1),$$

    where $b_\beta$ is the drift of `base` (the memoryless SDE of the *base* velocity). It needs
    only vector–Jacobian products of the base network; the running cost of the basic adjoint
    drops out because its gradient vanishes in expectation at the optimum.

    **Fields:** `base` — the base process (usually `MemorylessSDE(interpolant, v_base)`).
    """

    base: AbstractProcess

    def vector_field(self, t: ScalarLike, x: Vector, adjoint: Vector, cond: Cond) -> Vector:
        _, vjp = jax.vjp(lambda y: self.base.drift(t, y, cond), x)
        return -vjp(adjoint)[0]


class BasicAdjointODE(AbstractAdjointODE):
    r"""The basic (full) adjoint of the fine-tuned process with its running cost:

    $$\frac{\mathrm d a}{\mathrm dt} = -\Big(a^\top \nabla_x b_\theta(x, t)
      + \nabla_x \tfrac12\|u(x, t)\|^2\Big),\qquad u = \frac{b_\theta - b_\beta}{\sigma},$$

    with $a(1) = \nabla g(X_1)$ (for adjoint matching $g = -\tau Q$). Its states are the gradients
    of $\int \tfrac12\|u\|^2\mathrm dt + g(X_1)$ with respect to the path (the BAM ablation): solved
    with `diffrax.Euler` and [`interpolant_rl.DiscreteAdjointEvaluation`][] they equal
    `jax.grad` through the Euler–Maruyama discretisation exactly.

    **Fields:** `process` (fine-tuned, drift $b_\theta$), `base` (drift $b_\beta$); both must share
    $\sigma$. Where $\sigma = 0$ (a deterministic step, e.g. the last step of
    [`interpolant_rl.QAMReferenceSDE`][], where both processes take the same base-flow ODE step)
    the control is defined as $u = 0$: the two drifts must coincide there.
    """

    process: AbstractProcess
    base: AbstractProcess

    def control(self, t: ScalarLike, x: Vector, cond: Cond) -> Vector:
        r"""$u = (b_\theta - b_\beta)/\sigma$ ($0$ where $\sigma = 0$)."""
        drift_gap = self.process.drift(t, x, cond) - self.base.drift(t, x, cond)
        sigma = self.process.diffusion(t)
        noisy = sigma > 0
        # double `where`: no 0/0 in the discarded branch, so no NaN in its gradient either
        return jnp.where(noisy, drift_gap / jnp.where(noisy, sigma, 1.0), 0.0)

    def running_cost(self, t: ScalarLike, x: Vector, cond: Cond) -> Scalar:
        r"""$f = \tfrac12\|u\|^2$."""
        return 0.5 * jnp.sum(self.control(t, x, cond) ** 2)

    def vector_field(self, t: ScalarLike, x: Vector, adjoint: Vector, cond: Cond) -> Vector:
        def drift_and_cost(y):
            return self.process.drift(t, y, cond), self.running_cost(t, y, cond)

        # One reverse pass gives a^T grad b_theta + grad f.
        _, vjp = jax.vjp(drift_and_cost, x)
        return -vjp((adjoint, jnp.ones((), x.dtype)))[0]


class AbstractTrajectoryEvaluation(eqx.Module):
    r"""Where on the stored trajectory an adjoint's vector field is evaluated when the backward
    solver asks for time $s$: returns the pair $(x, t)$ to use."""

    @abc.abstractmethod
    def __call__(self, ts: Times, xs: Trajectory, s: ScalarLike) -> tuple[Vector, Scalar]:
        r"""`(x, t)` for solver time `s`, given the grid `ts` and stored states `xs`."""


def _step_index(ts: Times, s: ScalarLike):
    """Index i of the forward step (t_i, t_{i+1}] that contains s (rounding-safe)."""
    tolerance = 1e-4 * jnp.min(jnp.abs(jnp.diff(ts)))
    # "compare_all": one vectorised comparison instead of a nested while loop per step.
    index = jnp.searchsorted(ts, s - tolerance, side="left", method="compare_all") - 1
    return jnp.clip(index, 0, ts.shape[0] - 2)


class DiscreteAdjointEvaluation(AbstractTrajectoryEvaluation):
    r"""$(x_i, t_i)$ for $s \in (t_i, t_{i+1}]$: the state and time at the start of the forward step.

    With `diffrax.Euler` backwards this is exactly the discrete adjoint of an explicit
    Euler(–Maruyama) forward pass, $a_i = a_{i+1} + h\,(a_{i+1}^\top\nabla b(x_i, t_i) + \nabla f(x_i, t_i))$,
    i.e. it equals backpropagation through the forward solve. Meant for `diffrax.Euler`."""

    def __call__(self, ts: Times, xs: Trajectory, s: ScalarLike) -> tuple[Vector, Scalar]:
        index = _step_index(ts, s)
        return xs[index], ts[index]


class InterpolatedEvaluation(AbstractTrajectoryEvaluation):
    r"""$(x(s), s)$ with $x(s)$ linearly interpolated between grid states: the continuous-time
    adjoint, for higher-order backward solvers."""

    def __call__(self, ts: Times, xs: Trajectory, s: ScalarLike) -> tuple[Vector, Scalar]:
        index = _step_index(ts, s)
        weight = (s - ts[index]) / (ts[index + 1] - ts[index])
        return (1 - weight) * xs[index] + weight * xs[index + 1], jnp.asarray(s, ts.dtype)


class QAMReferenceEvaluation(AbstractTrajectoryEvaluation):
    r"""$(x_i, s)$: the state at the start of the forward step but the solver's own time (with
    `diffrax.Euler` backwards, $s = t_{i+1} = t_i + h$). Together with the unregularised memoryless
    base drift this reproduces the QAM reference code's adjoint,
    $\tilde a_i = \tilde a_{i+1} + h\,\tilde a_{i+1}^\top\nabla_x[2v_\beta(x_i, t_i+h) - x_i/(t_i+h)]$."""

    def __call__(self, ts: Times, xs: Trajectory, s: ScalarLike) -> tuple[Vector, Scalar]:
        return xs[_step_index(ts, s)], jnp.asarray(s, ts.dtype)


def solve_adjoint(
    adjoint: AbstractAdjointODE,
    ts: TimesLike,
    xs: Trajectory,
    terminal: Vector,
    *,
    cond: Cond = None,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
    evaluation: AbstractTrajectoryEvaluation = DiscreteAdjointEvaluation(),
) -> Trajectory:
    r"""Solve an adjoint ODE backwards from `terminal` $= a(t_n)$ along a stored trajectory.

    **Arguments:**

    - `adjoint`: e.g. [`interpolant_rl.LeanAdjointODE`][] or [`interpolant_rl.BasicAdjointODE`][].
    - `ts`, `xs`: the forward grid and states (as returned by
      `sample(..., save_trajectory=True)`), shapes `(n + 1,)` and `(n + 1, dim)`.
    - `terminal`: $a$ at `ts[-1]`.
    - `cond`: passed to the velocity fields.
    - `solver`: any Diffrax ODE solver; it steps backwards exactly through the grid.
    - `evaluation`: which trajectory point the vector field sees (default: the exact discrete
      adjoint of an Euler–Maruyama forward pass).

    **Returns:** the adjoint states at every grid time, shape `(n + 1, dim)`; row `k` is
    $a(t_k)$ and the last row is `terminal`.
    """
    ts = jnp.asarray(ts, dtype=xs.dtype)

    def vector_field(s, a, cond):
        x, t = evaluation(ts, xs, s)
        return adjoint.vector_field(t, x, a, cond)

    backwards = integrate_on_grid(
        diffrax.ODETerm(vector_field), solver, ts[::-1], terminal, cond, save_trajectory=True
    )
    return backwards[::-1]
