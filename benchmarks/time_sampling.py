"""Adaptive vs uniform flow-matching times on a Gaussian-mixture behaviour-cloning toy (issue 16,
item 4): how many updates each needs to bring the flow-matching loss within a given excess of
its minimum.

    python benchmarks/time_sampling.py [--seeds 5] [--steps 4000] [--every 100]

Prints JSON (and writes benchmarks/results/time_sampling.json).

The behaviour is a fixed 2-D mixture of four tight Gaussians (one state, observation 0), the
flow a 3x64 [`VelocityField`][interpolant_rl.nn.VelocityField] trained by Adam (1e-3, batch
256) with the flow agents' own behaviour step,
[`sampled_flow_matching_step`][interpolant_rl.agents.sampled_flow_matching_step], with
`UniformTimes()`, `AdaptiveTimeSampler.uniform()` (look-ahead decrease) or
`VarianceMinimisingTimeSampler.uniform()` (bins drawn with probability proportional to the root
of their loss's second moment), each with its default settings.
The excess of the flow-matching loss over its minimum is exactly

$$\\mathcal L(\\theta) - \\min\\mathcal L = \\mathbb E_{t \\sim U[0,1],\\,x_t}\\,
  \\tfrac1d\\|v_\\theta(t, x_t) - v^*(t, x_t)\\|^2$$

with $v^*$ the mixture's exact velocity ([`ExactVelocity`][interpolant_rl.testing.ExactVelocity]),
estimated every `--every` updates on one fixed set of 8192 $(t, x_0, x_1)$ per seed (the same
for every sampler). Rows: per sampler and threshold, the updates needed per seed (`null`: not
reached within `--steps`), their median, and the final excess; also the wall time per update.
For the binned adaptive samplers, also their final bin laws and `final_variance_ratio`: on the
trained field and 4096 fresh times, the variance of one importance-weighted draw of the
per-sample loss (`loss`) and the trace of the covariance of its parameter gradient (`gradient`)
under the sampler's final law, divided by the same under uniform times; below 1 means the law
has cut that variance.
"""

import argparse
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import interpolant_rl as ir
from interpolant_rl import objectives as obj
from interpolant_rl.agents import adam, Batch, sampled_flow_matching_step, Trained
from interpolant_rl.nn import VelocityField
from interpolant_rl.testing import GaussianMixture


ROOT = Path(__file__).resolve().parents[1]
INTERPOLANT = ir.LinearInterpolant()
MIXTURE = GaussianMixture(
    [0.4, 0.3, 0.2, 0.1],
    [[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]],
    [0.01 * np.eye(2)] * 4,
)
THRESHOLDS = (0.1, 0.05, 0.04, 0.035)
BATCH, EVAL, DIAG = 256, 8192, 4096
SAMPLERS = {
    "uniform": obj.UniformTimes(),
    "adaptive": obj.AdaptiveTimeSampler.uniform(),
    "variance_minimising": obj.VarianceMinimisingTimeSampler.uniform(),
}


def excess(field, t, x0, x1):
    x_t = jax.vmap(INTERPOLANT.interpolate)(x0, x1, t)
    exact = jax.vmap(MIXTURE.velocity_field(INTERPOLANT))(t, x_t)
    cond = jnp.zeros((t.shape[0], 1))
    return jnp.mean((jax.vmap(field)(t, x_t, cond) - exact) ** 2)


def _per_sample_loss(field, t, x0, x1):
    x_t = INTERPOLANT.interpolate(x0, x1, t)
    target = INTERPOLANT.velocity_target(x0, x1, t)
    return jnp.mean((field(t, x_t, jnp.zeros(1)) - target) ** 2)


@eqx.filter_jit
def variance_ratios(field, sampler, key, x0, x1):
    """Single-draw variances of the importance-weighted loss and of its gradient (trace of the
    covariance) with times from `sampler`'s final law, over those with uniform times, on the
    trained field (one draw of times per row, the same data and noise)."""
    uniform_key, sampler_key = jr.split(key)
    n = x0.shape[0]

    def variances(t, w):
        losses = w * jax.vmap(_per_sample_loss, (None, 0, 0, 0))(field, t, x0, x1)
        grads = jax.vmap(eqx.filter_grad(_per_sample_loss), (None, 0, 0, 0))(field, t, x0, x1)
        leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_array))
        flat = w[:, None] * jnp.concatenate([g.reshape(n, -1) for g in leaves], axis=1)
        return jnp.var(losses), jnp.sum(jnp.var(flat, axis=0))

    loss_u, grad_u = variances(jr.uniform(uniform_key, (n,)), jnp.ones(n))
    t = sampler(sampler_key, (n,))
    loss_p, grad_p = variances(t, sampler.importance_weights(t))
    return dict(loss=loss_p / loss_u, gradient=grad_p / grad_u)


@eqx.filter_jit
def train_chunk(trained, sampler, key, steps):
    arrays, static = eqx.partition((trained, sampler), eqx.is_array)

    def body(arrays, key):
        trained, sampler = eqx.combine(arrays, static)
        data_key, step_key = jr.split(key)
        actions = MIXTURE.sample(data_key, BATCH)
        zeros = jnp.zeros((BATCH, 1))
        ones = jnp.ones(BATCH)
        batch = Batch(zeros, actions, ones, ones, zeros, ones)
        trained, sampler, loss = sampled_flow_matching_step(trained, sampler, batch, step_key)
        return eqx.filter((trained, sampler), eqx.is_array), loss

    arrays, _ = jax.lax.scan(body, arrays, jr.split(key, steps))
    return eqx.combine(arrays, static)


def run(name, seed, steps, every):
    init_key, eval_key, train_key = jr.split(jr.key(seed), 3)
    field = VelocityField(2, 1, 64, 3, key=init_key)
    trained = Trained.create(field, adam(1e-3))
    sampler = SAMPLERS[name]
    t_key, x0_key, x1_key = jr.split(eval_key, 3)
    t = jr.uniform(t_key, (EVAL,))
    x0 = jr.normal(x0_key, (EVAL, 2))
    x1 = MIXTURE.sample(x1_key, EVAL)
    evaluate = eqx.filter_jit(excess)
    curve = []
    seconds = 0.0
    for chunk, key in enumerate(jr.split(train_key, steps // every)):
        start = time.perf_counter()
        trained, sampler = train_chunk(trained, sampler, key, every)
        jax.block_until_ready(trained)
        if chunk > 0:  # the first chunk compiles
            seconds += time.perf_counter() - start
        curve.append(float(evaluate(trained.model, t, x0, x1)))
    reached = {
        str(level): next(((i + 1) * every for i, e in enumerate(curve) if e <= level), None)
        for level in THRESHOLDS
    }
    binned = isinstance(sampler, obj.AbstractBinnedTimeSampler)
    probabilities = [round(float(p), 3) for p in sampler.probabilities()] if binned else None
    ratios = (
        variance_ratios(trained.model, sampler, jr.fold_in(eval_key, 7), x0[:DIAG], x1[:DIAG])
        if binned
        else None
    )
    ratios = None if ratios is None else {k: round(float(v), 3) for k, v in ratios.items()}
    return dict(
        reached=reached,
        final=curve[-1],
        curve=curve,
        ms_per_update=1e3 * seconds / max(steps - every, 1),
        final_bin_probabilities=probabilities,
        final_variance_ratio=ratios,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    results = {}
    for name in SAMPLERS:
        runs = [run(name, seed, args.steps, args.every) for seed in range(args.seeds)]
        results[name] = dict(
            updates_to_reach={
                str(level): dict(
                    per_seed=[r["reached"][str(level)] for r in runs],
                    median=_median([r["reached"][str(level)] for r in runs]),
                )
                for level in THRESHOLDS
            },
            final_excess=[round(r["final"], 5) for r in runs],
            final_excess_mean=float(np.mean([r["final"] for r in runs])),
            ms_per_update=float(np.median([r["ms_per_update"] for r in runs])),
            final_bin_probabilities=[r["final_bin_probabilities"] for r in runs],
            final_variance_ratio=[r["final_variance_ratio"] for r in runs],
            curves=[[round(c, 5) for c in r["curve"]] for r in runs],
        )
    output = dict(
        problem="2-D mixture of 4 Gaussians (std 0.1), one state; 3x64 VelocityField, Adam 1e-3",
        batch=BATCH,
        steps=args.steps,
        eval_every=args.every,
        seeds=args.seeds,
        thresholds=list(THRESHOLDS),
        adaptive_settings=_settings(SAMPLERS["adaptive"], "learning_rate", "entropy", "floor"),
        variance_minimising_settings=_settings(SAMPLERS["variance_minimising"], "rate", "floor"),
        backend=jax.default_backend(),
        results=results,
    )
    path = ROOT / "benchmarks" / "results" / "time_sampling.json"
    path.write_text(json.dumps(output, indent=1) + "\n")
    summary = {
        name: dict(
            updates_to_reach={k: v for k, v in r["updates_to_reach"].items()},
            final_excess_mean=r["final_excess_mean"],
            ms_per_update=r["ms_per_update"],
        )
        for name, r in results.items()
    }
    print(json.dumps(summary, indent=1))


def _settings(sampler, *names):
    return dict(num_bins=sampler.num_bins, **{name: getattr(sampler, name) for name in names})


def _median(values):
    """The median counting an unreached threshold as infinite (`null` if half never reach it)."""
    ordered = sorted(np.inf if v is None else v for v in values)
    middle = ordered[len(ordered) // 2] if len(ordered) % 2 else None
    if middle is None:
        low, high = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
        middle = (low + high) / 2
    return None if not np.isfinite(middle) else float(middle)


if __name__ == "__main__":
    main()
