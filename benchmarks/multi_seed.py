r"""Throughput of N seeds trained as one vmapped program against N single-seed runs one after
another.

Run as `python benchmarks/multi_seed.py [--quick] [--agents qam fql] [--seeds 1 2 4 8]
[--updates-per-call 10]`. One JSON object goes to stdout; progress goes to stderr.

What is measured, in one process, for each agent (default `qam` and `fql`) at a small size
(`resize(default_config(name), width=256, depth=2, num_critics=2)`, so 2 x 256 networks and
K = 2 critics; `--size paper`: 4 x 512 and K = 10, `tiny`: 1 x 32, as in `train_step.py`), on OGBench cube-double's shapes (observation dimension 37, chunks of 5
five-dimensional actions flattened to 25, `override(config, horizon=5)`), batch 256, every
other hyperparameter at the agent's default, and for each N of `--seeds`:

- `vmapped`: the program `interpolant_rl.train.train_seeds` runs for an offline
  block, `updates_per_call` updates of N stacked agents (`make_agents(name, ..., range(N))`),
  each seed sampling its own batches of chunks from the same dataset (a synthetic table of
  10 000 transitions in episodes of 200 steps); the seed axis sharded by `seed_sharding` over
  the largest number of devices that divides N (one on a one-device machine);
- `sequential`: the same work as N single-seed runs: the program
  `interpolant_rl.train.train` runs for an offline block, called once per seed on that
  seed's agent, one seed after another, on the default device.

Both programs are the library's own (`interpolant_rl.train._loop._offline_calls`, which for
N = 1 runs the single-seed program rather than a vmap over one seed, and the single-seed
`interpolant_rl.train._loop._offline_call`), wrapped in `jax.jit` with every array of the
agents as an *argument*, traced and lowered (`compile_s.lower`) and compiled
(`compile_s.compile`) separately, and each call is blocked on, as the training loops block on
each call's metrics. The new agents of a call are the next call's inputs. The sequential
program is compiled once and reused for all N seeds; N separate processes would pay
`compile_s` N times (`compile_s_if_separate_processes`).

Timing: one warm-up call of each, then (full mode) 7 repetitions, `--quick` 2; a repetition
times one vmapped call and the N sequential calls, in an order that alternates between
repetitions to cancel drift from other processes. `ms_per_block` is the median over
repetitions (one vmapped call, or the N sequential calls), and `updates_per_s` is
N x `updates_per_call` / that time: updates summed over seeds. `speedup` = vmapped /
sequential `updates_per_s`. `--quick` also uses 2 updates per call.

Numbers taken on a machine shared with other processes are not meaningful; vmapping pays off
where one seed leaves the device underused (small networks on a GPU), less on a CPU whose
cores one seed's matmuls already fill.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from train_step import CONFIGS

import interpolant_rl as ir
from interpolant_rl import agents, train
from interpolant_rl.data import Transitions
from interpolant_rl.train._loop import _offline_call, _offline_calls


# OGBench cube-double: observation_space.shape == (37,), action_space.shape == (5,) (ogbench 1.2.2)
OBS_DIM = 37
ACTION_DIM = 5
HORIZON = 5
CHUNK_DIM = HORIZON * ACTION_DIM
BATCH = 256
DISCOUNT = 0.99
SIZES = {size: CONFIGS[size] for size in ("small", "paper", "tiny")}
SIZE = dict(SIZES["small"])  # --size replaces it
DATASET_SIZE = 10_000
EPISODE_LENGTH = 200


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def agent_config(name: str):
    return agents.override(agents.resize(agents.default_config(name), **SIZE), horizon=HORIZON)


def synthetic_dataset() -> Transitions:
    rng = np.random.default_rng(0)
    ends = np.zeros(DATASET_SIZE, np.float32)
    ends[EPISODE_LENGTH - 1 :: EPISODE_LENGTH] = 1.0
    return Transitions(
        observations=rng.normal(size=(DATASET_SIZE, OBS_DIM)),
        actions=rng.uniform(-1, 1, size=(DATASET_SIZE, ACTION_DIM)),
        rewards=rng.normal(size=DATASET_SIZE),
        masks=np.ones(DATASET_SIZE),
        next_observations=rng.normal(size=(DATASET_SIZE, OBS_DIM)),
        episode_ends=ends,
    )


def devices_for(num_seeds: int) -> list:
    count = max(d for d in range(1, jax.device_count() + 1) if num_seeds % d == 0)
    return jax.devices()[:count]


def compiled(fn, *args) -> tuple:
    """`(compiled, lower_s, compile_s)` of `jax.jit(fn)` at `args`."""
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    program = lowered.compile()
    return program, lower_s, time.perf_counter() - start


def measure(name: str, num_seeds: int, dataset, updates: int, reps: int) -> dict:
    config = agent_config(name)
    stacked = train.make_agents(name, OBS_DIM, CHUNK_DIM, range(num_seeds), config)
    devices = devices_for(num_seeds)
    sharding = train.seed_sharding(num_seeds, devices)
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    arrays, static = eqx.partition(stacked, eqx.is_array)

    # ---- vmapped: one call for all seeds
    def vmapped(arrays, transitions, seeds, steps):
        new, metrics = _offline_calls(
            eqx.combine(arrays, static),
            transitions,
            seeds,
            steps,
            updates,
            BATCH,
            HORIZON,
            DISCOUNT,
            sharding,
        )
        return eqx.filter(new, eqx.is_array), metrics

    v_arrays = jax.device_put(arrays, sharding)
    v_data = jax.device_put(dataset, replicated)
    seeds = jax.device_put(jnp.arange(num_seeds, dtype=jnp.int32), sharding)
    steps = jax.device_put(jnp.zeros(num_seeds, jnp.int32), sharding)
    v_program, v_lower, v_compile = compiled(vmapped, v_arrays, v_data, seeds, steps)

    # ---- sequential: the single-seed program, once per seed
    def single(arrays, transitions, key):
        new, metrics = _offline_call(
            eqx.combine(arrays, static), transitions, key, updates, BATCH, HORIZON, DISCOUNT
        )
        return eqx.filter(new, eqx.is_array), metrics

    s_arrays = [jax.tree.map(lambda x, s=s: x[s], arrays) for s in range(num_seeds)]
    s_keys = [jr.key(s) for s in range(num_seeds)]
    s_program, s_lower, s_compile = compiled(single, s_arrays[0], dataset, s_keys[0])

    def run_vmapped():
        nonlocal v_arrays
        start = time.perf_counter()
        v_arrays, metrics = v_program(v_arrays, v_data, seeds, steps)
        jax.block_until_ready(metrics)
        return time.perf_counter() - start

    def run_sequential():
        start = time.perf_counter()
        for s in range(num_seeds):
            s_arrays[s], metrics = s_program(s_arrays[s], dataset, s_keys[s])
            jax.block_until_ready(metrics)
        return time.perf_counter() - start

    run_vmapped(), run_sequential()  # warm-up
    times = {"vmapped": [], "sequential": []}
    for rep in range(reps):
        order = [("vmapped", run_vmapped), ("sequential", run_sequential)]
        for label, run in order if rep % 2 == 0 else order[::-1]:
            times[label].append(run())
    result = dict(agent=name, num_seeds=num_seeds, devices_used=len(devices))
    for label, lower_s, compile_s in (
        ("vmapped", v_lower, v_compile),
        ("sequential", s_lower, s_compile),
    ):
        seconds = statistics.median(times[label])
        result[label] = dict(
            compile_s=dict(lower=lower_s, compile=compile_s),
            ms_per_block=1e3 * seconds,
            updates_per_s=num_seeds * updates / seconds,
            ms_per_block_all=[1e3 * t for t in times[label]],
        )
    result["sequential"]["compile_s_if_separate_processes"] = num_seeds * (s_lower + s_compile)
    result["speedup"] = result["vmapped"]["updates_per_s"] / result["sequential"]["updates_per_s"]
    log(
        f"[{name} N={num_seeds}] vmapped {result['vmapped']['updates_per_s']:.1f} updates/s, "
        f"sequential {result['sequential']['updates_per_s']:.1f} updates/s "
        f"(x{result['speedup']:.2f}); compile {v_lower + v_compile:.1f} s vs "
        f"{s_lower + s_compile:.1f} s"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 updates per call, 2 repetitions")
    parser.add_argument("--agents", nargs="+", default=["qam", "fql"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--updates-per-call", type=int, default=None)
    parser.add_argument(
        "--size", choices=list(SIZES), default="small", help="network sizes (train_step.py's)"
    )
    options = parser.parse_args()
    SIZE.clear()
    SIZE.update(SIZES[options.size])
    updates = options.updates_per_call or (2 if options.quick else 10)
    reps = 2 if options.quick else 7
    dataset = synthetic_dataset()
    results = []
    for name in options.agents:
        for num_seeds in options.seeds:
            try:
                results.append(measure(name, num_seeds, dataset, updates, reps))
            except Exception as error:  # noqa: BLE001 - reported, the run goes on
                log(f"[{name} N={num_seeds}] error: {type(error).__name__}: {error}")
                results.append(
                    dict(agent=name, num_seeds=num_seeds, status="error", error=repr(error))
                )
    device = jax.devices()[0]
    report = {
        "benchmark": "multi_seed",
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
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "config": {
            "obs_dim": OBS_DIM,
            "action_dim": ACTION_DIM,
            "horizon": HORIZON,
            "chunk_dim": CHUNK_DIM,
            "batch_size": BATCH,
            "networks": SIZE,
            "dataset": {"transitions": DATASET_SIZE, "episode_length": EPISODE_LENGTH},
            "updates_per_call": updates,
            "repetitions": reps,
            "statistic": "median over repetitions; vmapped and sequential alternate in order",
        },
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
