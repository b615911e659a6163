"""Gym-MuJoCo locomotion tasks in run.py: D4RL-format files (a D4RL name) and online-only runs
(a gymnasium id), evaluated with D4RL's normalised score."""

import json
import re
import time

import gymnasium
import numpy as np
import pytest

from experiments import run
from interpolant_rl import data


TINY = dict(width=16, depth=1, batch_size=16, eval_episodes=1, updates_per_call=10)


def _write_d4rl_file(path, env_id="Hopper-v5", episodes=3, steps=40):
    """A D4RL-layout file of random-action episodes (each cut by a timeout or a fall)."""
    import h5py

    env = gymnasium.make(env_id)
    rng = np.random.default_rng(0)
    rows = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for episode in range(episodes):
        observation, _ = env.reset(seed=episode)
        for t in range(steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            following, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(
                rows,
                (observation, action, reward, terminated, truncated or t == steps - 1),
                strict=True,
            ):
                rows[key].append(value)
            observation = following
            if terminated or truncated:
                break
    with h5py.File(path, "w") as file:
        for key, values in rows.items():
            file[key] = np.asarray(values, np.float32 if key != "terminals" else bool)


def test_names():
    assert data.parse_locomotion_name("walker2d-medium-expert-v2") == dict(
        env="walker2d", env_id="Walker2d-v5", dataset="medium-expert"
    )
    assert data.parse_locomotion_name("Ant-v5") == dict(env="ant", env_id="Ant-v5", dataset=None)
    for other in ("cube-single-play-singletask-task1-v0", "Hopper-v4", "hopper-medium-v3"):
        assert data.parse_locomotion_name(other) is None
    with pytest.raises(ValueError, match="not a locomotion task"):
        data.make_locomotion_env("Humanoid-v5")


def test_an_offline_run_on_a_d4rl_file_reports_the_normalised_score(tmp_path, capsys):
    _write_d4rl_file(tmp_path / "hopper-medium-v2.hdf5")
    config = run.RunConfig(
        agent="moma_ql",
        env="hopper-medium-v2",
        data_dir=tmp_path,
        out_dir=tmp_path / "run",
        offline_steps=20,
        eval_interval=10,
        **TINY,
    )
    resolved = run.resolve(config)
    assert (resolved.chunk, resolved.discount, resolved.num_critics) == (1, 0.99, 2)
    assert run.main(config) == 0
    assert "moma_ql on hopper-medium-v2: normalized score" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").open()]
    assert [row["step"] for row in rows] == [10, 20]
    for row in rows:
        score = data.d4rl_normalized_score("hopper-medium-v2", row["episode_return"])
        assert row["normalized_score"] == pytest.approx(score)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final"]["normalized_score"] == pytest.approx(rows[-1]["normalized_score"])


def test_an_online_only_run_of_two_seeds_on_a_gymnasium_id(tmp_path):
    config = run.RunConfig(
        agent="rlpd",
        env="Hopper-v5",
        out_dir=tmp_path / "run",
        online_steps=40,
        random_action_steps=20,
        eval_interval=20,
        num_seeds=2,
        video_episodes=1,
        **TINY,
    )
    assert run.main(config) == 0
    # one recorded evaluation episode per seed and evaluation, rendered headless (EGL)
    from interpolant_rl.train._video import read_mp4

    for seed in (0, 1):
        videos = sorted((tmp_path / "run" / f"seed{seed}" / "videos").glob("*.mp4"))
        assert [v.name for v in videos] == ["step20-episode0.mp4", "step40-episode0.mp4"]
        frames = read_mp4(videos[0])
        assert frames.ndim == 4 and frames.shape[-1] == 3 and len(frames) >= 2
        assert frames.std() > 0  # a picture, not a blank
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["final"]["normalized_score"]) == 2
    assert "normalized_score_mean" in summary["final"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "seed1" / "eval.jsonl").open()]
    assert [row["step"] for row in rows] == [20, 40] and "normalized_score" in rows[0]


def test_locomotion_mistakes_are_one_line(tmp_path, capsys):
    for changes, message in (
        (dict(env="Hopper-v5", agent="fql"), "Hopper-v5 has no offline dataset"),
        # no file, and no behaviour policies to build it from (hopper's ship in the package)
        (
            dict(env="hopper-medium-v2", behaviour_dir=tmp_path / "no-policies"),
            "hopper-medium-v2.hdf5 is needed",
        ),
        (dict(env="hopper-medium-v2", sparse=True), "--sparse applies to OGBench"),
        (dict(env="hopper-large-v2"), "not a singletask OGBench dataset name"),
    ):
        config = run.RunConfig(data_dir=tmp_path / "none", out_dir=tmp_path / "run", **changes)
        assert run.main(config) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "run").exists()
    _write_d4rl_file(tmp_path / "hopper-medium-v2.hdf5", env_id="Walker2d-v5")
    with pytest.raises(ValueError, match="observations of dimension 17"):
        data.load_locomotion("hopper-medium-v2", tmp_path)
    # a D4RL-format file that was not generated here is never overwritten by a generation
    with pytest.raises(ValueError, match="was not generated here"):
        data.generate_locomotion_dataset("hopper-medium-v2", tmp_path, num_steps=10)


def test_behaviour_policies_build_every_d4rl_style_dataset(tmp_path, capsys):
    import dataclasses

    from interpolant_rl import agents, train

    tiny = agents.NetworkConfig(16, 1)
    config = dataclasses.replace(
        train.SAC_CONFIG,
        actor=tiny,
        critic=dataclasses.replace(train.SAC_CONFIG.critic, width=16, depth=1),
    )
    index = train.train_behaviour_policy(
        "hopper",
        tmp_path / "policies",
        online_steps=60,
        evaluation_interval=20,
        evaluation_episodes=1,
        random_action_steps=20,
        medium_score=-100.0,  # the first evaluated snapshot is "medium"
        config=config,
    )
    assert [s.step for s in index.snapshots] == [0, 20, 40, 60]
    assert (index.medium_step, index.expert_step) == (20, 60)
    assert set(index.measured) == {"random", "medium", "expert"}
    assert (
        index.measured["expert"]["episodes"]
        == 1
        == len(index.measured["expert"]["normalized_scores"])
    )
    assert data.read_behaviour_index(tmp_path / "policies", "hopper") == index
    # in parts: a time limit stops at the first episode end after it (no index yet), --resume
    # continues the same SAC run and keeps the snapshots of both parts
    parts = dict(
        online_steps=60,
        evaluation_interval=20,
        evaluation_episodes=1,
        random_action_steps=20,
        medium_score=-100.0,
        config=config,
    )
    stopped = train.train_behaviour_policy(
        "hopper",
        tmp_path / "parts",
        time_limit_s=0.05,
        progress=lambda *_: time.sleep(0.06),
        **parts,
    )
    assert stopped is None and not (tmp_path / "parts" / "hopper-behaviour.json").exists()
    run_dir = train.behaviour_run_dir(tmp_path / "parts", "Hopper-v5")
    assert run_dir == tmp_path / "parts" / "sac-hopper" and (run_dir / "checkpoint.eqx").exists()
    # --finish: the interrupted run's index as it stands, its last snapshot the expert
    finished = train.train_behaviour_policy("hopper", tmp_path / "parts", finish=True, **parts)
    assert 0 < finished.expert_step == finished.snapshots[-1].step < 60
    assert finished.config["trained_steps"] == finished.expert_step
    assert finished.config["schedule"]["online_steps"] == 60
    assert data.read_behaviour_index(tmp_path / "parts", "hopper") == finished
    chosen = train.train_behaviour_policy(
        "hopper", tmp_path / "parts", finish=True, expert_step=0, **parts
    )
    assert chosen.expert_step == 0 and chosen.config["expert_choice"] == "step 0, chosen"
    with pytest.raises(ValueError, match="expert_step 30: no snapshot there"):
        train.train_behaviour_policy(
            "hopper", tmp_path / "parts", finish=True, expert_step=30, **parts
        )
    resumed = train.train_behaviour_policy("hopper", tmp_path / "parts", resume=True, **parts)
    scores = {s.step: s.normalized_score for s in resumed.snapshots}
    assert {s.step: s.normalized_score for s in index.snapshots}.items() <= scores.items()
    assert len(scores) == 5 and resumed.expert_step == 60  # plus the snapshot at the stop
    with pytest.raises(ValueError, match="no checkpoint"):
        train.train_behaviour_policy("hopper", tmp_path / "none", resume=True, **parts)
    sizes = {}
    for dataset in ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay"):
        name = f"hopper-{dataset}-v2"
        data.generate_locomotion_dataset(
            name, tmp_path / "data", num_steps=50, policies_dir=tmp_path / "policies"
        )
        _, transitions = data.load_locomotion(
            name, tmp_path / "data", num_steps=50, policies_dir=tmp_path / "policies"
        )
        sizes[dataset] = int(np.asarray(transitions.rewards).shape[0])
    # D4RL's recipe: one policy per level, the replays as long as training until medium / the end
    assert sizes == {
        "random": 50,
        "medium": 50,
        "expert": 50,
        "medium-replay": 20,
        "medium-expert": 100,
        "full-replay": 60,
    }
    import h5py

    def observations(name):
        with h5py.File(tmp_path / "data" / f"{name}.hdf5") as file:
            return np.asarray(file["observations"])

    both = observations("hopper-medium-expert-v2")
    np.testing.assert_array_equal(both[:50], observations("hopper-medium-v2"))  # seeded rollouts
    with pytest.raises(ValueError, match="generated with"):
        data.generate_locomotion_dataset(
            "hopper-medium-v2", tmp_path / "data", num_steps=60, policies_dir=tmp_path / "policies"
        )
    # a dataset built from one behaviour run is never reused for another one
    with pytest.raises(ValueError, match="built from other behaviour policies"):
        data.load_locomotion("hopper-medium-v2", tmp_path / "data", policies_dir=tmp_path / "parts")
    with pytest.raises(ValueError, match="built from other behaviour policies"):
        data.generate_locomotion_dataset(
            "hopper-medium-v2", tmp_path / "data", num_steps=50, policies_dir=tmp_path / "parts"
        )
    # run.py builds a missing dataset from the behaviour policies, then trains on it
    config = run.RunConfig(
        agent="moma_ql",
        env="hopper-expert-v2",
        data_dir=tmp_path / "fresh",
        behaviour_dir=tmp_path / "policies",
        dataset_steps=40,
        out_dir=tmp_path / "run",
        offline_steps=20,
        eval_interval=10,
        **TINY,
    )
    assert run.main(config) == 0
    assert "normalized score" in capsys.readouterr().out
    assert json.loads((tmp_path / "fresh" / "hopper-expert-v2.meta.json").read_text())["size"] == 40


def test_the_behaviour_training_command_at_a_tiny_budget(tmp_path, capsys):
    from experiments import train_behaviour

    tiny = ["--width", "16", "--depth", "1", "--evaluation-episodes", "1"]
    argv = [
        *("--env", "hopper", "--out-dir", str(tmp_path / "policies")),
        *("--online-steps", "40", "--evaluation-interval", "20", "--random-action-steps", "20"),
        *("--medium-score", "-100", "--datasets", "medium", "--dataset-steps", "30"),
        *("--data-dir", str(tmp_path / "data"), *tiny),
        *("--ship-to", str(tmp_path / "shipped")),
    ]
    # in two parts: a time limit stops it after its first episode, --resume finishes it, and
    # the resumed run's progress bar starts at the step it stopped at, not at 0
    assert train_behaviour.main([*argv, "--time-limit", "0.001"]) == 0
    stopped = capsys.readouterr()
    assert "stopped by --time-limit" in stopped.out
    assert train_behaviour.main([*argv, "--resume"]) == 0
    out, err = capsys.readouterr()
    first_count = re.search(r"SAC hopper:.*?\|\s*(\d+)/40", err)
    assert first_count is not None and int(first_count.group(1)) > 0
    # the stop kept a snapshot at its episode end, before step 20: that one is medium (score > -100)
    medium = re.search(r"medium = step (\d+), expert = step 40", out)
    assert medium is not None and 0 < int(medium.group(1)) < 20
    assert "shipped 3 snapshots" in out  # 0, the stop's (up to medium) and 40 (the expert)
    assert data.read_behaviour_index(tmp_path / "shipped", "hopper").expert_step == 40
    policies = dict(policies_dir=tmp_path / "policies")
    assert data.load_locomotion("hopper-medium-v2", tmp_path / "data", **policies)[1].size == 30
    # --finish with no run to finish: one line, exit 2
    finish = ["--env", "hopper", "--out-dir", str(tmp_path / "none"), "--finish", *tiny]
    assert train_behaviour.main(finish) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "train_behaviour.py: error: --finish: no checkpoint"
    )


def test_shipping_thins_the_snapshots_after_medium(tmp_path):
    """`ship_behaviour_policies`: every snapshot up to medium, then the multiples of
    `keep_every` and the expert, nothing after the expert; bytes copied as they are."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    snapshots = []
    for step in range(0, 101, 10):
        (run_dir / f"hopper-step{step}.eqx").write_bytes(f"weights {step}".encode())
        snapshots.append(data.BehaviourSnapshot(step, f"hopper-step{step}.eqx", float(step)))
    index = data.BehaviourIndex(
        "hopper", 11, 3, 8, 1, 0, {"note": "by hand"}, tuple(snapshots), 20, 80, {}
    )
    from interpolant_rl.data._locomotion_datasets import write_behaviour_index

    write_behaviour_index(run_dir, index)
    shipped = data.ship_behaviour_policies(run_dir, "hopper", tmp_path / "out", keep_every=30)
    steps = [s.step for s in shipped.snapshots]
    assert steps == [0, 10, 20, 30, 60, 80]
    again = data.read_behaviour_index(tmp_path / "out", "hopper")
    assert again == shipped and again.config == {"note": "by hand", "shipped_every": 30}
    assert (again.medium_step, again.expert_step) == (20, 80)
    for step in steps:
        assert (
            tmp_path / "out" / f"hopper-step{step}.eqx"
        ).read_bytes() == f"weights {step}".encode()
    assert not (tmp_path / "out" / "hopper-step40.eqx").exists()
    everything = data.ship_behaviour_policies(run_dir, "hopper", tmp_path / "all")
    assert [s.step for s in everything.snapshots] == list(range(0, 81, 10))
    with pytest.raises(ValueError, match="keep_every"):
        data.ship_behaviour_policies(run_dir, "hopper", tmp_path / "bad", keep_every=0)
