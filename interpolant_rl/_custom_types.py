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
NestedArrayLike: TypeAlias = ArrayLike | Sequence[Any]
"""An array or (nested) list of numbers, as users write literal parameters."""
