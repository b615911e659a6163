"""Run every agent on the built-in exact-tilt problems over several seeds; write a Markdown and a
JSON table, and print the JSON.

    python benchmarks/toy_tilt_table.py [--agents qam fql ...] [--problems bimodal ...]
        [--seeds 3] [--steps 3000] [--out-dir benchmarks/results]

Each cell is `interpolant_rl.testing.exact_tilt.run_exact_tilt(agent, problem, seed, steps)` (what `experiments/toy_tilt.py` runs): the policy's sliced
2-Wasserstein distance to the exact tilt (mean ± standard deviation over seeds), next to the
behaviour flow's distance to the same tilt (what no policy improvement gives) and the behaviour
flow's own fitting error against the base distribution (the behaviour-cloning error).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from interpolant_rl import agents
from interpolant_rl.testing import exact_tilt


ROOT = Path(__file__).resolve().parents[1]


PROBLEMS = exact_tilt.BUILT_IN_PROBLEMS


def _cell(values):
    values = np.asarray(values, dtype=float)
    if np.any(np.isnan(values)):
        return f"diverged ({int(np.isnan(values).sum())}/{values.size})"
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def markdown(rows, problems, agent_names, steps, seeds):
    lines = [
        f"Sliced W2 to the exact tilt after {steps} updates, mean ± sd over {seeds} seeds "
        "(lower is better). Last rows: the behaviour flow (no improvement) and its "
        "behaviour-cloning error (its distance to the base distribution).",
        "",
        "| agent | " + " | ".join(problems) + " |",
        "|---|" + "---|" * len(problems),
    ]

    def row(label, key, agent_filter=None):
        cells = []
        for problem in problems:
            values = [
                r[key]
                for r in rows
                if r["problem_name"] == problem
                and (agent_filter is None or r["agent"] == agent_filter)
            ]
            cells.append(_cell(values) if values else "—")
        return f"| {label} | " + " | ".join(cells) + " |"

    for name in agent_names:
        lines.append(row(name, "sliced_wasserstein", name))
    lines.append(row("behaviour flow vs tilt", "base_sliced_wasserstein"))
    lines.append(row("behaviour flow vs base (BC error)", "bc_sliced_wasserstein"))
    lines += [
        "",
        "Mean error ‖E[policy] − E[tilt]‖:",
        "",
        "| agent | " + " | ".join(problems) + " |",
    ]
    lines.append("|---|" + "---|" * len(problems))
    for name in agent_names:
        lines.append(row(name, "mean_error", name))
    lines.append(row("behaviour flow", "base_mean_error"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(agents.available_agents()))
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the existing table for agents not run now (same steps and seeds "
        "required), and rewrite the table after every run so an interruption loses one run",
    )
    args = parser.parse_args(argv)
    for name in args.agents:
        if name not in agents.available_agents():
            print(
                f"toy_tilt_table.py: error: unknown agent {name!r}; available: "
                f"{', '.join(agents.available_agents())}",
                file=sys.stderr,
            )
            return 2
    if args.seeds < 1 or args.steps < 0:
        print("toy_tilt_table.py: error: --seeds must be >= 1 and --steps >= 0", file=sys.stderr)
        return 2
    rows, kept, agent_names, previous_time, notes = [], [], list(args.agents), 0.0, []
    json_path = args.out_dir / "toy_tilt_table.json"
    if args.merge and json_path.exists():
        previous = json.loads(json_path.read_text())
        if (previous["steps"], previous["seeds"]) != (args.steps, args.seeds):
            print(
                f"toy_tilt_table.py: error: --merge: {json_path} has steps {previous['steps']}, "
                f"seeds {previous['seeds']}; this run has {args.steps}, {args.seeds}",
                file=sys.stderr,
            )
            return 2
        kept = [r for r in previous["rows"] if r["agent"] not in args.agents]
        agent_names = list(dict.fromkeys([r["agent"] for r in kept] + list(args.agents)))
        previous_time = previous.get("total_wall_time_s", 0.0)
        notes = [previous["note"]] if "note" in previous else []
    start = time.perf_counter()

    def write():
        summary = dict(
            steps=args.steps,
            seeds=args.seeds,
            machine=dict(
                platform=platform.platform(),
                processor=platform.processor(),
                devices=[str(d) for d in jax.devices()],
            ),
            total_wall_time_s=previous_time + time.perf_counter() - start,
            rows=kept + [{k: v for k, v in r.items() if k != "config"} for r in rows],
        )
        if notes:
            summary["note"] = "; ".join(notes)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary, indent=2) + "\n")
        (args.out_dir / "toy_tilt_table.md").write_text(
            markdown(summary["rows"], args.problems, agent_names, args.steps, args.seeds)
        )
        return summary

    for problem in args.problems:
        for name in args.agents:
            for seed in range(args.seeds):
                try:
                    result, _ = exact_tilt.run_exact_tilt(name, problem, seed, args.steps)
                except FloatingPointError as error:  # a diverged run is a result, not a crash
                    nan = float("nan")
                    result = dict(
                        agent=name,
                        problem=problem,
                        seed=seed,
                        error=str(error),
                        sliced_wasserstein=nan,
                        base_sliced_wasserstein=nan,
                        bc_sliced_wasserstein=nan,
                        mean_error=nan,
                        base_mean_error=nan,
                        wall_time_s=nan,
                    )
                result["problem_name"] = Path(result["problem"]).stem
                rows.append(result)
                print(
                    f"{name:9s} {result['problem_name']:16s} seed {seed}: SW {result['sliced_wasserstein']:.3f} "
                    f"(behaviour {result['base_sliced_wasserstein']:.3f}) {result['wall_time_s']:.0f} s",
                    file=sys.stderr,
                )
                if args.merge:
                    write()
    print(json.dumps(write()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
