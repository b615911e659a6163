"""Run directories cannot be mixed up: resume checks the recorded configuration, a fresh run
never starts on another run's files, one process per run directory (and per dataset), corrupt
files and failures give one true line, no litter, a quiet console."""

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import run
from interpolant_rl import agents, data, train


ROOT = Path(__file__).resolve().parents[1]
TINY = dict(width=32, depth=1, batch_size=32, offline_steps=600, eval_interval=100)


def _recorded_run(out_dir: Path, step: int = 300, **changes) -> run.RunConfig:
    """A checkpoint in `out_dir` with the header `run.py` writes for `RunConfig(**changes)`
    (a stand-in state: every check reads the header only, before anything is compiled)."""
    config = run.resolve(run.RunConfig(out_dir=out_dir, **{**TINY, **changes}))
    agent_cfg = run.agent_config(config)
    header = dict(
        run=run._as_json(dataclasses.asdict(config)),
        agent_config=repr(agent_cfg),
        agent_settings=run.agent_settings(agent_cfg),
        seeds=[config.seed],
        step=step,
        train_config=dict(offline_steps=config.offline_steps),
    )
    train.save_checkpoint(out_dir / "checkpoint.eqx", jnp.zeros(1), header)
    return config


def _main(capsys, out_dir, **changes) -> tuple[int, str]:
    code = run.main(run.RunConfig(out_dir=out_dir, **{**TINY, **changes}))
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "changes, named",
    [
        (dict(env="cube-single-play-singletask-task2-v0"), "env='cube-single-play-singletask-task1-v0', not 'cube-single-play-singletask-task2-v0' (--env)"),
        (dict(seed=5), "a checkpoint of seeds [0], not one of seeds [5]"),
        (dict(tau=3.0), "tau=None, not 3.0 (--tau)"),
        (dict(width=64), "width=32, not 64 (--width)"),
        (dict(agent="fql"), "agent='qam', not 'fql' (--agent)"),
        (dict(dataset_episodes=7), "dataset_episodes=100, not 7 (--dataset-episodes)"),
        (dict(offline_steps=200), "--offline-steps may change only before"),
        (dict(online_steps=50), "online_steps=0, not 50 (--online-steps)"),
    ],
)  # fmt: skip
def test_resume_refuses_another_configuration_in_one_line(tmp_path, capsys, changes, named):
    _recorded_run(tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    code, err = _main(capsys, tmp_path / "run", resume=True, data_dir=tmp_path / "data", **changes)
    assert code == 2 and len(err.splitlines()) == 1
    assert named in err, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before  # nothing touched
    assert not (tmp_path / "data").exists()  # stopped before the dataset


def test_resume_names_a_changed_agent_setting(tmp_path):
    config = _recorded_run(tmp_path)
    config = dataclasses.replace(config, resume=True)
    run.check_resume(config, run.agent_config(config))  # the same: accepted
    changed = dataclasses.replace(run.agent_config(config), tau=7.0)
    with pytest.raises(ValueError, match=r"tau=1\.0, not 7\.0 \(--qam\.tau\)"):
        run.check_resume(config, changed)


def test_resume_accepts_what_may_change(tmp_path):
    config = _recorded_run(tmp_path, step=300)
    longer = dataclasses.replace(
        config,
        resume=True,
        offline_steps=900,  # the checkpoint (step 300) is inside both offline phases
        eval_interval=50,
        eval_episodes=3,
        updates_per_call=7,
        preset="paper",
    )
    run.check_resume(longer, run.agent_config(config))


def test_a_fresh_run_refuses_a_directory_with_files(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "train.jsonl").write_text('{"step": 1}\n')
    code, err = _main(capsys, tmp_path / "run", data_dir=tmp_path / "data")
    assert code == 2 and len(err.splitlines()) == 1
    assert "already holds a run (train.jsonl)" in err and "--overwrite" in err
    assert (tmp_path / "run" / "train.jsonl").exists() and not (tmp_path / "data").exists()
    code, err = _main(capsys, tmp_path / "run", overwrite=True, resume=True)
    assert code == 2 and "not both" in err


def test_overwrite_clears_everything_and_a_failed_start_leaves_no_directory(tmp_path):
    path = tmp_path / "run"
    _recorded_run(path)
    (path / "seed0").mkdir()
    (path / "seed0" / "eval.jsonl").write_text("{}\n")
    with train.RunDirectory.open(path, "overwrite") as directory:
        assert directory.entries() == []
    fresh = tmp_path / "fresh"
    with train.RunDirectory.open(fresh, "new"):
        assert fresh.is_dir()
    assert not fresh.exists()  # created, left empty, removed again


def test_one_process_per_run_directory(tmp_path, capsys):
    with train.RunDirectory.open(tmp_path / "run", "new"):
        code, err = _main(capsys, tmp_path / "run", data_dir=tmp_path / "data")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"is in use by another run (process {os.getpid()})" in err
    # released: the directory can be taken again
    train.RunDirectory.open(tmp_path / "run", "new").release()


def test_stale_temporaries_of_our_naming_are_removed_on_start(tmp_path):
    stale = tmp_path / ".checkpoint.eqx.ab12_xYz.tmp"
    theirs = tmp_path / ".notes.tmp"
    stale.write_bytes(b"half a checkpoint")
    theirs.write_text("a user's file")
    (tmp_path / "seed3").mkdir()
    (tmp_path / "seed3" / ".eval.csv.k3j4h5g6.tmp").write_text("")
    _recorded_run(tmp_path)
    train.RunDirectory.open(tmp_path, "resume").release()
    assert not stale.exists() and theirs.exists()
    assert not (tmp_path / "seed3" / ".eval.csv.k3j4h5g6.tmp").exists()


def test_metrics_files_with_a_cut_short_last_line_or_corruption(tmp_path, capsys):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"step": 100, "success": 0.5}\n{"step": 200, "succ')
    with pytest.warns(UserWarning, match="dropped a partial last line"):
        assert train.read_rows(path) == [{"step": 100, "success": 0.5}]
    path.write_text('{"step": 100}\nnot json\n{"step": 300}\n')
    with pytest.raises(ValueError, match="eval.jsonl: line 2 is not JSON"):
        train.read_rows(path)
    # through run.py: one line naming the file, before the dataset or any compile
    _recorded_run(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"step": 100}\n[1, 2]\n')
    code, err = _main(capsys, tmp_path, resume=True, data_dir=tmp_path / "data")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'train.jsonl'}: line 2 is not a metrics row" in err


def _dataset_files(directory: Path, train_bytes: bytes) -> None:
    directory.mkdir()
    (directory / "cube-single-play-v0.npz").write_bytes(train_bytes)
    np.savez(directory / "cube-single-play-v0-val.npz", observations=np.zeros((2, 3)))


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_dataset_file_is_named_in_one_line(tmp_path, capsys, damage):
    good = tmp_path / "good.npz"
    arrays = dict(
        observations=np.random.default_rng(0).normal(size=(50, 28)),
        actions=np.zeros((50, 5), np.float32),
        terminals=np.eye(50)[-1],
    )
    np.savez_compressed(good, **arrays)
    whole = good.read_bytes()
    damaged = whole[: len(whole) // 2] if damage == "truncated" else bytes(len(whole))
    _dataset_files(tmp_path / "data", damaged)
    with pytest.raises(ValueError, match="cube-single-play-v0.npz: (not a readable|corrupt)"):
        data.validate_ogbench_file(tmp_path / "data" / "cube-single-play-v0.npz")
    code, err = _main(capsys, tmp_path / "run", data_dir=tmp_path / "data")
    assert code == 2 and len(err.splitlines()) == 1
    assert "cube-single-play-v0.npz" in err
    assert not (tmp_path / "run").exists()  # the failed start left nothing behind


def test_bad_targets_and_values_fail_in_one_line(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for changes, message in (
        (dict(out_dir=a_file), "is a file, not a run directory"),
        (dict(env="cube-single-play-singletask-task9-v0"), "tasks 1-5, not task 9"),
        (dict(tau=float("inf")), "--tau must be finite"),
        (dict(tau=float("nan")), "--tau must be finite"),
        (dict(discount=float("nan")), "--discount must lie in [0, 1]"),
    ):
        code = run.main(run.RunConfig(data_dir=tmp_path / "data", **{**TINY, **changes}))
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_a_full_disk_and_an_interrupted_setup_are_told_truthfully(tmp_path, capsys, monkeypatch):
    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "x"))

    monkeypatch.setattr(run, "_prepare", full_disk)
    code, err = _main(capsys, tmp_path / "run")
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot write" in err and "No space left on device" in err
    assert "no checkpoint was written" in err

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_prepare", interrupted)
    code, err = _main(capsys, tmp_path / "run2")
    assert code == 130 and "interrupted; no checkpoint was written" in err
    assert "saved" not in err


def test_stop_messages_say_what_the_directory_holds(tmp_path, capsys):
    nan = train.NonFiniteLossError("critic_loss is nan at step 10")
    assert run.stopped(nan, tmp_path) == 1
    err = capsys.readouterr().err
    assert "critic_loss is nan" in err and "no checkpoint was written" in err
    assert "kept" not in err
    _recorded_run(tmp_path, step=300)
    assert run.stopped(KeyboardInterrupt(), tmp_path) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds step 300" in err and "--resume" in err


GENERATE = """
import sys
from interpolant_rl import data
spec = data.GenerationSpec("cube-single-play-v0", num_episodes=1, seed=int(sys.argv[2]))
try:
    data.generate_dataset(spec, sys.argv[1])
except ValueError as error:
    print(error, file=sys.stderr)
    sys.exit(2)
"""


def test_concurrent_generations_of_one_dataset_leave_one_consistent_unit(tmp_path):
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", GENERATE, str(tmp_path), str(seed)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "generated with" in refused
    meta = json.loads((tmp_path / "cube-single-play-v0.meta.json").read_text())
    spec = data.GenerationSpec("cube-single-play-v0", 1, meta["spec"]["seed"])
    seeds = data._ogbench_generate._episode_seeds(spec)
    for name, seed in (
        ("cube-single-play-v0.npz", seeds[0]),
        ("cube-single-play-v0-val.npz", seeds[1]),
    ):
        episode = data.generate_episode("cube-single", "play", int(seed))
        with np.load(tmp_path / name) as file:
            np.testing.assert_array_equal(file["observations"], episode["observations"])
    assert not (tmp_path / ".cube-single-play-v0.incomplete").exists()


def test_a_cached_dataset_of_another_size_is_not_used_silently(tmp_path):
    spec = data.GenerationSpec("cube-single-play-v0", num_episodes=1, seed=0)
    data.generate_dataset(spec, tmp_path)
    with pytest.raises(ValueError, match="generated with num_episodes=1, not num_episodes=5"):
        data.load_ogbench("cube-single-play-singletask-task1-v0", tmp_path, num_episodes=5)
    # files beside the marker of an unfinished generation are generated again
    (tmp_path / ".cube-single-play-v0.incomplete").touch()
    (tmp_path / "cube-single-play-v0-val.npz").write_bytes(b"half")
    env, train_data, _ = data.load_ogbench(
        "cube-single-play-singletask-task1-v0", tmp_path, num_episodes=1, seed=0
    )
    assert train_data.size == 1000 and not (tmp_path / ".cube-single-play-v0.incomplete").exists()


def test_a_tiny_cli_run_is_quiet_and_resumes_with_more_steps(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL")}
    command = [
        sys.executable, str(ROOT / "experiments" / "run.py"), "--agent", "fql",
        "--dataset-episodes", "2", "--width", "16", "--depth", "1", "--batch-size", "16",
        "--offline-steps", "20", "--eval-interval", "10", "--eval-episodes", "1",
        "--updates-per-call", "10", "--workers", "2",
        "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stderr.replace("\r", "\n").splitlines()
    assert not [line for line in lines if "warn" in line.lower() or "Error" in line], lines
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    resumed = subprocess.run(
        [*command, "--resume", "--offline-steps", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "eval.jsonl").open()]
    assert steps == [10, 20, 30]


def test_agent_settings_reject_non_finite_values_except_where_infinity_means_something():
    from interpolant_rl.agents.fql import FQLConfig
    from interpolant_rl.agents.qam import QAMConfig
    from interpolant_rl.agents.qam_fql import QAMFQLConfig

    for make in (
        lambda: QAMConfig(tau=float("inf")),
        lambda: FQLConfig(alpha=float("nan")),
        lambda: agents.adam(float("inf")),
        lambda: dataclasses.replace(QAMConfig().critic, rho=float("nan")),
    ):
        with pytest.raises(ValueError, match="must be finite"):
            make()
    assert QAMFQLConfig(alpha=float("inf")).alpha == float("inf")  # Table 5: plain QAM
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        QAMFQLConfig(alpha=float("nan"))


def test_resume_reads_a_setting_the_checkpoint_predates_at_its_default(tmp_path):
    """A checkpoint written before an agent setting existed trained at that setting's default:
    resuming with the default is allowed, with another value it is refused in one line."""
    config, agent_cfg = run.parse(["--agent", "qam", "--out-dir", str(tmp_path)])
    settings = run.agent_settings(agent_cfg)
    del settings["time_sampler"]  # as written before issue 16 added it
    header = dict(step=10, run=run._as_json(dataclasses.asdict(config)), agent_settings=settings)
    train.save_checkpoint(tmp_path / "checkpoint.eqx", {}, header)
    run.check_resume(config, agent_cfg)
    other = dataclasses.replace(agent_cfg, time_sampler="gradient_norm")
    with pytest.raises(ValueError, match="time_sampler='uniform', not 'gradient_norm'"):
        run.check_resume(config, other)
