r"""Milliseconds per gradient update of every registered agent, and how close it runs to the
machine's dense-matmul throughput.

Run as `python benchmarks/train_step.py [--quick] [--configs small paper] [--agents qam fql]
[--num-updates 10]`. One JSON object goes to stdout; progress goes to stderr.

What is measured, in one process, for every agent of `interpolant_rl.agents.available_agents()`
(or `--agents`) at two sizes, both on OGBench cube-double's shapes (observation dimension 37,
action chunks of 5 five-dimensional actions flattened to 25, `override(config, horizon=5)`),
batch 256, every other hyperparameter at the agent's default (flow steps T = 10), except
QAM-FQL's distillation weight alpha = 30 and QAM-EDIT's edit scale 0.1 (`VARIANT_VALUES`: at
their defaults, 0 and 0, both are plain QAM):

- `small`: `resize(default_config(name), width=256, depth=2, num_critics=2)` (the CPU preset of
  `benchmarks/ogbench_reduced.py`);
- `paper`: `resize(default_config(name), width=512, depth=4, num_critics=10)` (the QAM protocol).

The timed program is exactly `agent.update(batch, key)`: a jitted `lax.scan` of
`agent.update_step` over a batch with a leading axis of `num_updates` (default 10), wrapped in
`jax.jit` with every array of the agent as an *argument* (not a constant) and returning the new
agent's arrays and the metrics. It is traced and lowered (`jax.jit(f).lower(...)`, reported as
`compile_s.lower`) and compiled (`.compile()`, `compile_s.compile`) separately, then called on
the same random batch; `ms_per_update` is the median over repetitions of (seconds per blocking
call) / `num_updates`. Equinox's `filter_jit` dispatch in front of `agent.update` is not included
(microseconds, against milliseconds per update).

FLOPs. XLA's `cost_analysis()["flops"]` visits a `while` loop's body once whatever its trip
count, and a `lax.scan` is a `while` loop: a scan of 10 matmuls is reported as the FLOPs of one.
The updates scan over flow steps (sampling, SDE trajectories, adjoints), so that number
undercounts them. `matmul_gflop_per_update` is therefore counted on the jaxpr of *one*
`update_step` by `benchmarks/_flops.py`: every `dot_general` as $2\cdot$multiply-adds, scan
bodies times their length, the larger branch of a `cond` (`matmul_flops_count` says whether a
`while` loop made it a lower bound; the agents use none). Only matmuls are counted: they are the
work that dense-matmul throughput measures. For comparison, `xla_flops_single_update` is
`jax.jit(update_step).lower(...).cost_analysis()["flops"]` of the same single update (XLA's
HloCostAnalysis on the unoptimised HLO: matmuls *and* elementwise operations, but every scan
body once), and `xla_flops_scanned_call` is the compiled `num_updates`-update program's count,
which is about the single update's again, since the outer scan is counted once too.

Throughput. `achieved_gflops` = `matmul_gflop_per_update` / seconds per update.
`matmul_peak` is measured in the same run, before and after the agents: a jitted float32
`jnp.dot` of two square matrices of each size (CPU: 512, 1024, 2048; GPU: 2048, 4096, 8192;
`--quick`: the first two; `--matmul-sizes` to choose), the best of several timed blocks (on a GPU
at JAX's default float32 matmul precision, TF32 on NVIDIA chips since Ampere, as the agents' own
matmuls); the peak over sizes and over both sweeps is the reference, and
`fraction_of_matmul_peak` = `achieved_gflops` / peak GFLOP/s. Because other processes may share
the machine, one block of the reference matmul (at the peak's size) is also timed right after
every repetition of every agent; `fraction_of_concurrent_matmul` divides by the median of those.

Repetitions: one warm-up call, then (full mode) at least 5 and at most 20 repetitions of one
call each, enough for about 20 s per agent and configuration; `--quick`: 2 updates per call, 2
repetitions, a smaller matmul sweep. Agents run one at a time, so memory holds one agent (plus
its updated copy) at a time. An agent that fails to build, trace, compile or run is reported with
its error (`status: "error"`) and the run goes on.

Target (the issue): at the `paper` configuration on CPU, QAM, FQL and MoMa QL reach at least
50 % of the measured matmul throughput (`targets`).
"""

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _flops import count_matmul_flops, jaxpr_flops

import interpolant_rl as ir
from interpolant_rl import agents
from interpolant_rl.agents import Batch


# OGBench cube-double: `import ogbench; gymnasium.make("cube-double-v0")` (ogbench 1.2.2) has
# observation_space.shape == (37,) and action_space.shape == (5,).
OBS_DIM = 37
ACTION_DIM = 5
HORIZON = 5  # action chunk length: the agents see 5 x 5 = 25-dimensional actions
CHUNK_DIM = HORIZON * ACTION_DIM
BATCH = 256
CONFIGS = {
    "small": dict(width=256, depth=2, num_critics=2),
    "paper": dict(width=512, depth=4, num_critics=10),
    # `benchmarks/gpu_suite.sh --dry-run`'s size: proves the scripts run, measures nothing
    "tiny": dict(width=32, depth=1, num_critics=2),
}
# the reference matmul's sizes: large enough on a GPU to reach its dense-matmul peak
MATMUL_SIZES = {"cpu": [512, 1024, 2048], "gpu": [2048, 4096, 8192]}
TARGET = {
    "metric": "fraction_of_matmul_peak",
    "min": 0.5,
    "config": "paper",
    "platform": "cpu",
    "agents": ["qam", "fql", "moma_ql"],
    "source": "issue 6: >= 50 % of measured matmul throughput at paper config on CPU",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# QAM-FQL's default alpha = 0 (cube-double) and QAM-EDIT's default edit_scale = 0 build plain QAM
# (issue 11: Table 5 and the reference code), which the `qam` row already times. These finite
# values, Table 4's cube-triple cells, keep the variants themselves: QAM-FQL's distilled one-step
# policy (its teacher ODE included) and QAM-EDIT's SAC-style edit policy.
VARIANT_VALUES = {"qam_fql": dict(alpha=30.0), "qam_edit": dict(edit_scale=0.1)}


def agent_config(name: str, size: str):
    """The benchmarked configuration of agent `name` at `size` ("small" or "paper"): the agent's
    defaults, resized, with chunks of `HORIZON` (and `VARIANT_VALUES` for QAM-FQL, QAM-EDIT)."""
    config = agents.resize(agents.default_config(name), **CONFIGS[size])
    return agents.override(config, horizon=HORIZON, **VARIANT_VALUES.get(name, {}))


def random_batch(key, lead: tuple[int, ...]) -> Batch:
    keys = jr.split(key, 4)
    shape = (*lead, BATCH)
    return Batch(
        observations=jr.normal(keys[0], (*shape, OBS_DIM)),
        actions=jnp.clip(jr.normal(keys[1], (*shape, CHUNK_DIM)), -1, 1),
        rewards=jr.normal(keys[2], shape),
        masks=jnp.ones(shape),
        next_observations=jr.normal(keys[3], (*shape, OBS_DIM)),
        valid=jnp.ones(shape),
    )


def programs(agent) -> tuple:
    """`(arrays, multi, single)`: the agent's arrays and two functions of
    `(arrays, batch, key)`: `agent.update` (a scan over the batch's leading axis) and one
    `agent.update_step`, each returning the new agent's arrays and the metrics."""
    arrays, static = eqx.partition(agent, eqx.is_array)

    def multi(arrays, batch, key):
        new, metrics = eqx.combine(arrays, static).update(batch, key)
        return eqx.filter(new, eqx.is_array), metrics

    def single(arrays, batch, key):
        new, metrics = eqx.combine(arrays, static).update_step(batch, key)
        return eqx.filter(new, eqx.is_array), metrics

    return arrays, multi, single


def xla_flops(analysis) -> float | None:
    if isinstance(analysis, list | tuple):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def time_call(fn: Callable, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# The dense-matmul reference.


class MatmulReference:
    """A compiled float32 `jnp.dot` of two `size x size` matrices."""

    def __init__(self, size: int):
        a, b = jr.normal(jr.key(size), (2, size, size), jnp.float32)
        self.size = size
        self.args = (a, b)
        self.fn = jax.jit(jnp.dot).lower(a, b).compile()
        jax.block_until_ready(self.fn(a, b))
        elapsed = time_call(self.fn, self.args)
        self.calls = max(1, math.ceil(0.05 / max(elapsed, 1e-6)))  # ~50 ms per block

    def block_gflops(self) -> float:
        start = time.perf_counter()
        for _ in range(self.calls):
            jax.block_until_ready(self.fn(*self.args))
        seconds = (time.perf_counter() - start) / self.calls
        return 2 * self.size**3 / seconds / 1e9


def matmul_sweep(sizes: list[int], blocks: int) -> dict:
    """Best-of-`blocks` GFLOP/s of the reference matmul at each size."""
    by_size = {}
    for size in sizes:
        reference = MatmulReference(size)
        by_size[size] = max(reference.block_gflops() for _ in range(blocks))
        log(f"[matmul] {size}x{size}: {by_size[size]:.1f} GFLOP/s")
    return by_size


# --------------------------------------------------------------------------------------------
# One agent at one size.


def measure(name: str, size: str, options, reference: MatmulReference) -> dict:
    result: dict = {"agent": name, "config": size}
    stage = "build"
    try:
        config = agent_config(name, size)
        result["config_repr"] = repr(config)
        agent = agents.make_agent(name, OBS_DIM, CHUNK_DIM, jr.key(0), config)
        arrays, multi, single = programs(agent)
        result["parameters"] = int(
            sum(x.size for x in jax.tree.leaves(eqx.filter(agent, eqx.is_inexact_array)))
        )
        batch = random_batch(jr.key(1), (options.num_updates,))
        one = jax.tree.map(lambda x: x[0], batch)
        key = jr.key(2)

        stage = "trace"
        start = time.perf_counter()
        lowered = jax.jit(multi).lower(arrays, batch, key)
        middle = time.perf_counter()
        stage = "compile"
        compiled = lowered.compile()
        end = time.perf_counter()
        result["compile_s"] = {"lower": round(middle - start, 3), "compile": round(end - middle, 3)}
        log(f"[{name}/{size}] lower {middle - start:.2f}s, compile {end - middle:.2f}s")

        stage = "flops"
        traced_single = jax.jit(single).trace(arrays, one, key)
        count = jaxpr_flops(traced_single.jaxpr)
        single_xla = xla_flops(traced_single.lower().cost_analysis())
        scanned_count = count_matmul_flops(multi, arrays, batch, key)

        stage = "run"
        args = (arrays, batch, key)
        estimate = time_call(compiled, args)  # warm-up
        reps = options.min_reps
        if not options.quick:
            reps = min(options.max_reps, max(reps, math.ceil(options.seconds / estimate)))
        seconds, concurrent = [], []
        for rep in range(reps):
            if rep % 2:  # alternate which goes first, to spread drift over both
                concurrent.append(reference.block_gflops())
                seconds.append(time_call(compiled, args))
            else:
                seconds.append(time_call(compiled, args))
                concurrent.append(reference.block_gflops())
    except Exception as error:  # report and go on to the next agent
        log(f"[{name}/{size}] FAILED at {stage}: {type(error).__name__}: {error}")
        log("".join(traceback.format_exception(error)[-3:]))
        result.update(status="error", stage=stage, error=f"{type(error).__name__}: {error}")
        return result

    ms = [1e3 * s / options.num_updates for s in seconds]
    ms_per_update = statistics.median(ms)
    gflop = count.flops / 1e9
    achieved = gflop / (ms_per_update / 1e3)
    concurrent_gflops = statistics.median(concurrent)
    log(
        f"[{name}/{size}] {ms_per_update:.2f} ms/update, {gflop:.3f} GFLOP/update, "
        f"{achieved:.1f} GFLOP/s"
    )
    result.update(
        status="ok",
        ms_per_update=round(ms_per_update, 4),
        ms_per_update_iqr=[round(float(q), 4) for q in np.percentile(ms, [25, 75])],
        matmul_gflop_per_update=round(gflop, 6),
        matmul_flops_count=count.as_dict(),
        matmul_flops_scanned_call_over_num_updates=scanned_count.flops / options.num_updates,
        xla_flops_single_update=single_xla,
        xla_flops_scanned_call=xla_flops(compiled.cost_analysis()),
        achieved_gflops=round(achieved, 3),
        concurrent_matmul_gflops=round(concurrent_gflops, 3),
        fraction_of_concurrent_matmul=round(achieved / concurrent_gflops, 4),
        num_updates=options.num_updates,
        reps=reps,
    )
    return result


def main() -> None:
    names = agents.available_agents()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--agents", nargs="+", choices=names, default=list(names))
    parser.add_argument("--num-updates", type=int, default=None, help="updates per call (10)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="timed seconds per agent and size (20)"
    )
    parser.add_argument(
        "--matmul-sizes",
        nargs="+",
        type=int,
        default=None,
        help="sizes of the reference matmul (CPU: 512 1024 2048; GPU: 2048 4096 8192)",
    )
    options = parser.parse_args()
    platform_sizes = MATMUL_SIZES["cpu" if jax.default_backend() == "cpu" else "gpu"]
    if options.quick:
        options.num_updates = options.num_updates or 2
        options.min_reps, options.max_reps, options.seconds = 2, 2, 0.0
        sizes, blocks = platform_sizes[:2], 3
    else:
        options.num_updates = options.num_updates or 10
        options.min_reps, options.max_reps = 5, 20
        options.seconds = 20.0 if options.seconds is None else options.seconds
        sizes, blocks = platform_sizes, 10
    sizes = options.matmul_sizes or sizes
    if options.num_updates < 1:
        parser.error("--num-updates must be >= 1")
    if options.seconds < 0 or min(sizes) < 1:
        parser.error("--seconds must be >= 0 and --matmul-sizes >= 1")

    sweeps = {"start": matmul_sweep(sizes, blocks)}
    peak_size = max(sweeps["start"], key=sweeps["start"].get)
    reference = MatmulReference(peak_size)

    results = []
    for size in options.configs:
        for name in options.agents:
            log(f"[{name}/{size}] running")
            results.append(measure(name, size, options, reference))
            jax.clear_caches()  # keep memory to one agent's executables at a time

    sweeps["end"] = matmul_sweep(sizes, blocks)
    best = {size: max(sweep[size] for sweep in sweeps.values()) for size in sizes}
    peak_size = max(best, key=best.get)
    peak = best[peak_size]
    for result in results:
        if result["status"] == "ok":
            result["fraction_of_matmul_peak"] = round(result["achieved_gflops"] / peak, 4)

    device = jax.devices()[0]
    target_results = {}
    for result in results:
        if (
            result["config"] == TARGET["config"]
            and result["agent"] in TARGET["agents"]
            and result["status"] == "ok"
        ):
            value = result["fraction_of_matmul_peak"]
            target_results[result["agent"]] = {
                "value": value,
                "meets": bool(value >= TARGET["min"]),
            }
    report = {
        "benchmark": "train_step",
        "mode": "quick" if options.quick else "full",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "equinox": eqx.__version__,
            "optax": importlib.metadata.version("optax"),
            "interpolant_rl": ir.__version__,
        },
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "num_devices": jax.device_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "cpu_count": os.cpu_count(),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": {
            "obs_dim": OBS_DIM,
            "action_dim": ACTION_DIM,
            "horizon": HORIZON,
            "chunk_dim": CHUNK_DIM,
            "batch": BATCH,
            "num_updates": options.num_updates,
            "dtype": "float32",
            "sizes": {size: CONFIGS[size] for size in options.configs},
            "timing": {
                "statistic": "median over repetitions of (seconds per blocking call) / num_updates",
                "reps": [options.min_reps, options.max_reps],
                "seconds_per_agent": options.seconds,
            },
        },
        "matmul_peak": {
            "gflops": round(peak, 3),
            "size": peak_size,
            "gflops_by_size": {
                sweep: {str(k): round(v, 3) for k, v in values.items()}
                for sweep, values in sweeps.items()
            },
            "method": f"jitted float32 jnp.dot of two square matrices, best of {blocks} "
            "blocks of ~50 ms, before and after the agents; peak over both sweeps",
        },
        "targets": [{**TARGET, "applies": device.platform == "cpu", "results": target_results}],
        "results": results,
        "errors": [r["agent"] + "/" + r["config"] for r in results if r["status"] != "ok"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
