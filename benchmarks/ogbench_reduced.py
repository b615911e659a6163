"""QAM, FQL and ReBRAC on OGBench cube-double-play task 2 at a CPU-sized configuration.

    python benchmarks/ogbench_reduced.py                      # 3 agents x 3 seeds (hours on 2 cores)
    python benchmarks/ogbench_reduced.py --agents qam --seeds 0 --offline-steps 2000

Each (agent, seed) is one `experiments/run.py` run on the full-size generated dataset
(1000 episodes, generated once into the data directory), with the run's CPU preset sizes
(2x256 MLPs, K = 2 critics, chunk 5, batch 256) and a reduced schedule: `--offline-steps`
offline updates, an evaluation, then `--online-steps` online environment steps (UTD 1) and a
final evaluation. A run whose `summary.json` already exists with the same settings is not run
again, nor one whose summary was kept in `{results}/runs/` (every finished run's summary is
copied there), so the benchmark can be stopped and continued. The table — success after offline
training and after the online phase, mean and 95 % t-interval over seeds — is written to
`{results}.md` and `{results}.json`.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats


ROOT = Path(__file__).resolve().parents[1]
ENV = "cube-double-play-singletask-task2-v0"
DATASET_EPISODES = 1000
# the QAM paper's Table 1, offline success (%) on cube-double averaged over its 5 tasks at
# 1M steps, 4x512 networks, K = 10 (a GPU configuration): the gap we report against
PAPER_CUBE_DOUBLE = {"qam": 57, "fql": 30, "rebrac": 8}


def run_settings(args, agent: str, seed: int) -> dict:
    return dict(
        agent=agent,
        env=args.env,
        seed=seed,
        offline_steps=args.offline_steps,
        online_steps=args.online_steps,
        eval_episodes=args.eval_episodes,
        dataset_episodes=DATASET_EPISODES,
    )


def _matches(summary: dict, settings: dict) -> bool:
    run = summary.get("config", {})
    return all(run.get(k) == v for k, v in settings.items())


def run_one(args, agent: str, seed: int) -> dict:
    """The summary of one run, running it unless a finished one with these settings exists."""
    settings = run_settings(args, agent, seed)
    out_dir = args.runs_dir / f"{agent}-seed{seed}"
    summary_path = out_dir / "summary.json"
    # a finished run: its summary in the run directory, or the copy kept with the results
    for done in (summary_path, args.results / "runs" / f"{agent}-seed{seed}.json"):
        if done.exists():
            summary = json.loads(done.read_text())
            if _matches(summary, settings):
                return summary
    command = [
        sys.executable,
        str(ROOT / "experiments" / "run.py"),
        "--agent", agent,
        "--env", args.env,
        "--seed", str(seed),
        "--out-dir", str(out_dir),
        "--dataset-episodes", str(DATASET_EPISODES),
        "--offline-steps", str(args.offline_steps),
        "--online-steps", str(args.online_steps),
        # evaluations exactly at the end of the offline phase and at the end of the run
        "--eval-interval", str(max(args.offline_steps, args.online_steps, 1)),
        "--eval-episodes", str(args.eval_episodes),
        "--workers", str(args.workers),
    ]  # fmt: skip
    if args.data_dir is not None:
        command += ["--data-dir", str(args.data_dir)]
    print(f"[ogbench_reduced] {agent} seed {seed}: {' '.join(command[2:])}", file=sys.stderr)
    subprocess.run(command, check=True)
    return json.loads(summary_path.read_text())


def success_at(summary: dict, step: int) -> float:
    for row in summary["evaluations"]:
        if row["step"] == step:
            return float(row["success"])
    raise ValueError(f"{summary['config']['out_dir']}: no evaluation at step {step}")


def interval(values: list[float]) -> dict:
    """Mean and the half-width of the 95 % Student-t interval over seeds."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = (
        float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    )
    return dict(mean=float(values.mean()), ci95=half, n=n, values=values.tolist())


def _cell(entry: dict) -> str:
    if math.isnan(entry["ci95"]):
        return f"{100 * entry['mean']:.0f}"
    return f"{100 * entry['mean']:.0f} ± {100 * entry['ci95']:.0f}"


def table(args, summaries: dict[str, list[dict]]) -> tuple[dict, str]:
    offline, total = args.offline_steps, args.offline_steps + args.online_steps
    rows = {}
    for agent, runs in summaries.items():
        rows[agent] = dict(
            offline_success=interval([success_at(s, offline) for s in runs]),
            online_success=interval([success_at(s, total) for s in runs]),
            wall_time_min=float(np.mean([s["wall_time_s"] for s in runs]) / 60),
            paper_offline_success_cube_double=PAPER_CUBE_DOUBLE.get(agent),
        )
    versions = next(iter(summaries.values()))[0]["versions"] if summaries else {}
    result = dict(
        env=args.env,
        dataset_episodes=DATASET_EPISODES,
        offline_steps=offline,
        online_steps=args.online_steps,
        eval_episodes=args.eval_episodes,
        seeds=args.seeds,
        configuration="experiments/run.py --preset cpu: 2x256 GELU MLPs, K = 2 critics "
        "(rho 0.5), chunk 5, batch 256, Adam 3e-4, 10 flow steps; agents' paper defaults otherwise",
        machine=f"{os.cpu_count()} CPU cores, no GPU",
        versions=versions,
        agents=rows,
    )
    lines = [
        f"# OGBench {args.env}, CPU-sized configuration",
        "",
        f"{DATASET_EPISODES}-episode generated dataset; {offline} offline updates then "
        f"{args.online_steps} online environment steps (UTD 1); success % over "
        f"{args.eval_episodes} evaluation episodes, mean ± 95 % t-interval over seeds "
        f"{args.seeds}; {result['configuration']}; {result['machine']}.",
        "",
        "| agent | success after offline | after online | wall time per run (min) "
        "| paper, cube-double offline (5-task mean, 1M steps, GPU) |",
        "|---|---|---|---|---|",
    ]
    for agent, row in rows.items():
        paper = row["paper_offline_success_cube_double"]
        lines.append(
            f"| {agent} | {_cell(row['offline_success'])} | {_cell(row['online_success'])} "
            f"| {row['wall_time_min']:.1f} | {'' if paper is None else paper} |"
        )
    return result, "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=["qam", "fql", "rebrac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--offline-steps", type=int, default=10_000)
    parser.add_argument("--online-steps", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="dataset generation processes")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/ogbench_reduced"))
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "ogbench_reduced"
    )
    args = parser.parse_args(argv)
    for name in ("offline_steps", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.online_steps < 0:
        parser.error("--online-steps must be >= 0")
    start = time.perf_counter()
    summaries: dict[str, list[dict]] = {}
    copies = args.results / "runs"
    copies.mkdir(parents=True, exist_ok=True)
    for agent in args.agents:
        for seed in args.seeds:
            summary = run_one(args, agent, seed)
            summaries.setdefault(agent, []).append(summary)
            (copies / f"{agent}-seed{seed}.json").write_text(json.dumps(summary, indent=2) + "\n")
    result, markdown = table(args, summaries)
    result["benchmark_wall_time_s"] = time.perf_counter() - start
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(markdown)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
