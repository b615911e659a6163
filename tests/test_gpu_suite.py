"""`benchmarks/gpu_suite.sh --dry-run`: the GPU suite's whole path on CPU at tiny sizes (so it
cannot rot between GPU loans), its budget enforcement, and its refusal of bad options."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
STEPS = ["train_step", "action_latency", "multi_seed", "dataset", "training_run"]


def suite(*args, timeout=600):
    return subprocess.run(
        ["bash", str(SUITE), "--python", sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_dry_run_runs_every_step_and_writes_every_file(tmp_path):
    result = suite("--dry-run", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "suite.json").read_text())
    assert report["dry_run"] and report["backend"] == "cpu" and report["budget_s"] == 300
    assert {s["step"]: s["status"] for s in report["steps"]} == dict.fromkeys(STEPS, "ok")
    assert report["seconds_in_budget"] <= report["budget_s"]
    for name in ("train_step", "action_latency", "multi_seed"):
        benchmark = json.loads((tmp_path / f"{name}.json").read_text())
        assert benchmark["benchmark"] == name
        assert all(r.get("status", "ok") == "ok" for r in benchmark["results"])
    train_step = json.loads((tmp_path / "train_step.json").read_text())
    assert train_step["matmul_peak"]["gflops"] > 0
    assert [r["agent"] for r in train_step["results"]] == ["qam"]
    run = json.loads((tmp_path / "training_run.json").read_text())
    assert run["status"] == "ok" and run["completed"] and run["steps"] == run["target_steps"]
    assert 0.0 <= run["success"] <= 1.0
    assert 0.0 <= run["loop_idle_fraction"] < 1.0 and run["ms_per_update_in_loop"] > 0
    assert run["device_idle_fraction"] is None  # no nvidia-smi on a CPU machine
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("GPU suite dry run on CPU") and "**training run**" in summary


def test_the_budget_stops_steps_and_the_suite_still_reports(tmp_path):
    result = suite("--dry-run", "--budget", "2", "--out", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "suite.json").read_text())
    statuses = {s["step"]: s["status"] for s in report["steps"]}
    assert statuses["train_step"] in ("timed_out", "skipped")
    assert statuses["training_run"] == "skipped" and statuses["dataset"] == "skipped"
    # a step stopped at its limit leaves no result file behind
    assert not (tmp_path / "train_step.json").exists()
    assert "dry run" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dry-run", "--budget", "481"], "--budget must lie in 1..480"),
        (["--dry-run", "--budget", "ten"], "--budget must be a whole number"),
        (["--dry-run", "--wheelhouse", "/nonexistent"], "is not a directory"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, tmp_path):
    result = subprocess.run(
        ["bash", str(SUITE), *args, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("gpu_suite.sh: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_cpu_machine_is_refused_without_dry_run(tmp_path):
    result = subprocess.run(
        ["bash", str(SUITE), "--skip-install", "--python", sys.executable, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not gpu: use --dry-run on a CPU machine" in result.stderr
