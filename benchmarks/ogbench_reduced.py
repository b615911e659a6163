"""Agents on OGBench at CPU-sized budgets: the cube-single rows that separate them, the cube-double row that does not.

    python benchmarks/ogbench_reduced.py                                  # every suite (hours on 2 cores)
    python benchmarks/ogbench_reduced.py --suites cube-single-task1 --agents qam fql
    python benchmarks/ogbench_reduced.py --report                         # only rewrite the table

Suites (each an OGBench singletask dataset, a budget and a list of agents):

- `cube-single-task1`, `cube-single-task2`: the default job's budget (`experiments/run.py
  --preset cpu`: the 100-episode generated dataset, 20 000 offline updates, evaluations every
  5000) for QAM, QAM-FQL, FQL, ReBRAC, MoMa QL and OFQL, the three seeds of an agent trained as
  one program (`run.py --num-seeds 3`).
- `cube-double`: the hard row, task 2 on the full-size 1000-episode dataset, 10 000 offline
  updates then 5000 online environment steps, QAM, FQL and ReBRAC, one program per seed.

Every finished run's per-seed `summary.json` is copied to `{results}/runs/{suite}/`, and a run
whose copy (or summary) exists with the same settings is not run again, so the benchmark can be
stopped and continued; an interrupted program is resumed from its checkpoint. A kept run whose
recorded agent configuration differs from the one `run.py` builds now (a library default
changed since; a field added since counts at its default) is trained again. `--report` still
tables it. After each
program the table — success after the offline phase (and after the online phase), mean and 95 %
t-interval over seeds, each evaluation's mean — is rewritten to `{results}.md` and `.json` from
every finished (suite, agent), so partial progress is a valid, smaller table. Its last section
aggregates the cube-single tasks: each agent's offline success over tasks x seeds, as the
interquartile mean and the mean with 95 % stratified bootstrap intervals
(`interpolant_rl.train.iqm`, `stratified_bootstrap_ci`).
"""

import argparse
import dataclasses
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
CONFIGURATION = (
    "experiments/run.py --preset cpu: 2x256 GELU MLPs, K = 2 critics (rho 0.5), chunk 5, "
    "batch 256, Adam 3e-4, 10 flow steps; agents' paper defaults otherwise"
)
# the QAM paper's Table 1, offline success (%) on cube-double averaged over its 5 tasks at 1M
# steps, 4x512 networks, K = 10 (a GPU configuration): the ordering the rows are read against
PAPER_CUBE_DOUBLE = {"qam": 57, "qam_fql": 49, "fql": 30, "rebrac": 8}


@dataclasses.dataclass(frozen=True)
class Suite:
    env: str
    dataset_episodes: int
    offline_steps: int
    online_steps: int
    eval_interval: int
    eval_episodes: int
    agents: tuple[str, ...]
    one_program: bool  # the seeds of an agent trained together (`--num-seeds`)

    def settings(self, agent: str, seed: int) -> dict:
        """The fields of a run's recorded configuration that make it this benchmark's run."""
        return dict(
            agent=agent,
            env=self.env,
            seed=seed,
            offline_steps=self.offline_steps,
            online_steps=self.online_steps,
            eval_episodes=self.eval_episodes,
            dataset_episodes=self.dataset_episodes,
        )

    def run_arguments(self, args) -> list[str]:
        """The `run.py` arguments that name this suite's data."""
        command = ["--dataset-episodes", str(self.dataset_episodes)]
        if args.data_dir is not None:
            command += ["--data-dir", str(args.data_dir)]
        return command


_SINGLE = dict(
    dataset_episodes=100,
    offline_steps=20_000,
    online_steps=0,
    eval_interval=5000,
    eval_episodes=20,
    agents=("qam", "qam_fql", "fql", "rebrac", "moma_ql", "ofql"),
    one_program=True,
)
SUITES = {
    "cube-single-task1": Suite(env="cube-single-play-singletask-task1-v0", **_SINGLE),
    "cube-single-task2": Suite(env="cube-single-play-singletask-task2-v0", **_SINGLE),
    "cube-double": Suite(
        env="cube-double-play-singletask-task2-v0",
        dataset_episodes=1000,
        offline_steps=10_000,
        online_steps=5000,
        eval_interval=10_000,
        eval_episodes=20,
        agents=("qam", "fql", "rebrac"),
        one_program=False,
    ),
}


def settings(suite: Suite, agent: str, seed: int) -> dict:
    """The fields of a run's recorded configuration that make it this benchmark's run."""
    return suite.settings(agent, seed)


def _matches(summary: dict, wanted: dict) -> bool:
    run = summary.get("config", {})
    return all(run.get(k) == v for k, v in wanted.items())


def _copy_path(args, name: str, agent: str, seed: int) -> Path:
    return args.results / "runs" / name / f"{agent}-seed{seed}.json"


def finished(args, name: str, agent: str, seeds: list[int], suites=None) -> list[dict] | None:
    """The kept summaries of every seed of (suite, agent), or None if any is missing.

    `suites` (default `SUITES`): another benchmark's suites, each with this module's `Suite`
    methods `settings(agent, seed)` and `run_arguments(args)` (`benchmarks/d4rl_reduced.py`)."""
    suite = (SUITES if suites is None else suites)[name]
    summaries = []
    for seed in seeds:
        path = _copy_path(args, name, agent, seed)
        if not path.exists():
            return None
        summary = json.loads(path.read_text())
        if not _matches(summary, suite.settings(agent, seed)):
            return None
        summaries.append(summary)
    return summaries


def _recorded_config(text: str, names: dict):
    """A configuration's recorded repr read back with today's classes (fields added since take
    their defaults, which by the library's convention keep the old behaviour); None if it no
    longer reads (a field was renamed or removed)."""
    try:
        return eval(text, {"__builtins__": {}}, names)  # our own files' reprs, no builtins
    except Exception:
        return None


def stale(args, suite, agent: str, summaries: list[dict]) -> bool:
    """Whether any kept run was trained with another agent configuration than `run.py` builds
    for it now (a default changed since): such runs are trained again, not reused. A field added
    since counts as its default; copies that predate the recorded configuration are taken as
    they are."""
    import dataclasses  # the library, only when there are copies to check

    from experiments import run
    from interpolant_rl import agents

    flags = _command(args, suite, agent, 0, 1, Path("unused"))[2:]
    current = run.parse(flags)[1]
    names = {
        name: value
        for module in vars(agents).values()
        if isinstance(module, type(agents))
        for name, value in vars(module).items()
        if isinstance(value, type) and dataclasses.is_dataclass(value)
    }
    names.update(inf=float("inf"), nan=float("nan"))
    return any(
        "agent_config" in s and _recorded_config(s["agent_config"], names) != current
        for s in summaries
    )


def _command(
    args,
    suite: Suite,
    agent: str,
    seed: int,
    num_seeds: int,
    out_dir: Path,
    fresh: bool = False,
) -> list:
    command = [
        sys.executable,
        str(ROOT / "experiments" / "run.py"),
        "--agent", agent,
        "--env", suite.env,
        "--seed", str(seed),
        "--num-seeds", str(num_seeds),
        "--out-dir", str(out_dir),
        "--offline-steps", str(suite.offline_steps),
        "--online-steps", str(suite.online_steps),
        "--eval-interval", str(suite.eval_interval),
        "--eval-episodes", str(suite.eval_episodes),
        "--workers", str(args.workers),
        *suite.run_arguments(args),
    ]  # fmt: skip
    if (out_dir / "checkpoint.eqx").exists() and not fresh:
        command.append("--resume")  # a program stopped part-way continues where it was
    elif out_dir.exists():  # `fresh`: a stale program's directory is trained again
        command.append("--overwrite")  # one stopped before its first checkpoint starts again
    return command


def run_agent(
    args, name: str, agent: str, suites=None, label: str = "ogbench_reduced"
) -> list[dict]:
    """The per-seed summaries of (suite, agent), running what has not finished (`suites` as
    in `finished`; `label` prefixes the messages)."""
    suites = SUITES if suites is None else suites
    suite = suites[name]
    done = finished(args, name, agent, args.seeds, suites)
    if done is not None and not stale(args, suite, agent, done):
        return done
    runs_dir = args.runs_dir / name
    if suite.one_program:
        if args.seeds != list(range(args.seeds[0], args.seeds[0] + len(args.seeds))):
            raise SystemExit(
                f"{label}: {name} trains seeds as one program: give consecutive --seeds"
            )
        out_dir = runs_dir / f"{agent}-seeds{args.seeds[0]}-{args.seeds[-1]}"
        programs = [
            (args.seeds[0], len(args.seeds), out_dir, [out_dir / f"seed{s}" for s in args.seeds])
        ]
    else:
        programs = [
            (s, 1, runs_dir / f"{agent}-seed{s}", [runs_dir / f"{agent}-seed{s}"])
            for s in args.seeds
        ]
    summaries = []
    for seed, num_seeds, out_dir, seed_dirs in programs:
        seeds = list(range(seed, seed + num_seeds))
        kept = finished(args, name, agent, seeds, suites)
        old = kept is not None and stale(args, suite, agent, kept)
        if old:
            print(
                f"[{label}] {name}: {agent}'s kept runs used another configuration than "
                "run.py builds now; training them again",
                file=sys.stderr,
                flush=True,
            )
        if kept is None or old:
            command = _command(args, suite, agent, seed, num_seeds, out_dir, fresh=old)
            print(f"[{label}] {name}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
            subprocess.run(command, check=True)
            kept = []
            for s, seed_dir in zip(seeds, seed_dirs, strict=True):
                summary = json.loads((seed_dir / "summary.json").read_text())
                copy = _copy_path(args, name, agent, s)
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(json.dumps(summary, indent=2) + "\n")
                kept.append(summary)
        summaries += kept
    return summaries


def interval(values: list[float]) -> dict:
    """Mean and the half-width of the 95 % Student-t interval over seeds."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    half = (
        float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    )
    return dict(mean=float(values.mean()), ci95=half, n=n, values=values.tolist())


def _cell(entry: dict, scale: float = 100, digits: int = 0) -> str:
    """`mean ± half-width` of an `interval`, times `scale` (success in %)."""
    if math.isnan(entry["ci95"]):
        return f"{scale * entry['mean']:.{digits}f}"
    return f"{scale * entry['mean']:.{digits}f} ± {scale * entry['ci95']:.{digits}f}"


def metric_by_step(summary: dict, metric: str) -> dict[int, float]:
    """A run's evaluations of `metric`, by step."""
    return {int(row["step"]): float(row[metric]) for row in summary["evaluations"]}


def success_by_step(summary: dict) -> dict[int, float]:
    return metric_by_step(summary, "success")


def write_tables(results: Path, result: dict, lines: list[str]) -> None:
    """The table as `{results}.json` (`result`) and `{results}.md` (`lines`)."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    results.with_suffix(".md").write_text("\n".join(lines))


def suite_rows(suite: Suite, summaries: dict[str, list[dict]]) -> dict:
    offline, total = suite.offline_steps, suite.offline_steps + suite.online_steps
    rows = {}
    for agent, runs in summaries.items():
        curves = [success_by_step(s) for s in runs]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        rows[agent] = dict(
            offline_success=interval([c[offline] for c in curves]),
            online_success=interval([c[total] for c in curves]) if suite.online_steps else None,
            success_by_step={str(k): float(np.mean([c[k] for c in curves])) for k in steps},
            wall_time_min=float(np.mean([s["wall_time_s"] for s in runs]) / 60),
            paper_offline_success_cube_double=PAPER_CUBE_DOUBLE.get(agent),
        )
    return rows


def suite_markdown(name: str, suite: Suite, rows: dict, seeds: list[int]) -> list[str]:
    together = "trained as one program" if suite.one_program else "one program per seed"
    lines = [
        f"### {name}: `{suite.env}`",
        "",
        f"{suite.dataset_episodes}-episode generated dataset; {suite.offline_steps} offline updates"
        + (
            f" then {suite.online_steps} online environment steps (UTD 1)"
            if suite.online_steps
            else ""
        )
        + f"; success % over {suite.eval_episodes} evaluation episodes per seed, mean ± 95 % "
        f"t-interval over seeds {seeds} ({together}).",
        "",
    ]
    steps = sorted({int(k) for row in rows.values() for k in row["success_by_step"]})
    head = "| agent | success after offline |"
    if suite.online_steps:
        head += " after online |"
    head += (
        "".join(f" at {k} |" for k in steps) + " wall time per program (min) | paper, cube-double |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for agent, row in rows.items():
        line = f"| {agent} | {_cell(row['offline_success'])} |"
        if suite.online_steps:
            line += f" {_cell(row['online_success'])} |"
        line += "".join(
            f" {100 * row['success_by_step'][str(k)]:.0f} |"
            if str(k) in row["success_by_step"]
            else " |"
            for k in steps
        )
        paper = row["paper_offline_success_cube_double"]
        line += f" {row['wall_time_min']:.1f} | {'' if paper is None else paper} |"
        lines.append(line)
    return lines + [""]


AGGREGATED = ("cube-single-task1", "cube-single-task2")  # one budget, two tasks


def aggregate_rows(summaries: dict[str, dict[str, list[dict]]], reps: int = 2000) -> dict:
    """Per agent finished in every `AGGREGATED` suite: the offline success of its seeds x those
    tasks, as the IQM and the mean with 95 % stratified bootstrap intervals (seed 0)."""
    from interpolant_rl.train import iqm, stratified_bootstrap_ci

    rows = {}
    for agent in SUITES[AGGREGATED[0]].agents:
        if not all(agent in summaries.get(name, {}) for name in AGGREGATED):
            continue
        scores = np.array(  # (seeds, tasks)
            [
                [success_by_step(s)[SUITES[name].offline_steps] for s in summaries[name][agent]]
                for name in AGGREGATED
            ]
        ).T
        row = dict(seeds=scores.shape[0], tasks=scores.shape[1], scores=scores.tolist())
        for name, statistic in (("iqm", iqm), ("mean", np.mean)):
            low, high = stratified_bootstrap_ci(scores, statistic, reps=reps, level=0.95, seed=0)
            row[name] = float(statistic(scores))
            row[f"{name}_ci95"] = [float(low), float(high)]
        rows[agent] = row
    return rows


def aggregate_markdown(rows: dict) -> list[str]:
    def cell(row, name):
        low, high = row[f"{name}_ci95"]
        return f"{100 * row[name]:.0f} [{100 * low:.0f}, {100 * high:.0f}]"

    lines = [
        "### Across the cube-single tasks",
        "",
        f"Offline success % over {' and '.join(f'`{n}`' for n in AGGREGATED)} x seeds: the "
        "interquartile mean (IQM) and the mean, with 95 % stratified bootstrap intervals "
        "(seeds resampled within each task, 2000 replicates; `experiments/plot.py --aggregate` "
        "computes the same from run directories).",
        "",
        "| agent | IQM [95 % CI] | mean [95 % CI] |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {cell(r, 'iqm')} | {cell(r, 'mean')} |" for a, r in rows.items()]
    return lines + [""]


def report(args) -> dict:
    """Rewrite `{results}.md/.json` from every finished (suite, agent)."""
    result = dict(
        configuration=CONFIGURATION,
        machine=f"{os.cpu_count()} CPU cores, no GPU",
        seeds=args.seeds,
        paper_offline_success_cube_double=PAPER_CUBE_DOUBLE,
        suites={},
    )
    lines = [
        "# OGBench at CPU-sized budgets",
        "",
        f"{CONFIGURATION}; {result['machine']}. The paper column is the QAM paper's Table 1 "
        "(cube-double, five-task mean, 1M updates, 4x512 networks, K = 10, GPU).",
        "",
    ]
    every = {}
    for name, suite in SUITES.items():
        summaries = {}
        for agent in suite.agents:
            runs = finished(args, name, agent, args.seeds)
            if runs is not None:
                summaries[agent] = runs
                result.setdefault("versions", runs[0]["versions"])
        if not summaries:
            continue
        every[name] = summaries
        rows = suite_rows(suite, summaries)
        result["suites"][name] = dict(dataclasses.asdict(suite), agents=rows)
        lines += suite_markdown(name, suite, rows, args.seeds)
    aggregates = aggregate_rows(every)
    if aggregates:
        result["cube_single_aggregate"] = dict(suites=list(AGGREGATED), agents=aggregates)
        lines += aggregate_markdown(aggregates)
    write_tables(args.results, result, lines)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument(
        "--agents",
        nargs="+",
        default=None,
        help="only these, in this order (default: each suite's)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--report", action="store_true", help="only rewrite the table from kept runs"
    )
    parser.add_argument("--workers", type=int, default=2, help="dataset generation processes")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/ogbench_reduced"))
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "ogbench_reduced"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.report:
        for name in args.suites:
            suite_agents = SUITES[name].agents
            # in the order given (cheap agents first, say), else the suite's
            order = suite_agents if args.agents is None else args.agents
            for agent in (a for a in order if a in suite_agents):
                run_agent(args, name, agent)
                report(args)
    result = report(args)
    print(json.dumps(dict(result, benchmark_wall_time_s=time.perf_counter() - start), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
