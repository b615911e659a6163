r"""Fixed-grid integration of Diffrax terms, and `sample`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._brownian import _levy_area_for, GridBrownianPath
from ._custom_types import Cond, Times, TimesLike, Trajectory, Vector, VectorLike
from ._process import AbstractProcess, AbstractSDE


DEFAULT_NUM_STEPS = 10
"""Step count used by `sample` when neither `num_steps` nor `ts` is given (the papers' $T$)."""


def time_grid(num_steps: int | None = None, ts: TimesLike | None = None, dtype=None) -> Times:
    r"""The integration grid: `ts` if given, else `num_steps` uniform steps on $[0, 1]$
    (default `DEFAULT_NUM_STEPS`). Raises `ValueError` on an impossible request."""
    if ts is not None:
        if num_steps is not None:
            raise ValueError("pass either num_steps or ts, not both")
        if not isinstance(ts, jax.core.Tracer):  # concrete grids are validated up front
            concrete = np.asarray(ts, dtype=float)
            if concrete.ndim != 1 or concrete.shape[0] < 2:
                raise ValueError(f"ts must be a 1-D grid of at least 2 times, got {concrete.shape}")
            steps = np.diff(concrete)
            if not np.all(np.isfinite(concrete)) or not (np.all(steps > 0) or np.all(steps < 0)):
                raise ValueError("ts must be finite and strictly monotonic")
        ts = jnp.asarray(ts, dtype=dtype if dtype is not None else float)
        if ts.ndim != 1 or ts.shape[0] < 2:
            raise ValueError(f"ts must be a 1-D grid of at least 2 times, got shape {ts.shape}")
        return ts
    num_steps = DEFAULT_NUM_STEPS if num_steps is None else num_steps
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return jnp.linspace(0.0, 1.0, num_steps + 1, dtype=dtype if dtype is not None else float)


def integrate_on_grid(
    terms: diffrax.AbstractTerm,
    solver: diffrax.AbstractSolver,
    ts: Times,
    y0: Vector,
    args: Cond = None,
    save_trajectory: bool = False,
) -> Vector | Trajectory:
    r"""Step a Diffrax solver through the grid `ts` (increasing or decreasing) in one `lax.scan`.

    This calls each solver's own `init`/`step`, so every Diffrax solver works unchanged; it
    skips `diffrax.diffeqsolve`'s adaptive-stepping loop, which a fixed grid does not need and
    which costs time per step (see `benchmarks/sde_overhead.py`).

    **Returns:** the state at `ts[-1]`, or the states at every time of `ts` (shape
    `(len(ts), *y0.shape)`, `ts[0]` included) when `save_trajectory`.
    """
    state = solver.init(terms, ts[0], ts[1], y0, args)

    def step(carry, times):
        y, state = carry
        t0, t1 = times
        y, _, _, state, _ = solver.step(terms, t0, t1, y, args, state, made_jump=False)
        return (y, state), (y if save_trajectory else None)

    (y1, _), ys = jax.lax.scan(step, (y0, state), (ts[:-1], ts[1:]))
    if save_trajectory:
        return jnp.concatenate([y0[None], ys], axis=0)
    return y1


def sample(
    process: AbstractProcess,
    x0: VectorLike,
    *,
    key: PRNGKeyArray | None = None,
    cond: Cond = None,
    solver: diffrax.AbstractSolver = diffrax.Euler(),
    num_steps: int | None = None,
    ts: TimesLike | None = None,
    save_trajectory: bool = False,
    brownian: diffrax.AbstractBrownianPath | None = None,
) -> Vector | tuple[Times, Trajectory]:
    r"""Integrate `process` from `x0` (one sample of shape `(dim,)`) along a time grid.

    **Arguments:**

    - `process`: any [`interpolant_rl.AbstractProcess`][].
    - `x0`: the initial state at `ts[0]` (usually $\mathcal N(0, I)$ noise at $t = 0$).
    - `key`: randomness for the Brownian path of an SDE (ignored by ODEs).
    - `cond`: passed to the velocity field as its third argument (the RL state).
    - `solver`: any Diffrax solver, e.g. `diffrax.Euler()` (Euler–Maruyama for SDEs),
      `diffrax.Heun()`, `diffrax.Tsit5()`, `diffrax.SRA1()`.
    - `num_steps` or `ts`: a uniform grid of `num_steps` steps on $[0,1]$ (default 10), or an
      explicit grid.
    - `save_trajectory`: also return the states at every grid time.
    - `brownian`: override the Brownian path of an SDE (default: a
      [`interpolant_rl.GridBrownianPath`][] drawn from `key` on the grid, with the Lévy area the
      solver needs).

    **Returns:** the final state, or `(ts, trajectory)` with `trajectory[k]` the state at `ts[k]`.

    !!! example
        ```python
        x1 = jax.vmap(lambda k, z: sample(sde, z, key=k, num_steps=10))(keys, noise)
        ```
    """
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(float)
    grid = time_grid(num_steps, ts, dtype=x0.dtype)
    if isinstance(process, AbstractSDE) and brownian is None:
        if key is None:
            raise ValueError(f"{type(process).__name__} is stochastic: pass key=")
        brownian = GridBrownianPath.draw(key, grid, x0.shape, _levy_area_for(solver), x0.dtype)
    out = integrate_on_grid(process.terms(brownian), solver, grid, x0, cond, save_trajectory)
    return (grid, out) if save_trajectory else out
