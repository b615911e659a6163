"""The training loop on a tiny point-mass environment: offline then online, evaluation, logging,
checkpoints, exact resume, and non-finite losses."""

import dataclasses
import json
import shutil
import time

import equinox as eqx
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import read_scalars

from interpolant_rl import agents, train
from interpolant_rl.data import ReplayBuffer, Transitions


class PointMass(gymnasium.Env):
    """x in [-1, 1] moves by 0.2 * action; reward -1 until |x - 0.5| < 0.1 (success)."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = float(self.np_random.uniform(-1, 0)), 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        success = abs(self.x - 0.5) < 0.1  # the pre-step state, as in ogbench >= 1.2
        self.x = float(np.clip(self.x + 0.2 * float(action[0]), -1, 1))
        self.t += 1
        return (
            np.array([self.x], np.float32),
            0.0 if success else -1.0,
            success,
            self.t >= 15,
            {"success": float(success)},
        )


def offline_data(episodes=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = {
        k: []
        for k in (
            "observations",
            "actions",
            "rewards",
            "masks",
            "next_observations",
            "episode_ends",
        )
    }
    env = PointMass()
    for e in range(episodes):
        ob, _ = env.reset(seed=e)
        done = False
        while not done:
            action = np.clip(np.sign(0.5 - ob) + 0.5 * rng.normal(size=1), -1, 1).astype(np.float32)
            next_ob, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            for k, v in zip(
                rows, (ob, action, reward, 1.0 - terminated, next_ob, float(done)), strict=True
            ):
                rows[k].append(v)
            ob = next_ob
    return Transitions(**{k: np.asarray(v) for k, v in rows.items()})


DATA = offline_data()
CONFIG = train.TrainConfig(
    offline_steps=40,
    online_steps=30,
    batch_size=16,
    updates_per_call=10,
    eval_interval=20,
    eval_episodes=2,
    checkpoint_interval=20,
    seed=1,
)


def make_agent(name="fql", horizon=2):
    config = agents.resize(agents.default_config(name), width=16, depth=1, num_critics=2)
    config = agents.override(config, horizon=horizon, discount=0.99)
    if hasattr(config, "flow_steps"):
        config = dataclasses.replace(config, flow_steps=2)
    return agents.make_agent(name, 1, horizon, jax.random.key(0), config)


def _rows(run_dir, stream):
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("_time_s")}
        for line in (run_dir / f"{stream}.jsonl").read_text().splitlines()
    ]


def test_offline_online_run_logs_and_checkpoints(tmp_path):
    config = dataclasses.replace(CONFIG, tensorboard=True)
    agent, evals = train.train(make_agent(), DATA, PointMass(), config, tmp_path)
    # online evaluations happen at the first chunk boundary at or after each interval
    steps = [row["step"] for row in evals]
    assert steps[:2] == [20, 40] and 60 <= steps[2] < 60 + 2  # chunks of h = 2 and steps[3] == 70
    assert all(0.0 <= row["success"] <= 1.0 for row in evals)
    train_rows = _rows(tmp_path, "train")
    assert train_rows[-1]["step"] == 70 and train_rows[-1]["online"] == 1
    header = train.read_checkpoint_header(tmp_path / "checkpoint.eqx")
    assert header["step"] == 70 and header["train_config"]["horizon"] == 2
    # one seed: the run directory itself, a checkpoint with a seed axis of length 1
    assert header["seeds"] == [CONFIG.seed] and header["seed_steps"] == [70]
    assert not any(path.name.startswith("seed") for path in tmp_path.iterdir())
    assert (tmp_path / "eval.csv").read_text().splitlines()[0].startswith("step,success")
    tensorboard = [(step, value) for tag, step, value in read_scalars(tmp_path)]
    tags = {tag for tag, _, _ in read_scalars(tmp_path)}
    assert {"train/critic_loss", "eval/success"} <= tags
    assert [(s, v) for t, s, v in read_scalars(tmp_path) if t == "eval/success"] == [
        (row["step"], pytest.approx(row["success"])) for row in evals
    ]
    assert tensorboard


class RecordingPointMass(PointMass):
    """Records every reset that interrupts an episode still running."""

    def reset(self, *, seed=None, options=None):
        if getattr(self, "running", False):
            self.interrupted.append(self.t)
        self.running = True
        return super().reset(seed=seed, options=options)

    def step(self, action):
        result = super().step(action)
        self.running = not (result[2] or result[3])
        return result


def test_evaluation_never_interrupts_an_online_episode(tmp_path):
    env = RecordingPointMass()
    env.interrupted = []
    config = dataclasses.replace(CONFIG, eval_interval=7)  # evaluations fall mid-episode
    _, evals = train.train(make_agent(), DATA, env, config, tmp_path)
    assert len(evals) >= 8 and env.interrupted == []
    assert train.evaluation_env(env) is not env and train.evaluation_env(None) is None


def test_resume_continues_exactly(tmp_path):
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full, _ = train.train(make_agent(), DATA, PointMass(), CONFIG, full_dir)

    def interrupt(steps, info):
        interrupt.done += steps
        if interrupt.done == 30:  # after the third offline call, between two checkpoints
            raise KeyboardInterrupt

    interrupt.done = 0
    with pytest.raises(KeyboardInterrupt):
        train.train(make_agent(), DATA, PointMass(), CONFIG, cut_dir, progress=interrupt)
    assert train.read_checkpoint_header(cut_dir / "checkpoint.eqx")["step"] == 30
    legacy_dir = tmp_path / "legacy"
    shutil.copytree(cut_dir, legacy_dir)
    _to_legacy_checkpoint(legacy_dir / "checkpoint.eqx")
    for run_dir in (cut_dir, legacy_dir):
        resumed, _ = train.train(make_agent(), DATA, PointMass(), CONFIG, run_dir, resume=True)
        for a, b in zip(
            jax.tree.leaves(eqx_arrays(full)), jax.tree.leaves(eqx_arrays(resumed)), strict=True
        ):
            np.testing.assert_array_equal(a, b)
        assert _rows(full_dir, "train") == _rows(run_dir, "train")
        assert _rows(full_dir, "eval") == _rows(run_dir, "eval")

    # a time limit ends the run at the next call boundary, evaluated and checkpointed there;
    # resuming without it finishes the same run
    limited_dir = tmp_path / "limited"
    limited = dataclasses.replace(CONFIG, time_limit_s=0.05)
    _, evals = train.train(
        make_agent(), DATA, PointMass(), limited, limited_dir, progress=lambda *_: time.sleep(0.06)
    )
    assert [row["step"] for row in evals] == [10]
    assert train.read_checkpoint_header(limited_dir / "checkpoint.eqx")["step"] == 10
    resumed, _ = train.train(make_agent(), DATA, PointMass(), CONFIG, limited_dir, resume=True)
    for a, b in zip(
        jax.tree.leaves(eqx_arrays(full)), jax.tree.leaves(eqx_arrays(resumed)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert _rows(full_dir, "train") == _rows(limited_dir, "train")
    assert _rows(limited_dir, "eval") == [_rows(limited_dir, "eval")[0], *_rows(full_dir, "eval")]
    # offline rows time the call and the host's work before it (the loop's own idle time)
    first, second = (json.loads(line) for line in (full_dir / "train.jsonl").open().readlines()[:2])
    assert first["host_time_s"] == 0.0 and second["host_time_s"] >= 0.0
    assert second["call_time_s"] > 0.0
    with pytest.raises(ValueError, match="time_limit_s must be > 0"):
        dataclasses.replace(CONFIG, time_limit_s=0.0)


def _to_legacy_checkpoint(path):
    """Rewrite a one-seed checkpoint as `train` wrote it before it ran on a seed axis
    (interpolant_rl 0.1.0): one unstacked agent and buffer, no per-seed counters."""

    like = (make_agent(), ReplayBuffer.create(1, 1, CONFIG.online_steps))
    stacked, header = train.load_checkpoint(path, _map_arrays(lambda x: x[None], like))
    per_seed = ("seeds", "seed_steps", "seed_episodes", "format", "format_version", "library")
    header = {k: v for k, v in header.items() if k not in per_seed}
    train.save_checkpoint(path, _map_arrays(lambda x: x[0], stacked), header)


def _map_arrays(fn, tree):
    return jax.tree.map(lambda x: fn(x) if eqx.is_array(x) else x, tree)


def eqx_arrays(tree):
    return eqx.filter(tree, eqx.is_array)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    bad = Transitions(
        DATA.observations,
        DATA.actions,
        DATA.rewards,
        DATA.masks,
        DATA.next_observations,
        DATA.episode_ends,
    )
    config = dataclasses.replace(CONFIG, online_steps=0)
    agent = make_agent()
    # a NaN learning signal: rewards become NaN after the arrays were validated
    bad = eqx.tree_at(lambda t: t.rewards, bad, jnp.full_like(bad.rewards, jnp.nan))
    with pytest.raises(train.NonFiniteLossError, match="critic_loss"):
        train.train(agent, bad, PointMass(), config, tmp_path)
    assert not (tmp_path / "checkpoint.eqx").exists()


def test_checkpoint_errors(tmp_path):
    path = tmp_path / "c.eqx"
    path.write_text("garbage\n")
    with pytest.raises(ValueError, match="not an interpolant_rl checkpoint"):
        train.read_checkpoint_header(path)
    train.save_checkpoint(path, (jnp.ones(3), jax.random.key(4)), {"step": 1})
    (value, key), header = train.load_checkpoint(path, (jnp.zeros(3), jax.random.key(0)))
    np.testing.assert_array_equal(value, 1.0)
    assert jax.random.key_data(key).tolist() == jax.random.key_data(jax.random.key(4)).tolist()
    with pytest.raises(ValueError, match="does not match"):
        train.load_checkpoint(path, (jnp.zeros(4), jax.random.key(0)))
    with pytest.raises(ValueError, match="must be >= 0"):
        train.TrainConfig(offline_steps=-1)
    with pytest.raises(ValueError, match="horizon"):
        agents.CriticConfig(horizon=0)  # the chunk length is the critic's, checked there


def test_parallel_evaluation_episodes_match_one_at_a_time():
    # episode e acts with its own key, so running the episodes side by side (one batched act
    # call per chunk) changes only the rounding of the batched products, not the episodes
    agent = make_agent()
    alone = train.evaluate(agent, PointMass(), 5, 2, seed=3, parallel_episodes=1)
    for width in (2, None):  # slots reused for later episodes; all five at once
        side_by_side = train.evaluate(agent, PointMass(), 5, 2, seed=3, parallel_episodes=width)
        assert side_by_side["success"] == alone["success"]
        assert side_by_side["episode_return"] == pytest.approx(alone["episode_return"], rel=1e-6)
    envs = train.evaluation_envs(PointMass(), 3)
    assert len(envs) == 3 and len({id(env) for env in envs}) == 3
    with pytest.raises(ValueError, match="parallel_episodes must be >= 1"):
        dataclasses.replace(CONFIG, parallel_episodes=0)
