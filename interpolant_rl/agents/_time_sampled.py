r"""Training steps whose loss draws its times from a stateful sampler: the agents' `time_sampler`
setting, and the step that trains on such a loss and then adapts the sampler to the step."""

from collections.abc import Callable
from typing import Any, get_args, Literal

import jax
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..data import Batch
from ..objectives import (
    AbstractTimeSampler,
    AdaptiveTimeSampler,
    GradientNormTimeSampler,
    UniformTimes,
    VarianceMinimisingTimeSampler,
)
from ._optim import Trained


TimeSamplerName = Literal["uniform", "adaptive", "variance_minimising", "gradient_norm"]
"""The agents' `time_sampler` setting: `"uniform"` (every paper's), `"adaptive"` (look-ahead
decrease), `"variance_minimising"` (bins drawn in proportion to the root second moment of their
loss) or `"gradient_norm"` (in proportion to the root second moment of their per-sample
parameter gradient)."""


def behaviour_time_sampler(name: TimeSamplerName) -> AbstractTimeSampler:
    r"""The time sampler of a behaviour-cloning loss (flow matching, denoising), by
    configuration name: `"uniform"` is [`UniformTimes`][interpolant_rl.objectives.UniformTimes]`()`
    (every paper's $t \sim U[0, 1)$), `"adaptive"` a fresh
    [`AdaptiveTimeSampler`][interpolant_rl.objectives.AdaptiveTimeSampler]`.uniform()`,
    `"variance_minimising"` a fresh
    [`VarianceMinimisingTimeSampler`][interpolant_rl.objectives.VarianceMinimisingTimeSampler]`.uniform()`
    and `"gradient_norm"` a fresh
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler]`.uniform()`,
    each with its default settings (10 bins, importance weighted: the same objective). Which to
    use when, as measured: the [benchmark](../benchmarks.md#adaptive-time-sampling-issue-16)."""
    if name == "uniform":
        return UniformTimes()
    if name == "adaptive":
        return AdaptiveTimeSampler.uniform()
    if name == "variance_minimising":
        return VarianceMinimisingTimeSampler.uniform()
    if name == "gradient_norm":
        return GradientNormTimeSampler.uniform()
    raise ValueError(
        f"time_sampler must be one of {', '.join(get_args(TimeSamplerName))}, got {name!r}"
    )


PerSampleErrors = Callable[..., Float[Array, " n"]]
"""`per_sample(model, actions, observations, times, noise) -> errors`: a loss's integrand at given
times and noises, one error per row (e.g.
[`flow_matching_errors`][interpolant_rl.objectives.flow_matching_errors] with its interpolant
bound)."""


def batch_probe_errors(per_sample: PerSampleErrors, batch: Batch, key: PRNGKeyArray) -> Callable:
    r"""The `errors(model, times, rows=None)` that a sampler's
    [`adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt] probes: `per_sample` on the
    batch's actions and observations with one noise per row drawn from `key` (the same at every
    call, so that "before" and "after" see common data and noise), invalid chunks at zero;
    `rows` selects a subset of the rows (the per-sample gradients of
    [`GradientNormTimeSampler`][interpolant_rl.objectives.GradientNormTimeSampler])."""

    def errors(model, times, rows=None):
        noise = jr.normal(key, batch.actions.shape, dtype=batch.actions.dtype)
        data = (batch.actions, batch.observations, noise, batch.valid)
        actions, observations, noise, valid = (
            data if rows is None else jax.tree.map(lambda x: x[rows], data)
        )
        return per_sample(model, actions, observations, times, noise) * valid

    return errors


def minimise_and_adapt(
    trained: Trained,
    time_sampler: AbstractTimeSampler,
    loss_fn: Callable[[Any], tuple[Float[Array, ""], Any]],
    per_sample: PerSampleErrors,
    batch: Batch,
    key: PRNGKeyArray,
) -> tuple[Trained, AbstractTimeSampler, Any]:
    r"""One optimiser step of `trained` on `loss_fn(model) -> (loss, aux)` (a loss whose times
    come from `time_sampler`), then the sampler's
    [`adapt`][interpolant_rl.objectives.AbstractTimeSampler.adapt] to that step, probing
    `per_sample` on the batch ([`batch_probe_errors`][interpolant_rl.agents.batch_probe_errors],
    one probe per row, randomness from `key`). A stateless sampler such as `UniformTimes` is
    returned unchanged and costs no probe.

    **Returns:** `(trained, time_sampler, aux)`.
    """
    new, aux = trained.minimise(loss_fn)
    probe_key, noise_key = jr.split(key)
    errors = batch_probe_errors(per_sample, batch, noise_key)
    time_sampler = time_sampler.adapt(
        errors, trained.model, new.model, probe_key, batch.actions.shape[0]
    )
    return new, time_sampler, aux
