r"""Wall time of one evaluation: episodes one at a time against side by side (one batched act
call per chunk for all of them).

Run as `python benchmarks/evaluation.py [--agents qam fql] [--size small] [--episodes 10]
[--repeats 3]`. One JSON object goes to stdout; progress goes to stderr.

What is measured: `interpolant_rl.train.evaluate(agent, envs, episodes, horizon=5, seed=0)`
with P environments made beforehand (`train.evaluation_envs`, as the training loop makes them once
per run), for P = 1 (the loop's evaluation before episodes ran side by side: one act
call per chunk per episode) and P = `episodes` (all at once: one call per chunk for all), on
OGBench's `cube-single-play-v0` environment (the main job's; 200-step episodes, chunks of 5, so
40 chunks an episode), with a freshly initialised agent of `benchmarks/train_step.py`'s sizes
(acting costs the same trained or not; an untrained policy rarely ends an episode early, so
every episode runs its 200 steps). Each P is timed `--repeats` times after one warm-up
evaluation (compiles), alternating; the median is reported, with the act calls made. The
results of the two must agree (success exactly, returns to float rounding): checked and
reported.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.random as jr
from train_step import CONFIGS

from interpolant_rl import agents, train


ENV = "cube-single-play-v0"
HORIZON = 5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(name: str, size: str, episodes: int, repeats: int) -> dict:
    import ogbench

    env = ogbench.make_env_and_datasets(ENV, env_only=True)
    obs_dim = env.observation_space.shape[0]
    action_dim = env.action_space.shape[0] * HORIZON
    config = agents.override(
        agents.resize(agents.default_config(name), **CONFIGS[size]), horizon=HORIZON
    )
    agent = agents.make_agent(name, obs_dim, action_dim, jr.key(0), config)
    # the environments are made once, as the training loop makes them once per run
    slots = train.evaluation_envs(env, episodes)
    widths = {"one_at_a_time": slots[:1], "side_by_side": slots}
    results = {}
    for label, envs in widths.items():  # warm-up: compiles, and the result to compare
        results[label] = train.evaluate(agent, envs, episodes, HORIZON, 0)
    seconds = {label: [] for label in widths}
    for _ in range(repeats):
        for label, envs in widths.items():
            start = time.perf_counter()
            train.evaluate(agent, envs, episodes, HORIZON, 0)
            seconds[label].append(time.perf_counter() - start)
    median = {label: statistics.median(values) for label, values in seconds.items()}
    log(f"[{name}/{size}] " + ", ".join(f"{k} {v:.2f}s" for k, v in median.items()))
    one, side = results["one_at_a_time"], results["side_by_side"]
    return dict(
        agent=name,
        size=size,
        seconds=median,
        seconds_all=seconds,
        speedup=round(median["one_at_a_time"] / median["side_by_side"], 3),
        act_calls={"one_at_a_time": episodes * 40, "side_by_side": 40},
        results=results,
        same_success=one["success"] == side["success"],
        return_relative_difference=abs(one["episode_return"] - side["episode_return"])
        / max(abs(one["episode_return"]), 1e-12),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["qam", "fql"])
    parser.add_argument("--size", choices=list(CONFIGS), default="small")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    if options.episodes < 1 or options.repeats < 1:
        parser.error("--episodes and --repeats must be >= 1")
    results = [
        measure(name, options.size, options.episodes, options.repeats) for name in options.agents
    ]
    device = jax.devices()[0]
    report = dict(
        benchmark="evaluation",
        env=ENV,
        episodes=options.episodes,
        horizon=HORIZON,
        size=CONFIGS[options.size],
        device=dict(platform=device.platform, device_kind=device.device_kind),
        cpu_count=os.cpu_count(),
        load_average=os.getloadavg() if hasattr(os, "getloadavg") else None,
        jax=jax.__version__,
        python=platform.python_version(),
        results=results,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
