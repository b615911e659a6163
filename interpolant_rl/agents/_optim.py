r"""Optimisers and the trained-module state: a module, its optimiser and the optimiser's state,
stepped by one call."""

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, get_args, Literal

import equinox as eqx
import optax
from jaxtyping import PyTree

from ._config import check_positive, Hyperparameters


ClipMode = Literal["elementwise", "global_norm"]
"""How `grad_clip` bounds a gradient: `"elementwise"` clips every coordinate to
$[-c, c]$ (the QAM paper, §4: "the parameter gradient is clipped element-wise by 1");
`"global_norm"` rescales the whole gradient of one optimiser to norm at most $c$ (the public
reference code, which clips the global norm of all parameters' gradients at once)."""


def check_optimiser(learning_rate, grad_clip, clip_mode="elementwise") -> None:
    """Raise a one-line `ValueError` for an impossible learning rate, clip value or clip mode."""
    check_positive("learning_rate", learning_rate)
    if grad_clip is not None and not (grad_clip > 0 and math.isfinite(grad_clip)):
        raise ValueError(f"grad_clip must be finite and > 0, or None, got {grad_clip}")
    if clip_mode not in get_args(ClipMode):
        raise ValueError(
            f"clip_mode must be one of {', '.join(get_args(ClipMode))}, got {clip_mode!r}"
        )


def adam(
    learning_rate: float, grad_clip: float | None = None, clip_mode: ClipMode = "elementwise"
) -> "Adam":
    r"""Adam, optionally after clipping the gradient at `grad_clip` $= c$:

    - `clip_mode="elementwise"` (the QAM paper): $g_i \leftarrow \operatorname{clip}(g_i, -c, c)$
      for every coordinate of every parameter;
    - `clip_mode="global_norm"` (the public reference code): $g \leftarrow g\,\min(1, c/\|g\|)$,
      with $\|g\|$ the norm of this optimiser's whole gradient.

    Checks its arguments (one-line `ValueError`) and returns an [`Adam`][interpolant_rl.agents.Adam].
    """
    check_optimiser(learning_rate, grad_clip, clip_mode)
    return Adam(float(learning_rate), None if grad_clip is None else float(grad_clip), clip_mode)


@dataclasses.dataclass(frozen=True)
class Adam(Hyperparameters):
    """Adam after optional gradient clipping (see [`adam`][interpolant_rl.agents.adam]), with the
    interface of an `optax.GradientTransformation` (`init`, `update`).

    A configuration rather than optax's closure: it is the optimiser field of
    [`Trained`][interpolant_rl.agents.Trained], part of what `jit` caches on, so equal settings
    must compare equal (optax builds new, unequal functions on every call: every freshly
    created agent would recompile), and its learning rate may be swept
    ([`make_sweep`][interpolant_rl.train.make_sweep]): a traced value then scales the step.
    """

    learning_rate: float
    grad_clip: float | None = None
    clip_mode: ClipMode = "elementwise"

    def transformation(self) -> optax.GradientTransformation:
        """The optax transformation (the same object for equal Python values)."""
        if isinstance(self.learning_rate, float):
            return _adam(self.learning_rate, self.grad_clip, self.clip_mode)
        return _adam.__wrapped__(self.learning_rate, self.grad_clip, self.clip_mode)

    def init(self, params: PyTree) -> optax.OptState:
        return self.transformation().init(params)

    def update(self, updates: PyTree, state: optax.OptState, params: PyTree = None):
        return self.transformation().update(updates, state, params)


@functools.cache
def _adam(
    learning_rate, grad_clip: float | None, clip_mode: ClipMode
) -> optax.GradientTransformation:
    if grad_clip is None:
        return optax.adam(learning_rate)
    clip = (
        optax.clip(grad_clip)
        if clip_mode == "elementwise"
        else optax.clip_by_global_norm(grad_clip)
    )
    return optax.chain(clip, optax.adam(learning_rate))


Optimiser = Adam | optax.GradientTransformation
"""What [`Trained`][interpolant_rl.agents.Trained] steps with: an [`Adam`][interpolant_rl.agents.Adam]
(sweepable) or any optax transformation."""


class Trained(eqx.Module):
    """A module together with its optimiser and optimiser state.

    **Fields:** `model`, `opt_state`, `optimiser` (static).
    """

    model: PyTree
    opt_state: PyTree
    # an `Adam` (or any optax transformation): a field, not static, so a swept learning rate
    # may be an array
    optimiser: Optimiser

    @classmethod
    def create(cls, model: PyTree, optimiser: "Adam | optax.GradientTransformation") -> "Trained":
        return cls(model, optimiser.init(eqx.filter(model, eqx.is_inexact_array)), optimiser)

    def minimise(self, loss_fn: Callable[..., Any], *args: Any) -> tuple["Trained", Any]:
        """One optimiser step on `loss_fn(model, *args) -> (loss, aux)`; returns `(trained, aux)`."""
        (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(self.model, *args)
        updates, opt_state = self.optimiser.update(
            grads, self.opt_state, eqx.filter(self.model, eqx.is_inexact_array)
        )
        return Trained(eqx.apply_updates(self.model, updates), opt_state, self.optimiser), aux
