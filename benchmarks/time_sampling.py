r"""Adaptive vs uniform times on Gaussian-mixture behaviour-cloning toys (issue 16, item 4): how
many updates each sampler needs to bring the behaviour-cloning loss within a given excess of
its minimum.

    python benchmarks/time_sampling.py [--problem all] [--seeds 5] [--steps N] [--every 100]

Prints JSON and writes benchmarks/results/time_sampling.json: the top-level fields are the first
problem (`four_modes`, as before), the keys `narrow_ring` and `narrow_ring_denoising` hold the
others in the same layout. `--problem NAME` reruns one of them and keeps the file's other
sections; the default, `all`, runs every problem (`--steps` then applies to all; by default each
problem's own budget).

The problems (one state, observation 0; each fixed before it was first run):

- `four_modes`: a 2-D mixture of four Gaussians (std 0.1, weights 0.4/0.3/0.2/0.1, means
  (±0.6, ±0.6)); flow matching; 4000 updates; thresholds 0.1, 0.05, 0.04, 0.035 (fixed).
- `narrow_ring`: eight equal Gaussians on the circle of radius 0.7 (std 0.02): narrow modes,
  whose exact velocity is steep near $t = 1$; flow matching; 6000 updates. Its thresholds are
  set by a rule on the uniform sampler's own curves, fixed before the other samplers were run:
  for each of 25 %, 50 % and 75 % of the budget, the median over seeds of the uniform run's
  best excess so far (its running minimum) at that update, rounded to two significant figures.
  The uniform sampler therefore reaches them at about 25/50/75 % of its budget by
  construction; the question is whether another law gets there sooner.
- `narrow_ring_denoising`: the same mixture, fitted as the diffusion agents fit their policy,
  by the $\varepsilon$-prediction loss
  ([`denoising_loss`][interpolant_rl.objectives.denoising_loss]) on the
  [`VariancePreservingInterpolant`][interpolant_rl.VariancePreservingInterpolant] (0.1, 10),
  continuous times; 6000 updates; thresholds by narrow_ring's rule. Chosen because, unlike
  flow matching, its per-sample gradient grows steeply toward the data end ($\beta_t \to 0$),
  which is the premise of gradient-variance time sampling.

The network is a 3x64 [`VelocityField`][interpolant_rl.nn.VelocityField] (a velocity field, or a
noise field for denoising) trained by Adam (1e-3, batch 256) with the agents' own steps:
[`sampled_flow_matching_step`][interpolant_rl.agents.sampled_flow_matching_step], or
[`minimise_and_adapt`][interpolant_rl.agents.minimise_and_adapt] on the denoising loss with
[`denoising_errors`][interpolant_rl.objectives.denoising_errors] as probes (what Diffusion-QL's
actor step does), with `UniformTimes()`, `AdaptiveTimeSampler.uniform()` (look-ahead decrease),
`VarianceMinimisingTimeSampler.uniform()` (bins drawn with probability proportional to the root
of their loss's second moment) or `GradientNormTimeSampler.uniform()` (proportional to the root
of their per-sample parameter gradient's second moment), each with its default settings.
The excess of the loss over its minimum is exactly

$$\mathcal L(\theta) - \min\mathcal L = \mathbb E_{t \sim U[0,1],\,x_t}\,
  \tfrac1d\|f_\theta(t, x_t) - f^*(t, x_t)\|^2$$

with $f^*$ the mixture's exact velocity ([`ExactVelocity`][interpolant_rl.testing.ExactVelocity])
or exact noise posterior mean $\mathbb E[x_0 \mid x_t]$ (`GaussianMixture.noise_posterior_mean`),
estimated every `--every` updates on one fixed set of 8192 $(t, x_0, x_1)$ per seed (the same
for every sampler). Rows: per sampler and threshold, the updates needed per seed (`null`: not
reached within the budget), their median, and the final excess; also the wall time per update.
For the binned adaptive samplers, also their final bin laws and `final_variance_ratio`: on the
trained field and 4096 fresh times, the variance of one importance-weighted draw of the
per-sample loss (`loss`) and the trace of the covariance of its parameter gradient (`gradient`)
under the sampler's final law, divided by the same under uniform times; below 1 means the law
has cut that variance. For every run, `best_binned_gradient_ratio`: the least that *any* law
over the same 10 bins could make the gradient's second moment, relative to uniform times, on
that run's final network, $(\frac1K\sum_k\sqrt{G_k})^2/\frac1K\sum_k G_k$ with $G_k$ the bin's
mean squared per-sample gradient norm (Cauchy–Schwarz: 1 when every bin is alike) — how much
room the problem leaves a time sampler at all.
"""

import argparse
import functools
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
from interpolant_rl.agents import (
    adam,
    Batch,
    minimise_and_adapt,
    sampled_flow_matching_step,
    Trained,
)
from interpolant_rl.nn import VelocityField
from interpolant_rl.testing import GaussianMixture


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "time_sampling.json"
INTERPOLANT = ir.LinearInterpolant()
VP = ir.VariancePreservingInterpolant()  # the diffusion agents' schedule (0.1, 10)
MIXTURE = GaussianMixture(
    [0.4, 0.3, 0.2, 0.1],
    [[0.6, 0.6], [-0.6, 0.6], [-0.6, -0.6], [0.6, -0.6]],
    [0.01 * np.eye(2)] * 4,
)
_ANGLES = 2 * np.pi * np.arange(8) / 8
RING = GaussianMixture(
    np.full(8, 1 / 8),
    0.7 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1),
    [0.02**2 * np.eye(2)] * 8,
)
THRESHOLDS = (0.1, 0.05, 0.04, 0.035)
THRESHOLD_FRACTIONS = (0.25, 0.5, 0.75)  # narrow_ring: of the uniform sampler's budget
PROBLEMS = {
    "four_modes": dict(
        mixture=MIXTURE,
        steps=4000,
        description="2-D mixture of 4 Gaussians (std 0.1), one state; 3x64 VelocityField, Adam 1e-3",
    ),
    "narrow_ring": dict(
        mixture=RING,
        steps=6000,
        description=(
            "2-D mixture of 8 equal Gaussians on the circle of radius 0.7 (std 0.02), one state; "
            "3x64 VelocityField, Adam 1e-3"
        ),
    ),
    "narrow_ring_denoising": dict(
        mixture=RING,
        steps=6000,
        loss="denoising",
        description=(
            "narrow_ring's mixture, behaviour cloning of a diffusion policy: the epsilon-"
            "prediction (denoising) loss on the VP schedule (0.1, 10), continuous times; "
            "3x64 network, Adam 1e-3"
        ),
    ),
}
BATCH, EVAL, DIAG = 256, 8192, 4096
SAMPLERS = {
    "uniform": obj.UniformTimes(),
    "adaptive": obj.AdaptiveTimeSampler.uniform(),
    "variance_minimising": obj.VarianceMinimisingTimeSampler.uniform(),
    "gradient_norm": obj.GradientNormTimeSampler.uniform(),
}


def _per_sample_loss(field, t, x0, x1):
    """One sample's flow-matching error."""
    x_t = INTERPOLANT.interpolate(x0, x1, t)
    target = INTERPOLANT.velocity_target(x0, x1, t)
    return jnp.mean((field(t, x_t, jnp.zeros(1)) - target) ** 2)


def _per_sample_denoising_loss(field, t, x0, x1):
    """One sample's epsilon-prediction error on the VP schedule."""
    x_t = VP.interpolate(x0, x1, t)
    return jnp.mean((field(t, x_t, jnp.zeros(1)) - x0) ** 2)


PER_SAMPLE = {"flow_matching": _per_sample_loss, "denoising": _per_sample_denoising_loss}


def _loss_kind(problem):
    return PROBLEMS[problem].get("loss", "flow_matching")


def _square_gradient_norms(per_sample, field, t, x0, x1):
    """|grad_theta loss_i|^2 for every row (vmap of the per-sample gradient)."""
    grads = jax.vmap(eqx.filter_grad(per_sample), (None, 0, 0, 0))(field, t, x0, x1)
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_array))
    return sum(jnp.sum(leaf.reshape(t.shape[0], -1) ** 2, axis=1) for leaf in leaves)


@eqx.filter_jit
def best_binned_ratio(per_sample, field, key, x0, x1, num_bins=10):
    r"""The smallest gradient variance any law constant on `num_bins` equal bins can reach,
    over uniform times': with $G_k$ the bin's mean squared per-sample gradient norm (times
    stratified over the bins), $(\frac1K\sum_k\sqrt{G_k})^2 / \frac1K\sum_k G_k$ — the ratio of
    the second moments $\mathbb E_p\|\hat g\|^2$ at the optimal law $p_k \propto \sqrt{G_k}$ and at
    uniform (see GradientNormTimeSampler); the covariance ratio is at most this."""
    n = x0.shape[0]
    bins = jnp.arange(n) % num_bins
    t = (bins + jr.uniform(key, (n,))) / num_bins
    square = _square_gradient_norms(per_sample, field, t, x0, x1)
    per_bin = jax.ops.segment_sum(square, bins, num_bins) / jax.ops.segment_sum(
        jnp.ones(n), bins, num_bins
    )
    return jnp.mean(jnp.sqrt(per_bin)) ** 2 / jnp.mean(per_bin)


@eqx.filter_jit
def variance_ratios(per_sample, field, sampler, key, x0, x1):
    """Single-draw variances of the importance-weighted loss and of its gradient (trace of the
    covariance) with times from `sampler`'s final law, over those with uniform times, on the
    trained field (one draw of times per row, the same data and noise)."""
    uniform_key, sampler_key = jr.split(key)
    n = x0.shape[0]

    def variances(t, w):
        losses = w * jax.vmap(per_sample, (None, 0, 0, 0))(field, t, x0, x1)
        grads = jax.vmap(eqx.filter_grad(per_sample), (None, 0, 0, 0))(field, t, x0, x1)
        leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_array))
        flat = w[:, None] * jnp.concatenate([g.reshape(n, -1) for g in leaves], axis=1)
        return jnp.var(losses), jnp.sum(jnp.var(flat, axis=0))

    loss_u, grad_u = variances(jr.uniform(uniform_key, (n,)), jnp.ones(n))
    t = sampler(sampler_key, (n,))
    loss_p, grad_p = variances(t, sampler.importance_weights(t))
    return dict(loss=loss_p / loss_u, gradient=grad_p / grad_u)


def exact_targets(problem, t, x0, x1):
    r"""$x_t$ and the exact minimiser $f^*(t, x_t)$ of the problem's loss — the mixture's
    velocity $\dot\alpha\,\mathbb E[x_1 \mid x_t] + \dot\beta\,\mathbb E[x_0 \mid x_t]$, or
    $\mathbb E[x_0 \mid x_t]$ for denoising — in float64 NumPy, once per run, by
    `GaussianMixture`'s posterior formulas (component $k$: $S_k = \alpha^2 C_k + \beta^2 I$,
    responsibility $\propto w_k\,\mathcal N(x; \alpha m_k, S_k)$, $S_k^{-1}(x - \alpha m_k)$).
    Not with the mixture's JAX methods: jaxlib's batched LAPACK kernels for their small solves
    deadlocked now and then on two CPU cores (twice in this benchmark), two kernels waiting on
    the same small thread pool; NumPy's solves do not share it."""
    mixture = PROBLEMS[problem]["mixture"]
    interpolant = VP if _loss_kind(problem) == "denoising" else INTERPOLANT
    coefficients = [
        np.asarray(jax.vmap(f)(t), np.float64)[:, None]
        for f in (interpolant.alpha, interpolant.beta, interpolant.alpha_dot, interpolant.beta_dot)
    ]
    alpha, beta, alpha_dot, beta_dot = coefficients
    x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    x_t = alpha * x1 + beta * x0
    weights, means, covs = (
        np.asarray(a, np.float64) for a in (mixture.weights, mixture.means, mixture.covs)
    )
    dim = x_t.shape[1]
    marginal = alpha[:, :, None, None] ** 2 * covs + beta[:, :, None, None] ** 2 * np.eye(dim)
    offset = x_t[:, None, :] - alpha[:, :, None] * means  # (n, K, d)
    whitened = np.linalg.solve(marginal, offset[..., None])[..., 0]
    log_r = (
        np.log(weights)
        - 0.5 * np.einsum("nkd,nkd->nk", offset, whitened)
        - 0.5 * np.linalg.slogdet(marginal)[1]
    )
    r = np.exp(log_r - log_r.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    noise_mean = beta * np.einsum("nk,nkd->nd", r, whitened)
    if _loss_kind(problem) == "denoising":
        target = noise_mean
    else:
        data_mean = np.einsum(
            "nk,nkd->nd", r, means + alpha[:, :, None] * np.einsum("kij,nkj->nki", covs, whitened)
        )
        target = alpha_dot * data_mean + beta_dot * noise_mean
    return jnp.asarray(x_t, jnp.float32), jnp.asarray(target, jnp.float32)


@functools.cache
def compiled(problem):
    """The problem's jitted `(excess, train_chunk)`, its mixture a constant of the second."""
    mixture = PROBLEMS[problem]["mixture"]
    denoising = _loss_kind(problem) == "denoising"

    def denoising_step(trained, sampler, batch, key):
        def loss_fn(field):
            loss = obj.denoising_loss(
                VP, field, batch.actions, batch.observations, key, time_sampler=sampler
            )
            return loss, loss

        def per_sample(field, actions, observations, times, noise):
            return obj.denoising_errors(VP, field, actions, observations, times, noise)

        return minimise_and_adapt(trained, sampler, loss_fn, per_sample, batch, jr.fold_in(key, 1))

    step = denoising_step if denoising else sampled_flow_matching_step

    def excess(field, t, x_t, exact):
        cond = jnp.zeros((t.shape[0], 1))
        return jnp.mean((jax.vmap(field)(t, x_t, cond) - exact) ** 2)

    def train_chunk(trained, sampler, key, steps):
        arrays, static = eqx.partition((trained, sampler), eqx.is_array)

        def body(arrays, key):
            trained, sampler = eqx.combine(arrays, static)
            data_key, step_key = jr.split(key)
            actions = mixture.sample(data_key, BATCH)
            zeros = jnp.zeros((BATCH, 1))
            ones = jnp.ones(BATCH)
            batch = Batch(zeros, actions, ones, ones, zeros, ones)
            trained, sampler, loss = step(trained, sampler, batch, step_key)
            return eqx.filter((trained, sampler), eqx.is_array), loss

        arrays, _ = jax.lax.scan(body, arrays, jr.split(key, steps))
        return eqx.combine(arrays, static)

    return eqx.filter_jit(excess), eqx.filter_jit(train_chunk)


def run(problem, name, seed, steps, every):
    evaluate, train_chunk = compiled(problem)
    init_key, eval_key, train_key = jr.split(jr.key(seed), 3)
    field = VelocityField(2, 1, 64, 3, key=init_key)
    trained = Trained.create(field, adam(1e-3))
    sampler = SAMPLERS[name]
    t_key, x0_key, x1_key = jr.split(eval_key, 3)
    t = jr.uniform(t_key, (EVAL,))
    x0 = jr.normal(x0_key, (EVAL, 2))
    x1 = PROBLEMS[problem]["mixture"].sample(x1_key, EVAL)
    x_t, targets = exact_targets(problem, t, x0, x1)
    curve = []
    seconds = 0.0
    for chunk, key in enumerate(jr.split(train_key, steps // every)):
        start = time.perf_counter()
        trained, sampler = train_chunk(trained, sampler, key, every)
        jax.block_until_ready(trained)
        if chunk > 0:  # the first chunk compiles
            seconds += time.perf_counter() - start
        curve.append(float(evaluate(trained.model, t, x_t, targets)))
    binned = isinstance(sampler, obj.AbstractBinnedTimeSampler)
    probabilities = [round(float(p), 3) for p in sampler.probabilities()] if binned else None
    per_sample = PER_SAMPLE[_loss_kind(problem)]
    ratios = (
        variance_ratios(
            per_sample, trained.model, sampler, jr.fold_in(eval_key, 7), x0[:DIAG], x1[:DIAG]
        )
        if binned
        else None
    )
    ratios = None if ratios is None else {k: round(float(v), 3) for k, v in ratios.items()}
    bound = best_binned_ratio(
        per_sample, trained.model, jr.fold_in(eval_key, 8), x0[:DIAG], x1[:DIAG]
    )
    return dict(
        final=curve[-1],
        curve=curve,
        ms_per_update=1e3 * seconds / max(steps - every, 1),
        final_bin_probabilities=probabilities,
        final_variance_ratio=ratios,
        best_binned_gradient_ratio=round(float(bound), 3),
    )


def ruled_thresholds(uniform_runs, steps, every):
    """The narrow_ring rule: per fraction q of the budget, the median over seeds of the uniform
    run's running-minimum excess at update q * steps, to two significant figures."""
    best = np.minimum.accumulate(np.array([r["curve"] for r in uniform_runs]), axis=1)
    columns = [max(round(q * steps / every) - 1, 0) for q in THRESHOLD_FRACTIONS]
    return tuple(float(f"{np.median(best[:, c]):.2g}") for c in columns)


def solve(problem, seeds, steps, every):
    """Every sampler on `problem`: its JSON section (thresholds, rows, curves)."""
    results, thresholds = {}, THRESHOLDS if problem == "four_modes" else None
    for name in SAMPLERS:
        runs = [run(problem, name, seed, steps, every) for seed in range(seeds)]
        if thresholds is None:  # uniform runs first: the rule reads its curves
            thresholds = ruled_thresholds(runs, steps, every)
        reached = [
            {
                str(level): next(
                    ((i + 1) * every for i, e in enumerate(r["curve"]) if e <= level), None
                )
                for level in thresholds
            }
            for r in runs
        ]
        results[name] = dict(
            updates_to_reach={
                str(level): dict(
                    per_seed=[x[str(level)] for x in reached],
                    median=_median([x[str(level)] for x in reached]),
                )
                for level in thresholds
            },
            final_excess=[round(r["final"], 5) for r in runs],
            final_excess_mean=float(np.mean([r["final"] for r in runs])),
            ms_per_update=float(np.median([r["ms_per_update"] for r in runs])),
            final_bin_probabilities=[r["final_bin_probabilities"] for r in runs],
            final_variance_ratio=[r["final_variance_ratio"] for r in runs],
            best_binned_gradient_ratio=[r["best_binned_gradient_ratio"] for r in runs],
            curves=[[round(c, 5) for c in r["curve"]] for r in runs],
        )
    section = dict(
        problem=PROBLEMS[problem]["description"],
        batch=BATCH,
        steps=steps,
        eval_every=every,
        seeds=seeds,
        thresholds=list(thresholds),
    )
    if problem != "four_modes":
        section["threshold_rule"] = (
            "median over seeds of the uniform sampler's running-minimum excess at "
            f"{', '.join(f'{q:.0%}' for q in THRESHOLD_FRACTIONS)} of the budget, "
            "two significant figures"
        )
    return dict(
        section,
        adaptive_settings=_settings(SAMPLERS["adaptive"], "learning_rate", "entropy", "floor"),
        variance_minimising_settings=_settings(SAMPLERS["variance_minimising"], "rate", "floor"),
        gradient_norm_settings=_settings(SAMPLERS["gradient_norm"], "rate", "floor", "max_probes"),
        backend=jax.default_backend(),
        results=results,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=["all", *PROBLEMS], default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="default: each problem's own")
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    problems = list(PROBLEMS) if args.problem == "all" else [args.problem]
    output = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    summary = {}
    for problem in problems:
        steps = args.steps or PROBLEMS[problem]["steps"]
        section = solve(problem, args.seeds, steps, args.every)
        if problem == "four_modes":
            others = {name: output.get(name) for name in PROBLEMS if name != "four_modes"}
            output = dict(section, **others)
        else:
            output[problem] = section
        summary[problem] = dict(
            thresholds=section["thresholds"],
            **{
                name: dict(
                    updates_to_reach={k: v for k, v in r["updates_to_reach"].items()},
                    final_excess_mean=r["final_excess_mean"],
                    ms_per_update=r["ms_per_update"],
                    gradient_variance_ratio=[
                        None if v is None else v["gradient"] for v in r["final_variance_ratio"]
                    ],
                    best_binned_gradient_ratio=r["best_binned_gradient_ratio"],
                )
                for name, r in section["results"].items()
            },
        )
        RESULTS.write_text(json.dumps(output, indent=1) + "\n")
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
