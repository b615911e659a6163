"""experiments/sweep.py: a grid of run.py configurations as Ray Tune trials on a local Ray."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import sweep


ROOT = Path(__file__).resolve().parents[1]
# the smallest run.py that evaluates twice (as in tests/test_run_dirs.py's CLI run)
TINY = [
    "--agent", "bc", "--dataset-episodes", "1", "--width", "16", "--depth", "1",
    "--batch-size", "16", "--offline-steps", "20", "--eval-interval", "10",
    "--eval-episodes", "1", "--updates-per-call", "10", "--workers", "1",
]  # fmt: skip


def _sweep(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    command = [sys.executable, str(ROOT / "experiments" / "sweep.py"), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_local_sweep_runs_reports_summarises_and_resumes_without_rerunning(tmp_path, capsys):
    out = tmp_path / "sweep"
    flags = [*TINY, "--data-dir", str(tmp_path / "data")]
    first = _sweep("--grid", "seed=0,1", "--out-dir", str(out), "--", *flags)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    names = ["seed=0", "seed=1"]
    for name in names:
        assert _steps(out / "trials" / name / "eval.jsonl") == [10, 20]
        # Tune got every evaluation row as it was written
        assert _steps(out / "tune" / name / "result.json") == [10, 20]
    summary = json.loads((out / "summary.json").read_text())
    assert [t["name"] for t in summary["trials"]] == names and summary["all_done"]
    for trial, seed in zip(summary["trials"], ("0", "1"), strict=True):
        assert trial["params"] == {"seed": seed} and trial["status"] == "done"
        assert trial["step"] == 20 and trial["reported_step"] == 20
        assert trial["metric"] == "success" and math.isfinite(trial["value"])
    table = (out / "summary.md").read_text().splitlines()
    assert table[0] == "| trial | seed | step | success | status |" and len(table) == 4
    assert table[2].startswith("| seed=0 | 0 | 20 | ") and table[2].endswith(" | done |")
    assert "\n".join(table[2:]) in first.stdout

    logs = {p.name: p.stat().st_size for p in (out / "logs").iterdir()}
    again = _sweep("--resume", "--out-dir", str(out))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "started" not in again.stdout  # finished trials are not rerun
    assert {p.name: p.stat().st_size for p in (out / "logs").iterdir()} == logs
    assert "\n".join(table[2:]) in again.stdout
    # a resumed sweep is the recorded one: another grid is refused before Ray starts
    assert sweep.main(["--resume", "--grid", "seed=5", "--out-dir", str(out)]) == 2
    assert "give no grid or flags to continue it" in capsys.readouterr().err
    assert sweep.main(["--resume", "--max-concurrent", "1", "--out-dir", str(out)]) == 2
    assert "keeps the --max-concurrent it started with" in capsys.readouterr().err


def test_a_failing_run_fails_its_trial_with_run_pys_last_line(tmp_path):
    with pytest.raises(RuntimeError, match="run.py exited with 2: run.py: error: --eval-interval"):
        sweep.run_trial(
            {"grid": {"eval-interval": "0"}},
            sweep_dir=str(tmp_path),
            fixed=["--agent", "bc"],
            cwd=str(tmp_path),
        )
    reason = (tmp_path / "logs" / "eval-interval=0.error").read_text()
    assert reason.startswith("failed: run.py exited with 2: run.py: error: --eval-interval")
    row = sweep.trial_row({"eval-interval": "0"}, tmp_path, None)
    assert row["status"] == "not finished" and row["step"] is None
    assert sweep.error_status(tmp_path, "eval-interval=0", "ignored") == reason.strip()


def test_several_members_report_their_mean_once_every_member_has_a_row(tmp_path):
    for member, rows in (("seed0", [(10, 0.0), (20, 1.0)]), ("tau=3/seed0", [(10, 1.0)])):
        (tmp_path / member).mkdir(parents=True)
        lines = [json.dumps({"step": s, "success": v, "note": "x"}) + "\n" for s, v in rows]
        (tmp_path / member / "eval.jsonl").write_text("".join(lines) + '{"step": 3')
    assert sweep.eval_rows(tmp_path, 2) == [{"step": 10, "success": 0.5, "members": 2}]
    assert sweep.num_members(["--num_seeds=2"]) == 2
    assert sweep.num_members(["--num-seeds", "2", "--sweep", "tau=1,3,10", "--sweep=a=1,2"]) == 12
    aggregate = {"success_mean": 0.25, "success_std": 0.1, "success": [0.0, 0.5]}
    assert sweep.headline(aggregate) == ("success", 0.25)
    assert sweep.headline({"normalized_score": 41.0, "success": 0.0}) == ("normalized_score", 41.0)


def test_trial_names_and_the_grid_product_follow_the_command_line():
    grid = sweep.parse_grid(["agent=fql,iql", "fql.alpha=3,10"])
    points = sweep.points(grid)
    assert [sweep.trial_name(p) for p in points] == [
        "agent=fql,fql.alpha=3",
        "agent=fql,fql.alpha=10",
        "agent=iql,fql.alpha=3",
        "agent=iql,fql.alpha=10",
    ]
    assert sweep.trial_name({"data-dir": "/a b/c"}) == "data-dir=_a_b_c"
    argv = sweep.run_argv(points[1], ["--seed", "2"], Path("/o/t"))
    assert argv == ["--seed", "2", "--agent", "fql", "--fql.alpha", "10", "--out-dir", "/o/t"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grid", "seed"], "expected KEY=V1,V2"),
        (["--grid=--seed=0,1"], "expected KEY=V1,V2"),
        (["--grid", "seed=0,,1"], "empty value"),
        (["--grid", "seed="], "empty value"),
        (["--grid", "seed=0,0"], "a value is repeated"),
        (["--grid", "seed=0,1", "--grid", "seed=2"], "seed is already an axis"),
        (["--grid", "offline_steps=1", "--grid", "offline-steps=2"], "already an axis"),
        (["--grid", "out-dir=a,b"], "the sweep sets --out-dir itself"),
        (["--grid", "seed=0,1", "--", "--seed", "3"], "both a grid axis and a fixed flag"),
        (["--grid", "seed=0", "--", "--resume"], "the sweep sets it"),
        (["--grid", "seed=0", "--", "--agent", "nope"], "trial seed=0: unknown agent 'nope'"),
        (["--grid", "seed=0", "--", "--bogus", "1"], "trial seed=0: Unrecognized options"),
        (["--grid", "seed=x"], "trial seed=x: Error parsing --seed"),
        (["--grid", "seed=0", "--max-concurrent", "0"], "--max-concurrent must be >= 1"),
        (["--grid", "seed=0", "--cpus-per-trial", "999"], "this machine has"),
        (["--resume"], "no sweep in"),
        (["--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "sweep"
    code = sweep.main(_with_out_dir(argv, out))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("sweep.py: error: ") and message in err, err
    assert err.count("\n") == 1 and not out.exists()


def _with_out_dir(argv: list[str], out: Path) -> list[str]:
    """`--out-dir` among the sweep's own arguments (before a `--`)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return [*argv[:cut], "--out-dir", str(out), *argv[cut:]]


def test_a_sweep_directory_is_not_reused_without_resume_nor_resumed_with_another_grid(
    tmp_path, capsys
):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"grid": {"seed": ["0"]}, "run_flags": []}))
    assert sweep.main(["--grid", "seed=0", "--out-dir", str(out)]) == 2
    assert "is not empty (continue a sweep there with --resume)" in capsys.readouterr().err
    (out / "tune").mkdir()  # no Tune experiment in it: nothing to restore
    assert sweep.main(["--resume", "--out-dir", str(out)]) == 2
    assert "--resume: no sweep in" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json", "tune"]


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert sweep.main(["--grid", "seed=0", "--out-dir", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err == (
        'sweep.py: error: needs Ray: pip install "interpolant_rl[sweep]"\n'
    )
    assert not (tmp_path / "s").exists()
