"""Run a grid of `run.py` configurations as Ray Tune trials, one `run.py` process per trial.

    python experiments/sweep.py --grid agent=fql,iql --grid seed=0,1 --out-dir runs/sweep1 \\
        -- --offline-steps 2000 --eval-interval 1000
    python experiments/sweep.py --grid fql.alpha=3,10,30 --out-dir runs/alpha -- --agent fql
    python experiments/sweep.py --address auto --cpus-per-trial 4 --grid seed=0,1,2,3 \\
        --out-dir /shared/runs/seeds -- --agent qam      # join a running Ray cluster
    python experiments/sweep.py --resume --out-dir runs/sweep1   # continue where it stopped

`--grid KEY=V1,V2,...` names any run.py flag without its dashes (`seed`, `offline-steps`,
`fql.alpha`); the trials are the Cartesian product of the axes, each one run.py process with the
flags after `--`, its grid values and `--out-dir OUT_DIR/trials/<its name, e.g.
agent=fql,seed=0>`. Every new row of a trial's `eval.jsonl` is reported to Tune while it trains.
At the end a table (grid values, final step, headline metric, status) is printed and written to
`OUT_DIR/summary.md` and `OUT_DIR/summary.json`; the exit code is 0 if every trial finished.

`OUT_DIR` holds `sweep.json` (the grid and the flags), `tune/` (Tune's experiment), `trials/`
(the run directories) and `logs/` (each trial's run.py stdout and stderr). `--resume` restores
the Tune experiment: finished trials are not rerun, a trial whose run directory holds a checkpoint
continues it (run.py --resume). Ray is an optional dependency: pip install "interpolant_rl[sweep]".
"""

import argparse
import ctypes
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


RUN_PY = Path(__file__).resolve().parent / "run.py"
# flags the sweep sets itself for every trial
OWNED = {"out-dir", "resume", "overwrite", "help", "h"}
# how often a running trial's eval.jsonl is read for new rows
POLL_S = 0.5
KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class SweepError(ValueError):
    """Bad input: one line on stderr, exit code 2, nothing written."""


# ---- the command line ----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other bad input (not usage + line)
        raise SweepError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sweep.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="sweep.py [options] --out-dir OUT_DIR [--grid KEY=V1,V2 ...] [-- RUN.PY FLAGS]",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one axis of the grid: a run.py flag without its dashes and its values",
    )
    p.add_argument("--out-dir", type=Path, required=True, help="the sweep's directory")
    p.add_argument("--address", help="join this Ray cluster (default: start Ray here)")
    p.add_argument(
        "--max-concurrent",
        type=int,
        metavar="N",
        help="trials running at once (default: as many as the resources hold)",
    )
    p.add_argument(
        "--cpus-per-trial", type=float, default=1.0, metavar="N", help="CPUs per trial (1)"
    )
    p.add_argument(
        "--gpus-per-trial", type=float, default=0.0, metavar="N", help="GPUs per trial (0)"
    )
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out-dir")
    return p


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """The sweep's own arguments and the fixed run.py flags (everything after the first `--`)."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def _flag_name(flag: str) -> str:
    """`--offline_steps=3` -> `offline-steps`: the spelling two flags are compared in."""
    return flag.lstrip("-").split("=", 1)[0].replace("_", "-")


def parse_grid(axes: list[str]) -> dict[str, list[str]]:
    """`["agent=fql,iql", "seed=0,1"]` -> `{"agent": ["fql", "iql"], "seed": ["0", "1"]}`."""
    grid: dict[str, list[str]] = {}
    for axis in axes:
        key, eq, values = axis.partition("=")
        if not eq or not KEY.fullmatch(key):
            raise SweepError(
                f"--grid {axis!r}: expected KEY=V1,V2,... with KEY a run.py flag without dashes"
            )
        if _flag_name(key) in OWNED:
            raise SweepError(f"--grid {axis!r}: the sweep sets --{_flag_name(key)} itself")
        if _flag_name(key) in map(_flag_name, grid):
            raise SweepError(f"--grid {axis!r}: {key} is already an axis")
        items = values.split(",")
        if any(not item.strip() for item in items):
            raise SweepError(f"--grid {axis!r}: empty value")
        items = [item.strip() for item in items]
        if len(set(items)) < len(items):
            raise SweepError(f"--grid {axis!r}: a value is repeated")
        grid[key] = items
    return grid


def check_fixed(fixed: list[str], grid: dict[str, list[str]]) -> None:
    """The flags after `--` leave the sweep's own flags and the grid's axes alone."""
    flags = {_flag_name(a) for a in fixed if a.startswith("-")}
    owned = sorted(flags & OWNED)
    if owned:
        raise SweepError(f"--{owned[0]} after '--': the sweep sets it for every trial")
    both = [key for key in grid if _flag_name(key) in flags]
    if both:
        raise SweepError(f"--{both[0]} is both a grid axis and a fixed flag after '--'")


def points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The grid's Cartesian product, in the order the axes and values were given."""
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def trial_name(params: dict[str, str]) -> str:
    """`agent=fql,seed=0`: readable, and safe as a directory name."""
    name = ",".join(f"{k}={v}" for k, v in params.items()) or "run"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)


def run_argv(params: dict[str, str], fixed: list[str], run_dir: Path) -> list[str]:
    """A trial's run.py flags: the fixed ones, `--KEY VALUE` per axis, its run directory."""
    return [
        *fixed,
        *(a for k, v in params.items() for a in (f"--{k}", v)),
        "--out-dir",
        str(run_dir),
    ]


def _tyro_message(text: str) -> str:
    """The one line of a tyro error box that says what is wrong (its title otherwise)."""
    lines = [line.strip(" │|") for line in text.splitlines()]
    lines = [line for line in lines if line and not set(line) <= set("-─╭╮╰╯ ")]
    found = [line for line in lines[1:] if ":" in line]
    return (found or lines or ["invalid flags"])[0]


def check_trials(specs: list[tuple[str, list[str]]]) -> None:
    """Parse every trial's run.py command line with run.py's own parser and checks (no Ray, no
    compile), so a mistyped flag or value is one error here, not a failure of every trial later.
    In a child process: run.py's checks may start JAX, which must not run in the driver (it then
    forks Ray's processes, and JAX's threads do not survive a fork)."""
    load = f"import importlib.util as u; s = u.spec_from_file_location('_sweep', {__file__!r})"
    run = "m = u.module_from_spec(s); s.loader.exec_module(m); m.check_trials_here()"
    child = subprocess.run(
        [sys.executable, "-c", f"{load}; {run}"],
        input=json.dumps(specs),
        capture_output=True,
        text=True,
    )
    if child.returncode != 0:
        lines = child.stderr.strip().splitlines() or [f"exit code {child.returncode}"]
        raise SweepError(lines[-1].removeprefix("sweep.py: error: "))


def check_trials_here() -> None:
    """`check_trials` in this process, on the `[name, argv]` pairs on stdin: exit code 2 and one
    line on stderr for the first trial run.py refuses."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("_sweep_run", RUN_PY)
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # tyro's error messages inspect its classes' module
    spec.loader.exec_module(run)
    for name, argv in json.load(sys.stdin):
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
                config, _ = run.parse(argv)
                run.resolve(config)
        except SystemExit:
            message = _tyro_message(captured.getvalue())
        except ValueError as error:
            message = str(error)
        else:
            continue
        print(f"sweep.py: error: trial {name}: {message}", file=sys.stderr)
        sys.exit(2)


def tune_api():
    """Tune's `(report, RunConfig)`: `ray.tune`'s in recent Rays, `ray.train`'s (the same
    signatures) in the older ones `interpolant_rl[sweep]` allows."""
    from ray import tune

    if hasattr(tune, "RunConfig") and hasattr(tune, "report"):
        return tune.report, tune.RunConfig
    from ray import train

    return train.report, train.RunConfig


# ---- one trial (runs in a Ray worker) -------------------------------------------------------


def _die_with_parent() -> None:
    """run.py gets SIGINT (and stops like on Ctrl-C) when the Ray worker that started it dies,
    instead of training on as an orphan that holds its run directory's lock."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the orphan finishes its run
        pass


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a metrics file (a line run.py is still writing is left out)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            with_step = json.loads(line)
            if "step" in with_step:
                rows.append(with_step)
    return rows


def _flag_values(argv: list[str], name: str) -> list[str]:
    """The values of every `--name V` / `--name=V` in a command line."""
    values = []
    for i, arg in enumerate(argv):
        if arg.startswith("-") and _flag_name(arg) == name:
            values.append(arg.split("=", 1)[1] if "=" in arg else argv[i + 1])
    return values


def num_members(argv: list[str]) -> int:
    """The runs one run.py command trains together: its seeds (`--num-seeds`) times the points of
    its in-program hyperparameter grid (`--sweep NAME=V1,V2,...`)."""
    count = int((_flag_values(argv, "num-seeds") or ["1"])[-1])
    for axis in _flag_values(argv, "sweep"):
        count *= len(axis.partition("=")[2].split(","))
    return count


def eval_rows(run_dir: Path, members: int) -> list[dict[str, Any]]:
    """The evaluations of a run directory, by step: its `eval.jsonl`, or with several members
    (`seed{k}/eval.jsonl`, `tau=3/seed{k}/eval.jsonl`) the mean over them of each metric at
    every step all of them have reached."""
    if members == 1:
        return _read_rows(run_dir / "eval.jsonl")
    by_step: dict[int, list[dict]] = {}
    for path in sorted(run_dir.rglob("eval.jsonl")):
        for row in _read_rows(path):
            by_step.setdefault(row["step"], []).append(row)
    rows = []
    for step, member_rows in sorted(by_step.items()):
        if len(member_rows) == members:
            numeric = [
                k
                for k in member_rows[0]
                if all(isinstance(r.get(k), int | float) for r in member_rows)
            ]
            rows.append({k: sum(r[k] for r in member_rows) / members for k in numeric})
            rows[-1].update(step=step, members=members)
    return rows


def last_line(path: Path, start: int = 0) -> str:
    """The last non-empty line written to `path` after byte `start` (progress bars redraw with
    carriage returns: they count as line ends)."""
    try:
        with path.open("rb") as file:
            file.seek(start)
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    lines = [line.strip() for line in re.split(r"[\r\n]", text)]
    return next((line for line in reversed(lines) if line), "")


def trial_argv(params: dict[str, str], fixed: list[str], run_dir: Path) -> list[str]:
    """The trial's run.py flags: a run directory with a checkpoint is continued (a trial that
    `--resume` restarts); one that holds files but no checkpoint is started over."""
    argv = run_argv(params, fixed, run_dir)
    if (run_dir / "checkpoint.eqx").exists():
        return [*argv, "--resume"]
    if run_dir.is_dir() and any(run_dir.iterdir()):
        return [*argv, "--overwrite"]
    return argv


def follow(process: subprocess.Popen, run_dir: Path, members: int, report) -> int:
    """Wait for run.py, passing every new evaluation to `report` as it is written; its exit code.
    Tune's records of a trial start over with each attempt (there is no Tune checkpoint), so a
    continued run reports its earlier evaluations again: Tune holds the whole curve."""
    done = -1
    try:
        while True:
            code = process.poll()  # before the read: rows written before the exit are seen
            for row in eval_rows(run_dir, members):
                if row["step"] > done:
                    report(row)
                    done = row["step"]
            if code is not None:
                return code
            time.sleep(POLL_S)
    finally:
        if process.poll() is None:  # Tune stopped the trial: stop run.py as Ctrl-C would
            process.send_signal(signal.SIGINT)
            process.wait()


def run_trial(config: dict, *, sweep_dir: str, fixed: list[str], cwd: str) -> None:
    """A Tune trainable: run.py on the trial's grid point (a subprocess with this Python: its JAX
    is its own), each evaluation reported to Tune. It fails when run.py fails, and when run.py
    stopped at its `--time-limit` (so that `--resume` restarts it). Why, in one line, goes to
    `logs/<trial>.error` for the summary."""
    report, _ = tune_api()
    name = trial_name(config["grid"])
    run_dir = Path(sweep_dir) / "trials" / name
    argv = trial_argv(config["grid"], fixed, run_dir)
    logs = Path(sweep_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    err_path, reason = logs / f"{name}.err", logs / f"{name}.error"
    reason.unlink(missing_ok=True)
    start = err_path.stat().st_size if err_path.exists() else 0  # this attempt's stderr
    cwd = cwd if os.path.isdir(cwd) else None  # where the sweep started, if this node has it
    with open(logs / f"{name}.out", "ab") as out, open(err_path, "ab") as err:
        process = subprocess.Popen(
            [sys.executable, str(RUN_PY), *argv],
            cwd=cwd,
            stdout=out,
            stderr=err,
            preexec_fn=_die_with_parent,
        )
        code = follow(process, run_dir, num_members(argv), report)
    summary = read_summary(run_dir)
    if code != 0:
        message = f"failed: run.py exited with {code}: {last_line(err_path, start)}"
    elif summary.get("time_limit_reached"):
        step = summary.get("steps")
        message = f"unfinished: stopped at step {step} by --time-limit (--resume continues)"
    else:
        return
    reason.write_text(message + "\n")
    raise RuntimeError(message)


# ---- the summary ----------------------------------------------------------------------------


def read_summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def headline(final: dict[str, Any]) -> tuple[str | None, float]:
    """A run's headline metric and value: D4RL's `normalized_score` on locomotion tasks,
    `success` on OGBench (with several seeds: their mean)."""
    for metric in ("normalized_score", "success"):
        for key in (f"{metric}_mean", metric):
            if isinstance(final.get(key), int | float):
                return metric, float(final[key])
    return None, math.nan


def error_status(sweep_dir: Path, name: str, error: Any) -> str:
    """Why a trial ended with an error: the line its attempt wrote (run.py's last line on stderr,
    or its `--time-limit`), else Tune's error."""
    try:
        return (sweep_dir / "logs" / f"{name}.error").read_text().strip()
    except FileNotFoundError:
        lines = str(error or "").strip().splitlines()
        return "failed: " + (lines[-1] if lines else "see the trial's error.txt in tune/")


def trial_row(params: dict[str, str], sweep_dir: Path, result: Any) -> dict[str, Any]:
    """One line of the summary: the grid values, what run.py's `summary.json` says, what Tune
    was told, and the status (done, failed with run.py's last line, unfinished, not finished)."""
    name = trial_name(params)
    run_dir = sweep_dir / "trials" / name
    summary = read_summary(run_dir)
    metric, value = headline(summary.get("final", {}))
    value = None if metric is None else value  # JSON has no NaN
    reported = (result.metrics or {}) if result is not None else {}
    error = result.error if result is not None else None
    if error is not None:
        status = error_status(sweep_dir, name, error)
    elif summary and not summary.get("time_limit_reached"):
        status = "done"
    else:  # never started, or stopped with the driver
        status = "not finished"
    return dict(
        name=name,
        params=params,
        run_dir=str(run_dir),
        step=summary.get("steps"),
        metric=metric,
        value=value,
        status=status,
        reported_step=reported.get("step"),
        reported_rows=reported.get("training_iteration"),
    )


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def table(grid: dict[str, list[str]], rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per trial, one column per grid axis and headline metric."""
    metrics = sorted({row["metric"] for row in rows if row["metric"]})
    header = ["trial", *grid, "step", *metrics, "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [row["value"] if row["metric"] == m else None for m in metrics]
        cells = [row["name"], *row["params"].values(), row["step"], *values, row["status"]]
        lines.append("| " + " | ".join(_cell(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, spec: dict, results: dict[str, Any]) -> bool:
    rows = [
        trial_row(params, sweep_dir, results.get(trial_name(params)))
        for params in points(spec["grid"])
    ]
    text = table(spec["grid"], rows)
    print(text, end="")
    (sweep_dir / "summary.md").write_text(text)
    everything_done = all(row["status"] == "done" for row in rows)
    summary = dict(spec, trials=rows, all_done=everything_done)
    (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not everything_done:  # (Tune's own hint names its Python API)
        left = sum(row["status"] != "done" for row in rows)
        print(
            f"{left} of {len(rows)} trials did not finish; continue them with: "
            f"python experiments/sweep.py --resume --out-dir {sweep_dir}"
        )
    return everything_done


# ---- the sweep ------------------------------------------------------------------------------


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def prepare(args: argparse.Namespace, fixed: list[str]) -> dict[str, Any]:
    """Check everything before Ray starts or a file is written: the grid, the sweep directory
    (empty, or with `--resume` a sweep to continue), every trial's run.py flags. Returns the
    sweep's spec (grid, fixed flags), read back from `sweep.json` on `--resume`."""
    for flag in ("cpus_per_trial", "gpus_per_trial"):
        if not getattr(args, flag) >= 0:
            raise SweepError(f"--{flag.replace('_', '-')} must be >= 0")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise SweepError("--max-concurrent must be >= 1")
    if args.address is None and args.cpus_per_trial > _cores():
        raise SweepError(f"--cpus-per-trial {args.cpus_per_trial:g}: this machine has {_cores()}")
    grid = parse_grid(args.grid)
    check_fixed(fixed, grid)
    out_dir = args.out_dir.resolve()
    # the working directory is recorded: relative paths in the flags keep their meaning on resume
    given = dict(grid=grid, run_flags=fixed, cwd=os.getcwd())
    if args.resume:
        from ray import tune

        record = out_dir / "sweep.json"
        if not record.exists() or not tune.Tuner.can_restore(str(out_dir / "tune")):
            raise SweepError(f"--resume: no sweep in {args.out_dir} to continue")
        spec = json.loads(record.read_text())
        if args.max_concurrent is not None:  # Tuner.restore takes no TuneConfig
            raise SweepError("--resume: a sweep keeps the --max-concurrent it started with")
        if (grid or fixed) and (grid, fixed) != (spec["grid"], spec["run_flags"]):
            raise SweepError(
                f"--resume: {args.out_dir} is the sweep of --grid {spec['grid']} -- "
                f"{' '.join(spec['run_flags'])}; give no grid or flags to continue it"
            )
    else:
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise SweepError(
                f"--out-dir {args.out_dir} is not empty (continue a sweep there with --resume)"
            )
        spec = given
    check_trials(
        [
            (trial_name(p), run_argv(p, spec["run_flags"], out_dir / "trials" / trial_name(p)))
            for p in points(spec["grid"])
        ]
    )
    return spec


def _quiet_tune() -> None:
    """Tune's output down to what the sweep does not say itself: the progress callback prints
    one line per trial event and the summary says why a trial failed, so Tune's tables, its
    traceback of every failed trial and its list of unfinished trials stay off (Tune's
    settings, through its documented environment variables; set them to see Tune's output)."""
    import logging

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter: verbose=0 is silent
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    logging.getLogger("ray.tune.tune").addFilter(
        lambda record: not record.getMessage().startswith("Trials did not complete")
    )


def start_ray(address: str | None) -> None:
    import logging

    import ray

    quiet = dict(log_to_driver=False, logging_level=logging.WARNING)
    try:
        if address is None:  # embedded: this machine's cores, no dashboard
            ray.init(num_cpus=_cores(), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError) as error:
        where = f"at {address}" if address else "here"
        raise SweepError(
            f"cannot start Ray {where}: {str(error).strip().splitlines()[0]}"
        ) from None


def _progress_callback(sweep_dir: Path):
    """A Tune callback that prints one line per trial event (Tune's own output is off: its
    tables are long, and run.py's progress bars go to the trial's log)."""
    from ray import tune

    class Progress(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            print(f"{trial_name(trial.config['grid'])}: started", flush=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            metric, value = headline(result)
            shown = f", {metric} {value:.3f}" if metric else ""
            print(
                f"{trial_name(trial.config['grid'])}: step {result.get('step')}{shown}", flush=True
            )

        def on_trial_complete(self, iteration, trials, trial, **info):
            print(f"{trial_name(trial.config['grid'])}: done", flush=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            name = trial_name(trial.config["grid"])
            print(f"{name}: {error_status(sweep_dir, name, None)}", flush=True)

    return Progress()


def tuner(args: argparse.Namespace, spec: dict[str, Any], out_dir: Path):
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, sweep_dir=str(out_dir), fixed=spec["run_flags"], cwd=spec["cwd"]
        ),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    path = str(out_dir / "tune")
    if args.resume:
        # errored trials (failed, or stopped by --time-limit) start again: run.py continues
        # their checkpoint; finished ones stay finished
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space={"grid": tune.grid_search(points(spec["grid"]))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=args.max_concurrent,
            trial_name_creator=lambda trial: trial_name(trial.config["grid"]),
            trial_dirname_creator=lambda trial: trial_name(trial.config["grid"]),
        ),
        run_config=tune_api()[1](
            name="tune",
            storage_path=str(out_dir),
            verbose=0,
            callbacks=[_progress_callback(out_dir)],
        ),
    )


def main(argv: list[str] | None = None) -> int:
    """The sweep on the command line `argv`: 0 when every trial finished, 1 when one did not,
    2 (one line on stderr, nothing written) for bad input or a Ray that cannot start."""
    own, fixed = split_argv(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser().parse_args(own)
        try:
            import ray
        except ImportError:
            raise SweepError('needs Ray: pip install "interpolant_rl[sweep]"') from None
        spec = prepare(args, fixed)
        _quiet_tune()
        start_ray(args.address)
    except SweepError as error:
        print(f"sweep.py: error: {error}", file=sys.stderr)
        return 2
    try:
        out_dir = args.out_dir.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sweep.json").write_text(json.dumps(spec, indent=2) + "\n")
        if __name__ != "__main__":  # imported (tests): Ray's workers get this module by value
            ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        results = tuner(args, spec, out_dir).fit()
        by_name = {trial_name(r.config["grid"]): r for r in results if r.config}
        return 0 if write_summary(out_dir, spec, by_name) else 1
    except KeyboardInterrupt:
        print(f"sweep.py: interrupted; continue with --resume --out-dir {args.out_dir}")
        return 130
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
