"""Type aliases shared by the whole package (jaxtyping)."""

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from jaxtyping import Array, ArrayLike, Float, PyTree, Real


Scalar: TypeAlias = Float[Array, ""]
ScalarLike: TypeAlias = int | float | Float[ArrayLike, ""]
Vector: TypeAlias = Float[Array, " dim"]
VectorLike: TypeAlias = Real[ArrayLike, " dim"]
"""A state as users pass it (integers are promoted to floats)."""
Times: TypeAlias = Float[Array, " grid"]
TimesLike: TypeAlias = Float[ArrayLike, " grid"]
Trajectory: TypeAlias = Float[Array, "grid dim"]
Cond: TypeAlias = PyTree[Any]
"""Whatever conditions a velocity field (the RL state/observation); Diffrax's `args`."""

VelocityField: TypeAlias = Callable[[Scalar, Vector, Cond], Vector]
"""A velocity field `v(t, x, cond) -> v`, acting on one unbatched sample `x` of shape `(dim,)`."""
NoiseField: TypeAlias = Callable[[Scalar, Vector, Cond], Vector]
r"""A noise-prediction ($\varepsilon$-prediction) network `eps(t, x, cond) -> x0_hat`: its
estimate of $\mathbb E[x_0 \mid x_t = x]$, acting on one unbatched sample `x` of shape `(dim,)`
(any velocity-field architecture, e.g. [`interpolant_rl.nn.VelocityField`][], can serve as one)."""
JumpField: TypeAlias = Callable[[Scalar, Scalar, Vector, Cond], Vector]
r"""A two-time field `G(t, s, x, cond) -> x1_hat`: the prediction of the data $\hat x_1$ used
to jump from `x` at time `t` to time `s`, acting on one unbatched sample `x` of shape `(dim,)`."""
AverageVelocityField: TypeAlias = Callable[[Scalar, Scalar, Vector, Cond], Vector]
r"""An average-velocity field `u(t, s, x, cond) -> u`: the mean velocity of the flow from `x` at
time `t` to time `s`, acting on one unbatched sample `x` of shape `(dim,)`."""
TimeValue: TypeAlias = Callable[[Scalar, Vector, Cond], Scalar]
"""A scalar function of the flow time, the (noisy) action and the state: `(u, x, cond) -> Q`."""
NestedArrayLike: TypeAlias = ArrayLike | Sequence[Any]
"""An array or (nested) list of numbers, as users write literal parameters."""
