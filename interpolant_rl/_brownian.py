r"""A Brownian path whose increments are drawn up front on a fixed time grid."""

import diffrax
import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._custom_types import Scalar, ScalarLike, TimesLike


class GridBrownianPath(diffrax.AbstractBrownianPath):
    r"""Brownian motion sampled on a fixed grid $t_0 < \dots < t_n$: the increments
    $W_{t_{i+1}} - W_{t_i} \sim \mathcal N(0, t_{i+1} - t_i)$ (and, for stochastic Runge–Kutta
    solvers, the space–time Lévy areas $H_i \sim \mathcal N(0, (t_{i+1}-t_i)/12)$) are stored as
    arrays.

    Compared with `diffrax.VirtualBrownianTree` it costs one array lookup per step, it is
    differentiable in reverse mode (the noise is a constant array) and it vmaps over keys. It only
    answers for whole grid cells, so it must be used with a solver stepping exactly on its grid —
    which is what [`interpolant_rl.sample`][] does. Build one with
    [`GridBrownianPath.draw`][interpolant_rl.GridBrownianPath.draw].

    **Fields:**

    - `ts`: the grid, shape `(n + 1,)`.
    - `increments`: $W_{t_{i+1}} - W_{t_i}$, shape `(n, *shape)`.
    - `levy_increments`: $H_i$ (space–time Lévy area), shape `(n, *shape)`, or `None`.
    """

    ts: Float[Array, " grid"]
    increments: Float[Array, "steps ..."]
    levy_increments: Float[Array, "steps ..."] | None
    levy_area: type[diffrax.BrownianIncrement | diffrax.SpaceTimeLevyArea] = eqx.field(static=True)

    def __check_init__(self):
        if self.ts.ndim != 1 or self.increments.shape[0] != self.ts.shape[0] - 1:
            raise ValueError(
                "GridBrownianPath needs one increment per grid cell: got "
                f"{self.ts.shape[0]} grid times and {self.increments.shape[0]} increments"
            )
        if (self.levy_area is diffrax.SpaceTimeLevyArea) != (self.levy_increments is not None):
            raise ValueError(
                "GridBrownianPath: levy_increments must be given exactly when "
                "levy_area is diffrax.SpaceTimeLevyArea"
            )

    @classmethod
    def draw(
        cls,
        key: PRNGKeyArray,
        ts: TimesLike,
        shape: tuple[int, ...],
        levy_area: type = diffrax.BrownianIncrement,
        dtype=None,
    ) -> "GridBrownianPath":
        r"""Draw a path on the grid `ts` for a state of the given `shape`.

        `levy_area=diffrax.SpaceTimeLevyArea` also draws the space–time Lévy areas needed by
        `diffrax.SRA1`, `diffrax.ShARK` and the other additive-noise SRK solvers."""
        if levy_area not in (diffrax.BrownianIncrement, diffrax.SpaceTimeLevyArea):
            raise ValueError(
                "GridBrownianPath supports levy_area=diffrax.BrownianIncrement or "
                f"diffrax.SpaceTimeLevyArea, not {levy_area.__name__}"
            )
        ts = jnp.asarray(ts, dtype=dtype if dtype is not None else float)
        dts = jnp.diff(ts).reshape((-1,) + (1,) * len(shape))
        w_key, h_key = jr.split(key)
        noise_shape = (ts.shape[0] - 1, *shape)
        increments = jnp.sqrt(dts) * jr.normal(w_key, noise_shape, ts.dtype)
        levy = None
        if levy_area is diffrax.SpaceTimeLevyArea:
            levy = jnp.sqrt(dts / 12.0) * jr.normal(h_key, noise_shape, ts.dtype)
        return cls(ts, increments, levy, levy_area)

    @property
    def t0(self) -> Scalar:
        return self.ts[0]

    @property
    def t1(self) -> Scalar:
        return self.ts[-1]

    def coarsen(self, factor: int) -> "GridBrownianPath":
        r"""The same Brownian motion on the grid made of every `factor`-th time.

        Increments add; space–time Lévy areas combine by Chen's relation, e.g. for two cells
        of equal length $H_{[0,2h]} = \tfrac12(H_1 + H_2) + \tfrac14(W_1 - W_2)$ (its general
        form for unequal cells is used). This is what makes strong-convergence measurements
        possible: coarse and fine solves are driven by one and the same path."""
        n = self.increments.shape[0]
        if factor < 1 or n % factor:
            raise ValueError(f"cannot coarsen {n} cells by a factor of {factor}")
        ts = self.ts[::factor]
        shape = self.increments.shape[1:]
        w = self.increments.reshape((n // factor, factor, *shape))
        levy = None
        if self.levy_increments is not None:
            # Time integral of the path over each coarse cell, from the fine (W, H, dt):
            # int_cell W(u) - W(start) du = sum_j dt_j (W_before_j + W_j/2 + H_j).
            dts = jnp.diff(self.ts).reshape((n // factor, factor) + (1,) * len(shape))
            h = self.levy_increments.reshape(w.shape)
            w_before = jnp.cumsum(w, axis=1) - w
            integral = jnp.sum(dts * (w_before + 0.5 * w + h), axis=1)
            big_dt = jnp.sum(dts, axis=1)
            levy = integral / big_dt - 0.5 * jnp.sum(w, axis=1)
        return GridBrownianPath(ts, jnp.sum(w, axis=1), levy, self.levy_area)

    def _cell(self, t0: ScalarLike, t1: ScalarLike):
        # The cell containing the midpoint: robust to rounding of the step endpoints.
        mid = 0.5 * (t0 + t1)
        # "compare_all": one vectorised comparison instead of a nested while loop per step.
        index = jnp.searchsorted(self.ts, mid, side="right", method="compare_all") - 1
        return jnp.clip(index, 0, self.increments.shape[0] - 1)

    def evaluate(
        self,
        t0: ScalarLike,
        t1: ScalarLike | None = None,
        left: bool = True,
        use_levy: bool = False,
    ):
        r"""Increment $W_{t_1} - W_{t_0}$ over one grid cell (or $W_{t_0}$ at a grid time when
        `t1` is `None`). A reversed cell ($t_1 < t_0$) gives the negated increment."""
        del left
        if t1 is None:
            index = jnp.argmin(jnp.abs(self.ts - t0))
            cumulative = jnp.concatenate(
                [jnp.zeros_like(self.increments[:1]), jnp.cumsum(self.increments, axis=0)]
            )
            return cumulative[index]
        sign = jnp.where(t1 >= t0, 1.0, -1.0).astype(self.increments.dtype)
        index = self._cell(t0, t1)
        w = sign * self.increments[index]
        if not use_levy:
            return w
        dt = jnp.asarray(t1 - t0, dtype=self.increments.dtype)
        if self.levy_increments is None:
            return diffrax.BrownianIncrement(dt=dt, W=w)
        return diffrax.SpaceTimeLevyArea(dt=dt, W=w, H=sign * self.levy_increments[index])


def _levy_area_for(solver: diffrax.AbstractSolver):
    """The Lévy area a solver needs from its Brownian path."""
    if not isinstance(solver, diffrax.AbstractSRK):
        return diffrax.BrownianIncrement
    needed = solver.minimal_levy_area
    if issubclass(needed, diffrax.AbstractSpaceTimeTimeLevyArea):
        raise ValueError(
            f"{type(solver).__name__} needs space-time-time Levy area, which GridBrownianPath "
            "does not provide; pass brownian=diffrax.VirtualBrownianTree(...) instead"
        )
    if issubclass(needed, diffrax.AbstractSpaceTimeLevyArea):
        return diffrax.SpaceTimeLevyArea
    return diffrax.BrownianIncrement
