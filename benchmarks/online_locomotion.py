"""The online agents on Gym MuJoCo locomotion: RLPD, SOM and NC-LQL on Hopper-v5, a short run.

    python benchmarks/online_locomotion.py                          # the committed budget (~40 min on 2 shared cores)
    python benchmarks/online_locomotion.py --agents rlpd nc_lql --online-steps 10000
    python benchmarks/online_locomotion.py --report                 # only rewrite the table

Each agent is one program of `experiments/run.py --env Hopper-v5 --num-seeds 3` (the three seeds
vmapped together), online only, at the CPU preset (2 x 256 networks, two critics, batch 256, UTD
1, the agent's random-action steps first: 1000 for all three) for `--online-steps` environment
steps, evaluated every `--eval-interval` steps on `--eval-episodes` episodes per seed (D4RL's
normalised score of Hopper and the raw return).

Every finished program's per-seed `summary.json` is copied to `{results}/runs/`, with the
program's wall time as this script measured it (summed over sessions), and a program whose
copies exist with the same settings is not run again; a program stopped part-way is continued
from its checkpoint (`run.py --resume`). After each program the table — per agent the
normalised score and the return at every evaluation, mean and 95 % t-interval over the seeds,
the wall time and environment steps per second, and the exact commands — is rewritten to
`{results}.md` and `.json` from every finished agent at this budget.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.ogbench_reduced import interval  # the same mean and 95 % t-interval


ROOT = Path(__file__).resolve().parents[1]
ENV = "Hopper-v5"
AGENTS = ("rlpd", "som", "nc_lql")
CONFIGURATION = (
    "experiments/run.py --preset cpu, online only: 2x256 networks, two critics, batch 256, "
    "UTD 1, Adam 3e-4, the first 1000 steps random actions; agents' defaults otherwise"
)
TIMING = "benchmark_time.json"  # in a program's run directory: its sessions' wall times


def settings(args, agent: str, seed: int) -> dict:
    """The fields of a run's recorded configuration that make it this benchmark's run."""
    return dict(
        agent=agent,
        env=ENV,
        seed=seed,
        preset="cpu",
        offline_steps=0,
        online_steps=args.online_steps,
        eval_interval=args.eval_interval,
        eval_episodes=args.eval_episodes,
    )


def _copy_path(args, agent: str, seed: int) -> Path:
    return args.results / "runs" / f"{agent}-{args.online_steps}steps-seed{seed}.json"


def finished(args, agent: str) -> list[dict] | None:
    """The kept summaries of every seed of `agent` at this budget, or None if any is missing."""
    summaries = []
    for seed in args.seeds:
        path = _copy_path(args, agent, seed)
        if not path.exists():
            return None
        summary = json.loads(path.read_text())
        run = summary.get("config", {})
        if not all(run.get(k) == v for k, v in settings(args, agent, seed).items()):
            return None
        summaries.append(summary)
    return summaries


def command(args, agent: str, out_dir: Path) -> list[str]:
    """The run.py arguments of `agent`'s program (without the interpreter, --resume/--overwrite)."""
    return [
        "experiments/run.py",
        "--env", ENV,
        "--agent", agent,
        "--seed", str(args.seeds[0]),
        "--num-seeds", str(len(args.seeds)),
        "--online-steps", str(args.online_steps),
        "--eval-interval", str(args.eval_interval),
        "--eval-episodes", str(args.eval_episodes),
        "--out-dir", str(out_dir),
    ]  # fmt: skip


def run_agent(args, agent: str) -> list[dict]:
    """The per-seed summaries of `agent`, running its program unless it has finished."""
    done = finished(args, agent)
    if done is not None:
        return done
    if args.seeds != list(range(args.seeds[0], args.seeds[0] + len(args.seeds))):
        raise SystemExit(
            "online_locomotion: the seeds train as one program: give consecutive --seeds"
        )
    out_dir = (
        args.runs_dir / f"{agent}-{args.online_steps}steps-seeds{args.seeds[0]}-{args.seeds[-1]}"
    )
    argv = [
        sys.executable,
        str(ROOT / command(args, agent, out_dir)[0]),
        *command(args, agent, out_dir)[1:],
    ]
    timing = out_dir / TIMING
    sessions = json.loads(timing.read_text())["sessions_s"] if timing.exists() else []
    if (out_dir / "checkpoint.eqx").exists():
        argv.append("--resume")  # a program stopped part-way continues where it was
    elif out_dir.exists():
        argv.append("--overwrite")  # one stopped before its first checkpoint starts again
        sessions = []
    print(f"[online_locomotion] {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        subprocess.run(argv, check=True, cwd=ROOT)
    finally:  # an interrupted session's time counts too, where its checkpoint is resumed
        if out_dir.exists():
            sessions.append(time.perf_counter() - start)
            timing.write_text(json.dumps(dict(sessions_s=sessions)) + "\n")
    kept = []
    for seed in args.seeds:
        summary = json.loads((out_dir / f"seed{seed}" / "summary.json").read_text())
        summary["online_locomotion"] = dict(
            program_wall_time_s=float(sum(sessions)),
            sessions=len(sessions),
            command=" ".join(command(args, agent, out_dir)),
        )
        copy = _copy_path(args, agent, seed)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(json.dumps(summary, indent=2) + "\n")
        kept.append(summary)
    return kept


def _cell(entry: dict, digits: int) -> str:
    if math.isnan(entry["ci95"]):
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} ± {entry['ci95']:.{digits}f}"


def agent_row(runs: list[dict]) -> dict:
    """One agent's statistics over its seeds' summaries."""
    by_step = [{int(r["step"]): r for r in s["evaluations"]} for s in runs]
    steps = sorted(set.intersection(*(set(c) for c in by_step)))
    finals = [s["final"] for s in runs]
    program = runs[0].get("online_locomotion", {})
    wall = float(program.get("program_wall_time_s", runs[0]["wall_time_s"]))
    total = int(runs[0]["config"]["online_steps"])
    updates = total - int(runs[0]["config"].get("random_action_steps") or 0)
    return dict(
        normalized_score={
            str(k): interval([c[k]["normalized_score"] for c in by_step]) for k in steps
        },
        episode_return={str(k): interval([c[k]["episode_return"] for c in by_step]) for k in steps},
        final_step=int(min(f["step"] for f in finals)),
        final_normalized_score=interval([f["normalized_score"] for f in finals]),
        final_episode_return=interval([f["episode_return"] for f in finals]),
        wall_time_s=wall,
        sessions=int(program.get("sessions", 1)),
        steps_per_s=total / wall,  # environment steps of the program (each one per seed) per second
        seed_steps_per_s=total * len(runs) / wall,
        # an upper bound on one update's cost (all seeds): everything else is in the wall time too
        s_per_update=wall / updates if updates > 0 else math.nan,
        command=program.get("command"),
        agent_config=runs[0]["agent_config"],
    )


def _curve_table(rows: dict, key: str, final: str, digits: int) -> list[str]:
    steps = sorted({int(k) for row in rows.values() for k in row[key]})
    last = {row["final_step"] for row in rows.values()}
    head = "| agent |" + "".join(f" at {k} |" for k in steps) + " end |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for agent, row in rows.items():
        cells = "".join(
            f" {_cell(row[key][str(k)], digits)} |" if str(k) in row[key] else " |" for k in steps
        )
        end = _cell(row[final], digits) + (f" (at {row['final_step']})" if len(last) > 1 else "")
        lines.append(f"| {agent} |{cells} {end} |")
    return lines


def markdown(result: dict) -> str:
    rows = result["agents"]
    seeds = result["seeds"]
    lines = [
        "# Online agents on Hopper-v5, a short run",
        "",
        f"`{ENV}` (gymnasium MuJoCo), online only, {result['online_steps']} environment steps "
        f"per seed, evaluations every {result['eval_interval']} steps on "
        f"{result['eval_episodes']} episodes per seed; {CONFIGURATION}; seeds {seeds} of an "
        f"agent trained as one program (`--num-seeds {len(seeds)}`); {result['machine']}. "
        "Mean ± 95 % t-interval over the seeds.",
        "",
        "D4RL normalised score (100 × (return − random) / (expert − random), Hopper's D4RL "
        "reference returns):",
        "",
        *_curve_table(rows, "normalized_score", "final_normalized_score", 1),
        "",
        "Raw return (undiscounted, per episode):",
        "",
        *_curve_table(rows, "episode_return", "final_episode_return", 0),
        "",
        "Cost: the program's wall time (three seeds vmapped, compilation, random-action steps and "
        "evaluations included; the 2 cores shared with other work), and environment steps per "
        "second of the program (per seed) and over the seeds; the wall time over the updates (the "
        "steps after the random ones) bounds one update's cost (all seeds) from above:",
        "",
        "| agent | wall time (min) | steps/s | seed-steps/s | wall time / updates (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {a} | {r['wall_time_s'] / 60:.1f} | {r['steps_per_s']:.2f} | "
        f"{r['seed_steps_per_s']:.2f} | {r['s_per_update']:.3f} |"
        for a, r in rows.items()
    ]
    lines += ["", "Commands (`python` = the project's environment):", "", "```bash"]
    lines += [f"python {r['command']}" for r in rows.values() if r["command"]]
    return "\n".join(lines + ["```", ""])


def report(args) -> dict:
    """Rewrite `{results}.md/.json` from every agent finished at this budget."""
    result = dict(
        env=ENV,
        configuration=CONFIGURATION,
        machine=f"{os.cpu_count()} CPU cores, no GPU",
        online_steps=args.online_steps,
        eval_interval=args.eval_interval,
        eval_episodes=args.eval_episodes,
        seeds=args.seeds,
        agents={},
    )
    for agent in args.agents:
        runs = finished(args, agent)
        if runs is not None:
            result["agents"][agent] = agent_row(runs)
            result.setdefault("versions", runs[0].get("versions"))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(markdown(result))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--online-steps", type=int, default=2500)
    parser.add_argument("--eval-interval", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--report", action="store_true", help="only rewrite the table from kept runs"
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("/tmp/online_locomotion_runs"))
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "online_locomotion"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.report:
        for agent in args.agents:
            run_agent(args, agent)
            report(args)
    result = report(args)
    print(json.dumps(dict(result, benchmark_wall_time_s=time.perf_counter() - start), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
