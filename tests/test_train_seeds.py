"""`train_seeds`: N seeds trained as one program give each seed the run it would have next to any
other seeds, match single-seed `train` runs, write one run directory per seed, resume exactly
(offline and from an online checkpoint), and shard the seed axis over several devices."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from test_train import CONFIG as TRAIN_CONFIG, DATA, PointMass

from interpolant_rl import agents, train


# A seed's run is the same bits next to any other seeds (N >= 2: one vmapped program). Alone
# (`train`, N = 1) it runs the unvmapped single-seed program: the same computations, but XLA lays
# out and sums a matmul batched over seeds in another order than a single one (it does so too
# for a vmap over a seed axis of length 1), so the two agree to float32 rounding, not bit for bit
# (observed: <= 2e-6 relative after CONFIG's 70 updates).
RTOL, ATOL = 1e-4, 1e-6
# checkpoints every 10 steps: also one at the first online episode end (step 55), which the
# online resume test starts from
CONFIG = dataclasses.replace(TRAIN_CONFIG, checkpoint_interval=10)
SEEDS = [CONFIG.seed, CONFIG.seed + 1]  # train_seeds trains config.seed + s
TESTS = Path(__file__).resolve().parent


class DensePointMass(PointMass):
    """PointMass rewarded -|x - 0.5| at every step (returns depend on every action taken), its
    episodes 11-15 steps long depending on the reset seed: odd lengths end mid-chunk, so seeds
    drift apart online and wait for each other at evaluation and checkpoint marks."""

    def reset(self, *, seed=None, options=None):
        self.limit = 11 + (seed or 0) % 5
        return super().reset(seed=seed, options=options)

    def step(self, action):
        ob, _, terminated, _, info = super().step(action)
        return ob, -abs(self.x - 0.5), terminated, self.t >= self.limit, info


def agent_config():
    config = agents.resize(agents.default_config("fql"), width=16, depth=1, num_critics=2)
    config = agents.override(config, horizon=2, discount=0.99)
    return dataclasses.replace(config, flow_steps=2)


def arrays(agent):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(agent, eqx.is_array))]


def rows(run_dir, stream):
    return [
        {k: v for k, v in json.loads(line).items() if not k.endswith("_time_s")}
        for line in (Path(run_dir) / f"{stream}.jsonl").read_text().splitlines()
    ]


def assert_rows_close(actual, expected):
    assert [row["step"] for row in actual] == [row["step"] for row in expected]
    for a, b in zip(actual, expected, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def stacked():
    # one stacked template for every run below: its static parts (optimisers) are the same
    # objects each time, so each program compiles once for the whole module
    return train.make_agents("fql", 1, 2, SEEDS, agent_config())


@pytest.fixture(scope="module")
def full_run(stacked, tmp_path_factory):
    """The uninterrupted 2-seed run, with a copy of every checkpoint it writes."""
    run_dir = tmp_path_factory.mktemp("full")
    copies = {}

    def keep_checkpoints(steps, info):
        path = run_dir / "checkpoint.eqx"
        if path.exists():
            key = tuple(train.read_checkpoint_header(path)["seed_steps"])
            if key not in copies:
                copies[key] = shutil.copy(path, run_dir.parent / f"copy-{len(copies)}.eqx")

    envs = [DensePointMass(), DensePointMass()]
    trained, evals = train.train_seeds(
        stacked, DATA, envs, CONFIG, run_dir, progress=keep_checkpoints
    )
    return run_dir, trained, evals, copies


def test_make_agents_stacks_single_agents_exactly(stacked):
    for index, seed in enumerate(SEEDS):
        single = agents.make_agent("fql", 1, 2, jax.random.key(seed), agent_config())
        for a, b in zip(arrays(train.select_seed(stacked, index)), arrays(single), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_seed_runs_the_same_bits_next_to_any_other_seeds(stacked, full_run, tmp_path):
    # seed 1 trained next to seed 0 (as entry 1) instead of next to seed 2 (as entry 0): its
    # episodes end at other steps than its neighbour's, so it waits at other marks
    run_dir, trained, evals, _ = full_run
    fresh = train.make_agents("fql", 1, 2, [0, 1], agent_config())
    # the template's static parts (optimisers), so the programs compiled for `stacked` serve
    neighbours = eqx.combine(
        eqx.filter(fresh, eqx.is_array), eqx.filter(stacked, eqx.is_array, inverse=True)
    )
    envs = [DensePointMass(), DensePointMass()]
    config = dataclasses.replace(CONFIG, seed=0)
    other, other_evals = train.train_seeds(neighbours, DATA, envs, config, tmp_path)
    for a, b in zip(
        arrays(train.select_seed(other, 1)), arrays(train.select_seed(trained, 0)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for stream in ("train", "eval"):
        assert rows(tmp_path / "seed1", stream) == rows(run_dir / "seed1", stream)
    assert [row["step"] for row in rows(tmp_path / "seed0", "train")] != [
        row["step"] for row in rows(tmp_path / "seed1", "train")
    ]


def test_each_seed_matches_train_alone_with_its_seed(stacked, full_run, tmp_path):
    run_dir, trained, evals, _ = full_run
    for index, seed in enumerate(SEEDS):
        single_dir = tmp_path / f"single{seed}"
        # select_seed(stacked) equals make_agent(key(seed)) (above) and shares its static parts,
        # so the second single-seed run reuses the first one's compiled programs
        alone, single_evals = train.train(
            train.select_seed(stacked, index),
            DATA,
            DensePointMass(),
            dataclasses.replace(CONFIG, seed=seed),
            single_dir,
        )
        for a, b in zip(arrays(train.select_seed(trained, index)), arrays(alone), strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        seed_dir = run_dir / f"seed{seed}"
        assert_rows_close(rows(seed_dir, "train"), rows(single_dir, "train"))
        assert_rows_close(rows(seed_dir, "eval"), rows(single_dir, "eval"))
        assert len({row["episode_return"] for row in evals[index]}) > 1  # not all alike
        assert [row["step"] for row in evals[index]] == [row["step"] for row in single_evals]
        assert any(row.get("online") for row in rows(seed_dir, "train"))
        assert (seed_dir / "train.csv").read_text().startswith("step,")
        assert (seed_dir / "eval.csv").read_text().startswith("step,success")
    # the online phase drifts: episodes end mid-chunk, so seeds log at their own steps
    steps = [[row["step"] for row in rows(run_dir / f"seed{seed}", "train")] for seed in SEEDS]
    assert steps[0] != steps[1]
    header = train.read_checkpoint_header(run_dir / "checkpoint.eqx")
    assert header["seeds"] == SEEDS and header["seed_steps"] == [70, 70]
    assert header["step"] == 70 and header["train_config"]["seed"] == CONFIG.seed
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.eqx", "seed1", "seed2"]


def test_resume_after_an_offline_interruption_continues_exactly(stacked, full_run, tmp_path):
    run_dir, trained, _, _ = full_run

    def interrupt(steps, info):
        interrupt.done += steps
        if interrupt.done == 30 * len(SEEDS):  # after the third offline call of both seeds
            raise KeyboardInterrupt

    interrupt.done = 0
    envs = [DensePointMass(), DensePointMass()]
    with pytest.raises(KeyboardInterrupt):
        train.train_seeds(stacked, DATA, envs, CONFIG, tmp_path, progress=interrupt)
    assert train.read_checkpoint_header(tmp_path / "checkpoint.eqx")["seed_steps"] == [30, 30]
    resumed, _ = train.train_seeds(stacked, DATA, envs, CONFIG, tmp_path, resume=True)
    for a, b in zip(arrays(trained), arrays(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    for seed in SEEDS:
        for stream in ("train", "eval"):
            assert rows(run_dir / f"seed{seed}", stream) == rows(tmp_path / f"seed{seed}", stream)


def test_resume_from_an_online_checkpoint_continues_exactly(stacked, full_run, tmp_path):
    run_dir, trained, _, copies = full_run
    total = CONFIG.offline_steps + CONFIG.online_steps
    online = [steps for steps in copies if CONFIG.offline_steps < min(steps) < total]
    assert online, f"no online checkpoint before the end among {list(copies)}"
    # the full run's logs with an earlier online checkpoint: resuming truncates each seed's
    # logs at its own step and must write the same rows again
    shutil.copytree(run_dir, tmp_path, dirs_exist_ok=True)
    shutil.copy(copies[online[0]], tmp_path / "checkpoint.eqx")
    envs = [DensePointMass(), DensePointMass()]
    resumed, _ = train.train_seeds(stacked, DATA, envs, CONFIG, tmp_path, resume=True)
    for a, b in zip(arrays(trained), arrays(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    for seed in SEEDS:
        for stream in ("train", "eval"):
            assert rows(run_dir / f"seed{seed}", stream) == rows(tmp_path / f"seed{seed}", stream)


def test_bad_inputs_fail_with_one_line(stacked, full_run, tmp_path):
    with pytest.raises(ValueError, match="cannot be split evenly over 2 devices"):
        train.seed_sharding(3, jax.devices()[:1] * 2)
    with pytest.raises(ValueError, match="2 seeds need 2 environments, got 1"):
        train.train_seeds(stacked, DATA, [DensePointMass()], CONFIG, tmp_path)
    with pytest.raises(ValueError, match="needs environments"):
        train.train_seeds(stacked, DATA, None, CONFIG, tmp_path)
    with pytest.raises(ValueError, match="must be stacked"):
        train.train_seeds(train.select_seed(stacked, 0), DATA, None, CONFIG, tmp_path)
    other_seeds = dataclasses.replace(CONFIG, seed=5, online_steps=0)
    with pytest.raises(ValueError, match=r"checkpoint of seeds \[1, 2\]"):
        train.train_seeds(stacked, DATA, None, other_seeds, full_run[0], resume=True)


SHARDED = """
import dataclasses, json, sys
import equinox as eqx, jax
sys.path.insert(0, sys.argv[1])
from test_train import DATA
from test_train_seeds import agent_config, DensePointMass
from interpolant_rl import train

assert len(jax.devices()) == 4
config = train.TrainConfig(offline_steps=20, batch_size=16, updates_per_call=10,
                           eval_interval=20, eval_episodes=1, seed=3)
stacked = train.make_agents("fql", 1, 2, range(3, 7), agent_config())
results = {}
for name, devices in (("four", None), ("one", jax.devices()[:1])):
    envs = [DensePointMass() for _ in range(4)]
    trained, evals = train.train_seeds(
        stacked, DATA, envs, config, f"{sys.argv[2]}/{name}", devices=devices)
    leaves = jax.tree.leaves(eqx.filter(trained, eqx.is_array))
    results[name] = dict(
        arrays=[x.tolist() for x in leaves], evals=evals,
        devices=sorted({len(x.sharding.device_set) for x in leaves}),
        seed_axis=all(x.sharding.spec == jax.sharding.PartitionSpec("seeds") for x in leaves),
        shard_rows=sorted({s.data.shape[0] for x in leaves for s in x.addressable_shards}))
print(json.dumps(results))
"""


def test_seeds_shard_over_four_virtual_devices(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", SHARDED, str(TESTS), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.splitlines()[-1])
    four, one = runs["four"], runs["one"]
    assert four["devices"] == [4] and four["seed_axis"]
    assert four["shard_rows"] == [1]  # each device holds one seed's slice of every array
    assert one["devices"] == [1]
    for a, b in zip(four["arrays"], one["arrays"], strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    assert [[r["step"] for r in e] for e in four["evals"]] == [[20]] * 4
    for a, b in zip(four["evals"], one["evals"], strict=True):
        assert a[0]["success"] == b[0]["success"]
        assert a[0]["episode_return"] == pytest.approx(b[0]["episode_return"], rel=RTOL)


def test_each_seed_gets_its_own_wandb_run_in_one_group(stacked, tmp_path, monkeypatch):
    import types

    runs = []

    class FakeRun:
        def __init__(self, **settings):
            self.settings, self.rows, self.finished = settings, [], False
            runs.append(self)

        def define_metric(self, *args, **kwargs):
            self.metric = (args, kwargs)

        def log(self, row):
            self.rows.append(row)

        def finish(self):
            self.finished = True

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=FakeRun))
    config = dataclasses.replace(
        CONFIG, offline_steps=10, online_steps=0, eval_interval=10, wandb=train.WandbConfig()
    )
    envs = [DensePointMass(), DensePointMass()]
    train.train_seeds(stacked, DATA, envs, config, tmp_path / "run", header=dict(agent="fql"))
    assert [r.settings["name"] for r in runs] == [f"run-seed{seed}" for seed in SEEDS]
    assert {r.settings["group"] for r in runs} == {"run"}
    assert [r.settings["config"]["seed"] for r in runs] == SEEDS
    assert all(r.finished and r.metric == (("*",), {"step_metric": "step"}) for r in runs)
    assert [row["step"] for row in runs[0].rows] == [10, 10]  # its train row, then its eval row
    assert "train/critic_loss" in runs[0].rows[0] and "eval/success" in runs[0].rows[1]
