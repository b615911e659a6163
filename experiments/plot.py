"""Learning curves from run directories: mean and 95% confidence interval over seeds.

    python experiments/plot.py runs/qam-*-seed* runs/fql-*-seed* --out curves.png [--metric success]
    python experiments/plot.py runs/*/ --out figures/curves.png --aggregate   # + IQM table, profiles

A `--num-seeds` run directory counts as its `seed{k}` directories, finished or not. Runs are
grouped by their agent and environment (from each `summary.json`, or the checkpoint header for
unfinished runs); each group is one curve of `eval.jsonl`'s metric against the step,
averaged over the group's seeds with a Student-t 95% interval (for `success`, shown within
[0, 1]). Needs matplotlib
(`pip install -e ".[plot]"`).

`--aggregate` also reports each agent's final scores (the metric at the last evaluation of each
run) aggregated over tasks (environments) and seeds, as in Agarwal et al. (2021): the
interquartile mean and the mean with stratified bootstrap confidence intervals (`--reps`,
`--level`, `--seed`), printed as a Markdown table and written to `{out}_aggregate.md` and
`.json`, and the performance profile (the fraction of runs scoring above each threshold, with
its bootstrap band) drawn to `{out}_profile.png`. Every task of an agent needs the same number
of runs.
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _seed_dirs(run_dir: Path) -> list[Path]:
    """A `--num-seeds` run directory stands for its `seed{k}` directories; any other for itself."""
    if not (run_dir / "eval.jsonl").exists():
        seeds = sorted(d for d in run_dir.glob("seed*") if (d / "eval.jsonl").exists())
        if seeds:
            return seeds
    return [run_dir]


def _label(run_dir: Path) -> str:
    config = _config(run_dir)
    return f"{config['agent']} · {config['env']}"


def _config(run_dir: Path) -> dict:
    # finished: the run's own summary.json; unfinished: the checkpoint header, which a seed of a
    # `--num-seeds` run shares with its siblings in the parent directory
    for directory in (run_dir, run_dir.parent):
        summary = directory / "summary.json"
        if summary.exists():
            config = json.loads(summary.read_text())["config"]
            break
        checkpoint = directory / "checkpoint.eqx"
        if checkpoint.exists():
            from interpolant_rl.train import read_checkpoint_header

            config = read_checkpoint_header(checkpoint)["run"]
            break
    else:
        raise ValueError(f"{run_dir}: no summary.json or checkpoint.eqx (not a run directory?)")
    return config


def _curve(run_dir: Path, metric: str) -> dict[int, float]:
    path = run_dir / "eval.jsonl"
    if not path.exists():
        raise ValueError(f"{run_dir}: no eval.jsonl (not a run directory?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    if rows and metric not in rows[0]:
        raise ValueError(f"{path}: no metric {metric!r} (has {', '.join(rows[0])})")
    return {row["step"]: row[metric] for row in rows}


def _t95(n: int) -> float:
    table = {
        1: 0.0,
        2: 12.71,
        3: 4.30,
        4: 3.18,
        5: 2.78,
        6: 2.57,
        7: 2.45,
        8: 2.36,
        9: 2.31,
        10: 2.26,
    }
    return table.get(n, 1.96 + 2.5 / n)


def _score_matrix(agent: str, finals: dict[str, list[float]]) -> np.ndarray:
    """The `(runs, tasks)` matrix of one agent's final scores, tasks in name order."""
    tasks = sorted(finals)
    counts = {task: len(finals[task]) for task in tasks}
    if len(set(counts.values())) > 1:
        fewest, most = min(tasks, key=counts.get), max(tasks, key=counts.get)
        raise ValueError(
            f"{agent}: {counts[fewest]} runs of {fewest} but {counts[most]} of {most} "
            "(--aggregate needs as many runs of every task)"
        )
    return np.array([finals[task] for task in tasks]).T


def aggregate(finals: dict, metric: str, *, reps: int, level: float, seed: int) -> dict:
    """IQM and mean with stratified bootstrap intervals, and performance profiles, per agent,
    from `finals[agent][task]` (the final score of each run)."""
    from interpolant_rl.train import iqm, performance_profile, stratified_bootstrap_ci

    matrices = {agent: _score_matrix(agent, finals[agent]) for agent in sorted(finals)}
    if metric == "success":
        thresholds = np.linspace(0.0, 1.0, 101)
    else:
        every = np.concatenate([m.ravel() for m in matrices.values()])
        thresholds = np.linspace(every.min(), every.max(), 101)
    agents = {}
    for agent, scores in matrices.items():
        row = dict(tasks=scores.shape[1], runs=scores.shape[0])
        for name, statistic in (("iqm", iqm), ("mean", np.mean)):
            low, high = stratified_bootstrap_ci(
                scores, statistic, reps=reps, level=level, seed=seed
            )
            row[name] = float(statistic(scores))
            row[f"{name}_ci"] = [float(low), float(high)]
        low, high = stratified_bootstrap_ci(
            scores,
            lambda s: performance_profile(s, thresholds),
            reps=reps,
            level=level,
            seed=seed,
        )
        row["profile"] = performance_profile(scores, thresholds).tolist()
        row["profile_ci"] = [low.tolist(), high.tolist()]
        agents[agent] = row
    return dict(
        metric=metric,
        level=level,
        reps=reps,
        seed=seed,
        thresholds=thresholds.tolist(),
        agents=agents,
    )


def aggregate_markdown(table: dict) -> str:
    """The aggregate table as Markdown: one row per agent."""
    percent = f"{100 * table['level']:g}%"

    def cell(row, name):
        low, high = row[f"{name}_ci"]
        return f"{row[name]:.3f} [{low:.3f}, {high:.3f}]"

    lines = [
        f"Final `{table['metric']}` over tasks x seeds: interquartile mean and mean, {percent} "
        f"stratified bootstrap intervals ({table['reps']} replicates).",
        "",
        f"| agent | tasks | runs per task | IQM [{percent} CI] | mean [{percent} CI] |",
        "|---|---|---|---|---|",
    ]
    for agent, row in table["agents"].items():
        lines.append(
            f"| {agent} | {row['tasks']} | {row['runs']} | {cell(row, 'iqm')} | "
            f"{cell(row, 'mean')} |"
        )
    return "\n".join(lines) + "\n"


def _plot_profiles(plt, table: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    thresholds = table["thresholds"]
    for agent, row in table["agents"].items():
        line = ax.plot(thresholds, row["profile"], label=agent)[0]
        low, high = row["profile_ci"]
        ax.fill_between(thresholds, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(f"final {table['metric']} threshold $\\tau$")
    ax.set_ylabel("fraction of runs with score > $\\tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    parser.add_argument("--metric", default="success")
    parser.add_argument(
        "--aggregate",
        action="store_true",
        help="also the IQM/mean table with bootstrap intervals and the performance profiles",
    )
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: error: needs matplotlib (pip install -e '.[plot]')", file=sys.stderr)
        return 2
    groups = defaultdict(list)
    finals = defaultdict(lambda: defaultdict(list))  # agent -> task -> final score of each run
    try:
        for run in (seed for given in args.runs for seed in _seed_dirs(given)):
            config, curve = _config(run), _curve(run, args.metric)
            groups[_label(run)].append(curve)
            if args.aggregate:
                if not curve:
                    raise ValueError(f"{run}: no evaluations yet")
                finals[config["agent"]][config["env"]].append(curve[max(curve)])
        if args.aggregate:
            table = aggregate(finals, args.metric, reps=args.reps, level=args.level, seed=args.seed)
    except (ValueError, OSError, KeyError) as error:
        print(f"plot.py: error: {error}", file=sys.stderr)
        return 2
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curves in sorted(groups.items()):
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        mean = values.mean(axis=0)
        seeds = f"{len(curves)} seed" + ("s" if len(curves) > 1 else "")
        line = ax.plot(steps, mean, label=f"{label} ({seeds})")[0]
        if len(curves) > 1:
            half = _t95(len(curves)) * values.std(axis=0, ddof=1) / np.sqrt(len(curves))
            low, high = mean - half, mean + half
            if args.metric == "success":  # a rate: show the interval within [0, 1]
                low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(args.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    if args.aggregate:
        stem = args.out.with_suffix("")
        markdown = aggregate_markdown(table)
        print(markdown)
        Path(f"{stem}_aggregate.md").write_text(markdown)
        Path(f"{stem}_aggregate.json").write_text(json.dumps(table, indent=1) + "\n")
        _plot_profiles(plt, table, Path(f"{stem}_profile.png"))
        print(f"wrote {stem}_aggregate.md, {stem}_aggregate.json, {stem}_profile.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
