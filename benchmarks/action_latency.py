r"""Actions per second of every registered agent for one observation: the online rollout path.

Run as `python benchmarks/action_latency.py [--quick] [--configs paper small] [--agents ofql]
[--all-cores]`. One JSON object goes to stdout; progress goes to stderr.

One core. Before JAX is imported, the process pins itself to one CPU (`os.sched_setaffinity`
to the lowest-numbered core it may run on; the threads XLA starts later inherit the mask) and
appends `--xla_cpu_multi_thread_eigen=false` to `XLA_FLAGS` (no Eigen thread pool for the
matmuls). Affinity is what makes it one core; the flag only avoids threads taking turns on it.
The JSON reports the affinity and `cpu_utilisation` = process CPU time / wall time over the timed
calls, which stays at or below about 1 when one core is used. `--all-cores` skips both. (The
same effect from outside: `taskset -c 0 python benchmarks/action_latency.py --all-cores`.)

What is measured, for every agent of `interpolant_rl.agents.available_agents()` (or
`--agents`) at the shapes and sizes of `benchmarks/train_step.py` (OGBench cube-double:
observation dimension 37, action chunks of 5 x 5 = 25 dimensions; `paper`: networks 4 x 512,
10 critics; `small`: 2 x 256, 2 critics; default hyperparameters, T = 10 flow steps, MoMa QL with
one jump; QAM-FQL with alpha = 30 and QAM-EDIT with edit scale 0.1, `train_step.VARIANT_VALUES`,
because at their defaults alpha = 0 and edit scale 0 both are plain QAM, which acts with the
10-step ODE, not with a one-step policy or an edit): the latency of producing one action (one chunk) for one unbatched observation, each
call blocking until the action is ready, in three variants timed in interleaved repetitions
(order rotated every repetition, to cancel drift from other processes):

- `act` (the headline, `actions_per_s`): `np.asarray(agent.act(obs, key))` with a NumPy float32
  observation, i.e. Equinox's `filter_jit` dispatch, the host-to-device copy and the copy back;
- `rollout`: what `interpolant_rl/train/_loop.py` does per chunk of an evaluation episode, with
  its own helper, for one seed and one episode slot: `_evaluation_chunks(policies, obs[None, None],
  key_data, sharding)`
  (`policies`: the agent's acting policy on a seed axis of length 1, built once per evaluation;
  the observation and the key data go to the device, the key is split and the policy acts in
  one compiled call, and the chunk and the next key data come back);
- `compiled`: the policy compiled ahead of time with every array of the agent (critic, targets
  and optimiser states included) as an argument, on device arrays, `block_until_ready`. Handing
  over those 100-180 buffers costs more than `act`'s dispatch, which passes only the arrays the
  policy reads: so `act` can beat this variant.

Compile time is reported separately: `compile_s.lower` (trace + lower) and `compile_s.compile`
of the ahead-of-time program, and `first_act_s`, the first `agent.act` call (its own trace and
compile through `filter_jit`). `compiles_during_timing` counts XLA compilations (JAX's
`/jax/core/compile/backend_compile_duration` events) during the timed calls: anything but 0 means
`act` recompiles in steady state. `policy_matmul_flops` counts the matmul FLOPs of one action
(`benchmarks/_flops.py`, scans times their length), i.e. how many network evaluations acting
costs. Full mode: 30 repetitions of >= 0.1 s and >= 20 calls per variant; `--quick`: 5
repetitions of >= 0.02 s. An agent that fails is reported with its error (`status: "error"`)
and the run goes on.

Target (the issue): the one-step policies (OFQL, MoMa QL with one jump, QAM-FQL) act at more
than 5,000 actions/s at the `paper` size on one core (`targets`).
"""
# ruff: noqa: E402 -- JAX (and NumPy's thread pools) must be imported after the CPU pinning.

import os
import sys


def _pin_to_one_core() -> int | None:
    if "--all-cores" in sys.argv or not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return core


PINNED_CORE = _pin_to_one_core()

import argparse
import importlib.metadata
import json
import math
import platform
import statistics
import time
import traceback

import equinox as eqx
import jax
import jax.monitoring
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from _flops import count_matmul_flops
from train_step import agent_config, CHUNK_DIM, CONFIGS, HORIZON, OBS_DIM

import interpolant_rl as ir
from interpolant_rl import agents
from interpolant_rl.train import seed_sharding
from interpolant_rl.train._loop import _acting_policies, _evaluation_chunks, _stack


TARGET = {
    "metric": "actions_per_s",
    "min": 5000,
    "config": "paper",
    "cores": 1,
    # qam_fql is timed with alpha = 30 (train_step.VARIANT_VALUES, a Table 4 value): its default
    # alpha = 0 is plain QAM, not a one-step policy
    "agents": ["ofql", "moma_ql", "qam_fql"],
    "source": "issue 6: one-step policies (OFQL, MoMa QL with one jump, QAM-FQL) > 5,000 "
    "actions/s at paper size on one core",
}
VARIANTS = ("act", "rollout", "compiled")
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
EVENTS = {COMPILE_EVENT: 0, TRACE_EVENT: 0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _count_event(event: str, duration: float, **kwargs) -> None:
    if event in EVENTS:
        EVENTS[event] += 1


def make_variants(agent, obs: np.ndarray, key) -> tuple[dict, dict]:
    """The three timed callables (no arguments; each blocks until its action is ready), and
    the compile times of the ahead-of-time one."""
    arrays, static = eqx.partition(agent, eqx.is_array)

    def act_program(arrays, obs, key):
        return eqx.combine(arrays, static).act(obs, key)

    device_obs = jnp.asarray(obs)
    start = time.perf_counter()
    lowered = jax.jit(act_program).lower(arrays, device_obs, key)
    middle = time.perf_counter()
    compiled = lowered.compile()
    end = time.perf_counter()
    compile_s = {"lower": round(middle - start, 3), "compile": round(end - middle, 3)}

    def act():
        return np.asarray(agent.act(obs, key))

    sharding = seed_sharding(1, jax.devices()[:1])
    policies = _acting_policies(_stack(agent), sharding)
    # one seed, one episode slot: axes (seed, slot, ...)
    state = {"key_data": np.asarray(jr.key_data(key))[None, None]}

    def rollout():  # the training loop's own per-chunk helper (evaluation episodes)
        chunks, state["key_data"] = _evaluation_chunks(
            policies, obs[None, None], state["key_data"], sharding
        )
        return chunks[0, 0]

    def run_compiled():
        return jax.block_until_ready(compiled(arrays, device_obs, key))

    return {"act": act, "rollout": rollout, "compiled": run_compiled}, compile_s


def time_calls(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(name: str, size: str, options) -> dict:
    result: dict = {"agent": name, "config": size}
    stage = "build"
    try:
        config = agent_config(name, size)
        result["config_repr"] = repr(config)
        agent = agents.make_agent(name, OBS_DIM, CHUNK_DIM, jr.key(0), config)
        obs = np.asarray(jr.normal(jr.key(1), (OBS_DIM,)), dtype=np.float32)
        key = jr.key(2)

        stage = "first act"
        start = time.perf_counter()
        action = np.asarray(agent.act(obs, key))
        result["first_act_s"] = round(time.perf_counter() - start, 3)
        if action.shape != (CHUNK_DIM,) or not np.all(np.abs(action) <= 1.0):
            raise ValueError(f"act returned shape {action.shape}, max |a| {np.abs(action).max()}")

        stage = "compile"
        variants, result["compile_s"] = make_variants(agent, obs, key)
        log(f"[{name}/{size}] first act {result['first_act_s']:.2f}s, " + str(result["compile_s"]))

        stage = "flops"
        arrays, static = eqx.partition(agent, eqx.is_array)
        flops = count_matmul_flops(
            lambda arrays, obs, key: eqx.combine(arrays, static).act(obs, key), arrays, obs, key
        )

        stage = "run"
        estimate = min(min(time_calls(fn, 1) for _ in range(3)) for fn in variants.values())
        calls = max(options.min_calls, math.ceil(options.block_s / max(estimate, 1e-7)))
        for fn in variants.values():  # warm-up
            time_calls(fn, calls)
        EVENTS.update(dict.fromkeys(EVENTS, 0))
        samples = {variant: [] for variant in VARIANTS}
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for rep in range(options.reps):
            shift = rep % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                samples[variant].append(1e6 * time_calls(variants[variant], calls))
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    except Exception as error:  # report and go on to the next agent
        log(f"[{name}/{size}] FAILED at {stage}: {type(error).__name__}: {error}")
        log("".join(traceback.format_exception(error)[-3:]))
        result.update(status="error", stage=stage, error=f"{type(error).__name__}: {error}")
        return result

    latency = {variant: statistics.median(values) for variant, values in samples.items()}
    log(
        f"[{name}/{size}] "
        + ", ".join(f"{v} {1e6 / latency[v]:.0f}/s ({latency[v]:.1f} us)" for v in VARIANTS)
    )
    result.update(
        status="ok",
        actions_per_s=round(1e6 / latency["act"], 1),
        actions_per_s_by_variant={v: round(1e6 / latency[v], 1) for v in VARIANTS},
        latency_us={v: round(latency[v], 2) for v in VARIANTS},
        latency_us_iqr={
            v: [round(float(q), 2) for q in np.percentile(samples[v], [25, 75])] for v in VARIANTS
        },
        policy_matmul_flops=flops.flops,
        policy_matmul_flops_bounded=flops.bounded,
        compiles_during_timing=EVENTS[COMPILE_EVENT],
        traces_during_timing=EVENTS[TRACE_EVENT],
        cpu_utilisation=round(cpu / wall, 3),
        reps=options.reps,
        calls_per_rep=calls,
    )
    return result


def main() -> None:
    names = agents.available_agents()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["paper", "small"])
    parser.add_argument("--agents", nargs="+", choices=names, default=list(names))
    parser.add_argument(
        "--all-cores", action="store_true", help="do not pin the process to one core"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (30; --quick: 5)")
    options = parser.parse_args()
    reps = options.reps
    if options.quick:
        options.reps, options.min_calls, options.block_s = 5, 20, 0.02
    else:
        options.reps, options.min_calls, options.block_s = 30, 20, 0.1
    if reps is not None:
        if reps < 1:
            parser.error("--reps must be >= 1")
        options.reps = reps

    jax.monitoring.register_event_duration_secs_listener(_count_event)
    results = []
    for size in options.configs:
        for name in options.agents:
            log(f"[{name}/{size}] running")
            results.append(measure(name, size, options))
            jax.clear_caches()

    device = jax.devices()[0]
    target_results = {
        r["agent"]: {"value": r["actions_per_s"], "meets": bool(r["actions_per_s"] > TARGET["min"])}
        for r in results
        if r["config"] == TARGET["config"]
        and r["agent"] in TARGET["agents"]
        and r["status"] == "ok"
    }
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    report = {
        "benchmark": "action_latency",
        "mode": "quick" if options.quick else "full",
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "equinox": eqx.__version__,
            "interpolant_rl": ir.__version__,
        },
        "device": {
            "platform": device.platform,
            "device_kind": device.device_kind,
            "num_devices": jax.device_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "cpu_count": os.cpu_count(),
        "single_core": {
            "pinned": PINNED_CORE is not None,
            "cpu_affinity": affinity,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "method": "os.sched_setaffinity to one core and --xla_cpu_multi_thread_eigen=false, "
            "both before importing jax",
        },
        "config": {
            "obs_dim": OBS_DIM,
            "chunk_dim": CHUNK_DIM,
            "horizon": HORIZON,
            "observation": "one unbatched observation (obs_dim,), float32",
            "sizes": {size: CONFIGS[size] for size in options.configs},
            "timing": {
                "reps": options.reps,
                "min_calls_per_rep": options.min_calls,
                "seconds_per_rep": options.block_s,
                "statistic": "median over interleaved repetitions (order rotated) of the mean "
                "latency of a block of blocking calls",
            },
        },
        "targets": [{**TARGET, "applies": PINNED_CORE is not None, "results": target_results}],
        "results": results,
        "errors": [r["agent"] + "/" + r["config"] for r in results if r["status"] != "ok"],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
