"""MetricsLogger: CSV/JSONL rows, resume truncation, and the optional TensorBoard output."""

import json

import pytest
from helpers import read_scalars

from interpolant_rl.train import MetricsLogger


def test_tensorboard_scalars_match_the_jsonl_rows(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log("train", dict(step=10, critic_loss=1.5, online=1))
    logger.log("eval", dict(step=10, success=0.25, episodes=4))
    logger.close()
    scalars = read_scalars(tmp_path)
    assert ("train/critic_loss", 10, 1.5) in scalars
    assert ("train/online", 10, 1.0) in scalars
    assert ("eval/success", 10, 0.25) in scalars
    assert not any(tag == "train/step" for tag, _, _ in scalars)
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert rows == [dict(step=10, critic_loss=1.5, online=1)]


def test_resume_purges_later_events_and_does_not_duplicate_kept_rows(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        logger.log("train", dict(step=step, loss=float(step)))
    logger.close()
    resumed = MetricsLogger(tmp_path, resume_step=2, tensorboard=True)
    resumed.log("train", dict(step=3, loss=30.0))
    resumed.close()
    scalars = read_scalars(tmp_path)
    # the first run's three rows, then the purge marker at the checkpoint step, then the new row
    assert scalars.count(("<purge>", 2, None)) == 1
    purge = scalars.index(("<purge>", 2, None))
    assert [s for s in scalars[:purge] if s[0] == "train/loss"] == [
        ("train/loss", k, float(k)) for k in (1, 2, 3)
    ]
    assert [s for s in scalars[purge:] if s[0] == "train/loss"] == [("train/loss", 3, 30.0)]
    assert [json.loads(line)["loss"] for line in (tmp_path / "train.jsonl").open()] == [
        1.0,
        2.0,
        30.0,
    ]


def test_fresh_run_removes_old_event_files(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log("train", dict(step=1, loss=1.0))
    logger.close()
    logger = MetricsLogger(tmp_path, tensorboard=True)
    logger.log("train", dict(step=1, loss=2.0))
    logger.close()
    assert [s for s in read_scalars(tmp_path) if s[0] == "train/loss"] == [("train/loss", 1, 2.0)]


def test_missing_tensorboardx_fails_before_touching_files(tmp_path, monkeypatch):
    import builtins

    (tmp_path / "train.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name == "tensorboardX":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    with pytest.raises(ImportError, match=r"interpolant_rl\[tensorboard\]"):
        MetricsLogger(tmp_path, tensorboard=True)
    assert (tmp_path / "train.jsonl").read_text() == '{"step": 1, "loss": 1.0}\n'


def test_an_offline_wandb_run_gets_every_row_and_resumes_the_same_run(tmp_path):
    from interpolant_rl.train import WandbConfig

    settings = WandbConfig(project="tests", name="tiny", mode="offline")
    logger = MetricsLogger(tmp_path, wandb=settings, config=dict(agent="fql"))
    logger.log("train", dict(step=10, critic_loss=1.5))
    logger.log("eval", dict(step=10, success=0.25))
    logger.close()
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    resumed = MetricsLogger(tmp_path, resume_step=10, wandb=settings)
    resumed.log("train", dict(step=20, critic_loss=0.5))
    resumed.close()
    assert (tmp_path / "wandb_id.txt").read_text().strip() == run_id  # the same W&B run
    # a part started in the same second as the last gets a "-1" suffix
    records = sorted((tmp_path / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}*.wandb"))
    assert len(records) == 2  # the first part and the resumed one, under one id
    # the records are protobufs: the metric names stand in them as text
    first = records[0].read_bytes()
    assert b"train/critic_loss" in first and b"eval/success" in first and b"tiny" in first
    assert [json.loads(line)["step"] for line in (tmp_path / "train.jsonl").open()] == [10, 20]
    with pytest.raises((ValueError, TypeError)):  # TypeError: the test run's runtime type checks
        WandbConfig(mode="cloud")


def test_videos_round_trip_and_reach_wandb(tmp_path):
    import numpy as np

    from interpolant_rl.train import WandbConfig
    from interpolant_rl.train._video import read_mp4, write_mp4

    # odd sizes are padded to even ones (YUV 4:2:0), the frame count is kept
    frames = np.zeros((12, 33, 41, 3), np.uint8)
    frames[:, :, :20] = np.arange(12, dtype=np.uint8)[:, None, None, None] * 20
    write_mp4(tmp_path / "v.mp4", frames, fps=30)
    back = read_mp4(tmp_path / "v.mp4")
    assert back.shape == (12, 34, 42, 3)
    assert abs(int(back[6, 10, 5, 0]) - 120) < 12 and abs(int(back[6, 10, 35, 0])) < 12  # lossy
    logger = MetricsLogger(
        tmp_path / "run", tensorboard=True, wandb=WandbConfig(project="tests", mode="offline")
    )
    logger.video("eval", 10, "video0", tmp_path / "v.mp4")
    logger.close()
    run_id = (tmp_path / "run" / "wandb_id.txt").read_text().strip()
    (record,) = (tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}*/run-{run_id}*.wandb")
    assert b"eval/video0" in record.read_bytes()
