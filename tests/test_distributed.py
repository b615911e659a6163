"""Multi-process (multi-host) runs: two local CPU processes joined through JAX's distributed
runtime each train their block of the members (seeds x swept values) and write their own
directories and checkpoints; every member's run equals the same member's in a one-process run,
bit for bit, and process 0 writes the aggregate."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import run
from interpolant_rl import train


ROOT = Path(__file__).resolve().parents[1]


def _args(data_dir: Path) -> list[str]:
    return [
        "--agent", "fql", "--dataset-episodes", "2", "--width", "16", "--depth", "1",
        "--batch-size", "16", "--offline-steps", "20", "--eval-interval", "10",
        "--eval-episodes", "1", "--updates-per-call", "10", "--workers", "1",
        "--num-seeds", "2", "--sweep", "alpha=3,10", "--data-dir", str(data_dir),
    ]  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("_time_s")}
        for line in path.read_text().splitlines()
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def test_two_processes_train_their_members_as_one_process_does(tmp_path):
    args = _args(tmp_path / "data")
    # the one-process run (this process), which also generates the dataset both processes read
    assert run.cli([*args, "--out-dir", str(tmp_path / "one")]) == 0
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, str(ROOT / "experiments" / "run.py"), *args]
    command += ["--out-dir", str(tmp_path / "two"), "--coordinator", f"localhost:{port}"]
    command += ["--num-processes", "2"]
    processes = [
        subprocess.Popen(
            [*command, "--process-id", str(p)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in (0, 1)
    ]
    try:
        outputs = [process.communicate(timeout=400) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    # process p trained block p of the members, in its own directory with its own checkpoint
    blocks = {0: "alpha=3", 1: "alpha=10"}
    for p, configuration in blocks.items():
        header = train.read_checkpoint_header(tmp_path / "two" / f"process{p}" / "checkpoint.eqx")
        assert header["members"] == [f"{configuration}/seed0", f"{configuration}/seed1"]
        for seed in (0, 1):
            member = tmp_path / "two" / f"process{p}" / configuration / f"seed{seed}"
            single = tmp_path / "one" / configuration / f"seed{seed}"
            for stream in ("train", "eval"):
                assert _rows(member / f"{stream}.jsonl") == _rows(single / f"{stream}.jsonl")
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert two["final"] == one["final"] and two["processes"] == 2
    assert "over 2 seeds and 2 processes" in outputs[0][0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "localhost:1"], "needs all of coordinator, num_processes and process_id"),
        (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"], "process_id must lie in [0, 2)"),
        (["--coordinator", "localhost:1", "--num-processes", "3", "--process-id", "0"], "4 members (seeds x swept values) cannot be split evenly over --num-processes 3"),
    ],
)  # fmt: skip
def test_bad_process_flags_fail_in_one_line(tmp_path, capsys, flags, message):
    code = run.cli([*_args(tmp_path / "data"), "--out-dir", str(tmp_path / "x"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
