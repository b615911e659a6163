"""MoMa QL, OFQL, FQL and ReBRAC on D4RL-style locomotion datasets built here, at a CPU-sized budget.

    python benchmarks/d4rl_reduced.py                                   # every suite (~3-4 h on 2 free cores)
    python benchmarks/d4rl_reduced.py --suites hopper-medium --agents fql rebrac
    python benchmarks/d4rl_reduced.py --behaviour-dir behaviour/ --data-dir data/d4rl
    python benchmarks/d4rl_reduced.py --report                          # only rewrite the table

Suites (each a D4RL-style `medium` dataset, a budget and a list of agents):

- `hopper-medium`, `halfcheetah-medium`, `walker2d-medium`: MoMa QL, OFQL, FQL and ReBRAC,
  offline only, at `experiments/run.py --preset cpu` on a D4RL name (2 x 256 networks, two
  critics, no action chunks, discount 0.99, batch 256): a dataset of 100 000 transitions rolled
  out by the environment's `medium` behaviour policy (run.py's cpu preset; D4RL's has 1M),
  20 000 offline updates, evaluations every 5000 updates on 10 episodes per seed, the three
  seeds of an agent trained as one program (`run.py --num-seeds 3`).
- `halfcheetah-medium-o2o`: the offline-to-online row of the MoMa QL paper's table: MoMa QL on
  halfcheetah-medium, the same 20 000 offline updates then 10 000 online environment steps
  (UTD 1), one program of the three seeds.

The datasets are built by `run.py` (`interpolant_rl.data.load_locomotion`) from the behaviour
policies in `--behaviour-dir` (default: the ones shipped in the package) into `--data-dir`
(default: the library's D4RL cache) the first time a suite needs them. A suite whose dataset is
not there and whose environment has no behaviour policies is reported in one line ("missing
behaviour policies for walker2d (train them with experiments/train_behaviour.py)") and skipped;
the table names it.

Expected wall time on 2 free CPU cores: 45-60 minutes per environment for the four offline
programs (measured on OGBench's cube-single at the same preset: 10-22 minutes per program of
three seeds), about 40 minutes for the offline-to-online program, 3-4 hours in all, plus about a
minute per dataset built.

As in `benchmarks/ogbench_reduced.py` (whose machinery this reuses): every finished run's
per-seed `summary.json` is copied to `{results}/runs/{suite}/`, a run whose copy exists with the
same settings (and the agent configuration `run.py` builds now) is not run again, an interrupted
program resumes from its checkpoint, and after
each program the table — the D4RL normalised score after the offline phase (and after the online
phase), mean and 95 % t-interval over seeds, each evaluation's mean, and the MoMa QL paper's
published scores where this project has transcribed them — is rewritten to `{results}.md` and
`.json` from every finished (suite, agent).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import ogbench_reduced as ogb
from benchmarks.ogbench_reduced import interval  # the same mean and 95 % t-interval


ROOT = Path(__file__).resolve().parents[1]
LABEL = "d4rl_reduced"
METRIC = "normalized_score"  # D4RL's, 0 = random, 100 = expert (run.py's locomotion metric)
AGENTS = ("moma_ql", "ofql", "fql", "rebrac")
CONFIGURATION = (
    "experiments/run.py --preset cpu on a D4RL locomotion name: 2x256 GELU MLPs, two critics, "
    "no action chunks (h = 1), discount 0.99, batch 256, Adam 3e-4; agents' defaults otherwise"
)
# The MoMa QL paper's offline-to-online table (D4RL): the normalised score after the offline
# phase -> after online fine-tuning. Its offline table's per-task scores are not transcribed
# (only the nine-task Gym average below); no per-task score of OFQL, FQL or ReBRAC is.
PAPER_MOMA_QL_O2O = {
    "halfcheetah-medium": (72.6, 83.1),
    "hopper-medium": (104.2, 104.3),
    "walker2d-medium": (95.6, 99.1),
}
PAPER_MOMA_QL_GYM_AVERAGE = 95.5  # its offline table, averaged over 9 D4RL Gym tasks
NOT_TRANSCRIBED = "not transcribed"


@dataclasses.dataclass(frozen=True)
class Suite:
    """A D4RL-style dataset (`env`, e.g. `hopper-medium-v2`), a budget and the agents run on it;
    `overrides` are further `run.py` settings (field name, value), e.g. network sizes."""

    env: str
    dataset_steps: int
    offline_steps: int
    online_steps: int
    eval_interval: int
    eval_episodes: int
    agents: tuple[str, ...]
    one_program: bool = True  # the seeds of an agent trained together (`--num-seeds`)
    overrides: tuple[tuple[str, int], ...] = ()

    @property
    def task(self) -> str:
        """`hopper-medium`."""
        return self.env.removesuffix("-v2")

    @property
    def environment(self) -> str:
        """`hopper`."""
        return self.env.split("-")[0]

    def settings(self, agent: str, seed: int) -> dict:
        """The fields of a run's recorded configuration that make it this benchmark's run."""
        return dict(
            agent=agent,
            env=self.env,
            seed=seed,
            offline_steps=self.offline_steps,
            online_steps=self.online_steps,
            eval_interval=self.eval_interval,
            eval_episodes=self.eval_episodes,
            dataset_steps=self.dataset_steps,
            **dict(self.overrides),
        )

    def run_arguments(self, args) -> list[str]:
        """The `run.py` arguments that name this suite's data (and its overrides)."""
        command = ["--dataset-steps", str(self.dataset_steps)]
        if args.data_dir is not None:
            command += ["--data-dir", str(args.data_dir)]
        if args.behaviour_dir is not None:
            command += ["--behaviour-dir", str(args.behaviour_dir)]
        for name, value in self.overrides:
            command += [f"--{name.replace('_', '-')}", str(value)]
        return command


_OFFLINE = dict(
    dataset_steps=100_000,
    offline_steps=20_000,
    online_steps=0,
    eval_interval=5000,
    eval_episodes=10,
    agents=AGENTS,
)
SUITES = {
    "hopper-medium": Suite(env="hopper-medium-v2", **_OFFLINE),
    "halfcheetah-medium": Suite(env="halfcheetah-medium-v2", **_OFFLINE),
    "walker2d-medium": Suite(env="walker2d-medium-v2", **_OFFLINE),
    "halfcheetah-medium-o2o": Suite(
        env="halfcheetah-medium-v2", **dict(_OFFLINE, online_steps=10_000, agents=("moma_ql",))
    ),
}


def missing(args, suite: Suite) -> str | None:
    """Why `suite` cannot run (one line), or None: its dataset is not in the data directory and
    its environment has no usable behaviour policies to build it from."""
    from interpolant_rl import data

    directory = data.default_d4rl_dir() if args.data_dir is None else Path(args.data_dir)
    built = directory / f"{suite.env}.hdf5"
    if built.exists() and not (directory / f".{suite.env}.incomplete").exists():
        return None
    policies = data.SHIPPED_BEHAVIOUR_DIR if args.behaviour_dir is None else args.behaviour_dir
    env = suite.environment
    if not (Path(policies) / f"{env}-behaviour.json").exists():
        return (
            f"missing behaviour policies for {env} (train them with experiments/train_behaviour.py)"
        )
    try:
        index = data.read_behaviour_index(policies, env)
    except ValueError as error:
        return str(error)
    if index.medium_step is None:
        return (
            f"the behaviour policies for {env} in {policies} never reached the medium score "
            "(train them further with experiments/train_behaviour.py)"
        )
    return None


def paper(name: str, suite: Suite, agent: str) -> dict | None:
    """The MoMa QL paper's published score for this row, where transcribed."""
    scores = PAPER_MOMA_QL_O2O.get(suite.task)
    if agent != "moma_ql" or scores is None:
        return None
    return dict(offline=scores[0], online=scores[1] if suite.online_steps else None)


def _paper_cell(entry: dict | None, online: bool) -> str:
    if entry is None:
        return NOT_TRANSCRIBED
    if online:
        return f"{entry['offline']} → {entry['online']}"
    return f"{entry['offline']} (O2O table, before online)"


def suite_rows(name: str, suite: Suite, summaries: dict[str, list[dict]]) -> dict:
    offline, total = suite.offline_steps, suite.offline_steps + suite.online_steps
    rows = {}
    for agent, runs in summaries.items():
        curves = [ogb.metric_by_step(s, METRIC) for s in runs]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        rows[agent] = dict(
            offline_score=interval([c[offline] for c in curves]),
            online_score=interval([c[total] for c in curves]) if suite.online_steps else None,
            score_by_step={str(k): float(np.mean([c[k] for c in curves])) for k in steps},
            wall_time_min=float(np.mean([s["wall_time_s"] for s in runs]) / 60),
            paper_moma_ql=paper(name, suite, agent),
        )
    return rows


def suite_markdown(name: str, suite: Suite, rows: dict, seeds: list[int]) -> list[str]:
    together = "trained as one program" if suite.one_program else "one program per seed"
    online = bool(suite.online_steps)
    lines = [
        f"### {name}: `{suite.env}`",
        "",
        f"A D4RL-style dataset of {suite.dataset_steps} transitions (built here); "
        f"{suite.offline_steps} offline updates"
        + (f" then {suite.online_steps} online environment steps (UTD 1)" if online else "")
        + f"; D4RL normalised score over {suite.eval_episodes} evaluation episodes per seed, "
        f"mean ± 95 % t-interval over seeds {seeds} ({together}).",
        "",
    ]
    steps = sorted({int(k) for row in rows.values() for k in row["score_by_step"]})
    head = "| agent | score after offline |" + (" after online |" if online else "")
    head += "".join(f" at {k} |" for k in steps) + " wall time per program (min) |"
    head += " MoMa QL paper (offline → online) |" if online else " MoMa QL paper |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for agent, row in rows.items():
        line = f"| {agent} | {ogb._cell(row['offline_score'], 1, 1)} |"
        if online:
            line += f" {ogb._cell(row['online_score'], 1, 1)} |"
        line += "".join(
            f" {row['score_by_step'][str(k)]:.1f} |" if str(k) in row["score_by_step"] else " |"
            for k in steps
        )
        paper_cell = _paper_cell(row["paper_moma_ql"], online) if agent == "moma_ql" else ""
        line += f" {row['wall_time_min']:.1f} | {paper_cell or NOT_TRANSCRIBED} |"
        lines.append(line)
    return lines + [""]


def report(args) -> dict:
    """Rewrite `{results}.md/.json` from every finished (suite, agent), naming the selected
    suites skipped for want of behaviour policies."""
    result = dict(
        configuration=CONFIGURATION,
        machine=f"{os.cpu_count()} CPU cores, no GPU",
        seeds=args.seeds,
        paper_moma_ql=dict(
            offline_to_online={k: list(v) for k, v in PAPER_MOMA_QL_O2O.items()},
            gym_average_offline=PAPER_MOMA_QL_GYM_AVERAGE,
        ),
        suites={},
        skipped={},
    )
    lines = [
        "# D4RL-style locomotion at CPU-sized budgets",
        "",
        f"{CONFIGURATION}; {result['machine']}.",
        "",
        "These are D4RL-style datasets (rolled out here by behaviour policies trained with SAC, "
        "as D4RL built its own) on gymnasium's MuJoCo v5 environments, at a CPU budget: "
        "comparable in kind to the papers' D4RL scores, not number for number. The MoMa QL "
        "paper column holds only what this project has transcribed from the paper: per task, "
        "its offline-to-online table (the score after the offline phase → after online "
        "fine-tuning); its offline table's per-task scores are not transcribed (only its "
        f"nine-task Gym average, {PAPER_MOMA_QL_GYM_AVERAGE}), nor are any of OFQL, FQL or "
        "ReBRAC.",
        "",
    ]
    for name, suite in SUITES.items():
        summaries = {}
        for agent in suite.agents:
            runs = ogb.finished(args, name, agent, args.seeds, suites=SUITES)
            if runs is not None:
                summaries[agent] = runs
                result.setdefault("versions", runs[0].get("versions"))
        if name in args.suites and len(summaries) < len(suite.agents):
            reason = missing(args, suite)
            if reason is not None:
                result["skipped"][name] = reason
        if not summaries:
            continue
        rows = suite_rows(name, suite, summaries)
        result["suites"][name] = dict(dataclasses.asdict(suite), agents=rows)
        lines += suite_markdown(name, suite, rows, args.seeds)
    if not result["suites"]:
        lines += ["No run has finished yet.", ""]
    if result["skipped"]:
        lines += [
            "Skipped: "
            + "; ".join(f"{name} ({reason})" for name, reason in result["skipped"].items())
            + ".",
            "",
        ]
    ogb.write_tables(args.results, result, lines)
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
    parser.add_argument(
        "--behaviour-dir",
        type=Path,
        default=None,
        help="behaviour policies the datasets are built from (default: the package's shipped ones)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the datasets are read or built (default: the library's D4RL cache)",
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/d4rl_reduced"))
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results" / "d4rl_reduced"
    )
    parser.set_defaults(workers=1)  # run.py's dataset-generation processes (OGBench only)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if not args.report:
        for name in args.suites:
            suite = SUITES[name]
            order = suite.agents if args.agents is None else args.agents
            agents = [a for a in order if a in suite.agents]
            todo = [a for a in agents if ogb.finished(args, name, a, args.seeds, SUITES) is None]
            reason = missing(args, suite) if todo else None
            if reason is not None:
                print(f"[{LABEL}] {name}: {reason}; skipped", file=sys.stderr, flush=True)
                continue
            for agent in agents:
                ogb.run_agent(args, name, agent, suites=SUITES, label=LABEL)
                report(args)
    result = report(args)
    print(json.dumps(dict(result, benchmark_wall_time_s=time.perf_counter() - start), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
