"""Learning curves from run directories: mean and 95% confidence interval over seeds.

    python experiments/plot.py runs/qam-*-seed* runs/fql-*-seed* --out curves.png [--metric success]

A `--num-seeds` run directory counts as its `seed{k}` directories, finished or not. Runs are
grouped by their agent and environment (from each `summary.json`, or the checkpoint header for
unfinished runs); each group is one curve of `eval.jsonl`'s metric against the step,
averaged over the group's seeds with a Student-t 95% interval (for `success`, shown within
[0, 1]). Needs matplotlib
(`pip install -e ".[plot]"`).
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
    return f"{config['agent']} · {config['env']}"


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    parser.add_argument("--metric", default="success")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: error: needs matplotlib (pip install -e '.[plot]')", file=sys.stderr)
        return 2
    groups = defaultdict(list)
    try:
        for run in (seed for given in args.runs for seed in _seed_dirs(given)):
            groups[_label(run)].append(_curve(run, args.metric))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
