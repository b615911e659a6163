"""A Minari dataset recorded with Minari's own `DataCollector`, and D4RL-format HDF5 files, load
as `Transitions` with terminations, truncations and episode ends where they belong (checked
against what was collected, and against D4RL's `qlearning_dataset` rule); the loaded data trains
an agent; bad inputs are named in one line."""

import dataclasses
import sys
import warnings

import gymnasium as gym
import h5py
import jax
import jax.random as jr
import minari
import numpy as np
import pytest

from interpolant_rl import agents, data


DATASET_ID = "tests/pendulum/random-v0"
MAX_STEPS = 10  # a short time limit: random episodes either fall (terminate) or are truncated
EPISODES = 8


def _create(collector, dataset_id):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari asks for authors, permalinks, ...
        collector.create_dataset(dataset_id, algorithm_name="random", author="tests")
    collector.close()


def _record(collector, episodes, seed=0):
    """Step `collector` with random actions, keeping our own copy of everything it saw."""
    collector.action_space.seed(seed)
    recorded = []
    for episode in range(episodes):
        obs, _ = collector.reset(seed=seed + episode)
        columns = dict(observations=[obs], actions=[], rewards=[], terminations=[], truncations=[])
        done = False
        while not done:
            action = collector.action_space.sample()
            obs, reward, terminated, truncated, _ = collector.step(action)
            for key, value in zip(
                columns, (obs, action, reward, terminated, truncated), strict=True
            ):
                columns[key].append(value)
            done = terminated or truncated
        recorded.append(columns)
    return recorded


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        env = gym.make("InvertedPendulum-v5", max_episode_steps=MAX_STEPS)  # actions in [-3, 3]
        collector = minari.DataCollector(env)
        episodes = _record(collector, EPISODES)
        _create(collector, DATASET_ID)
    return root, [{k: np.asarray(v) for k, v in e.items()} for e in episodes]


def test_recorded_dataset_loads_as_collected(recorded, monkeypatch):
    root, episodes = recorded
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    loaded = data.load_minari(DATASET_ID)
    terminated = [bool(e["terminations"][-1]) for e in episodes]
    truncated = [bool(e["truncations"][-1]) for e in episodes]
    assert any(terminated) and any(truncated), "the recording should hold both kinds of ending"
    cat = np.concatenate
    ends = cat([np.arange(len(e["rewards"])) == len(e["rewards"]) - 1 for e in episodes])
    expected = dict(
        observations=cat([e["observations"][:-1] for e in episodes]),
        actions=cat([e["actions"] for e in episodes]) / 3.0,  # [-3, 3] -> [-1, 1]
        rewards=cat([e["rewards"] for e in episodes]),
        masks=1.0 - cat([e["terminations"] for e in episodes]),  # truncations keep mask 1
        next_observations=cat([e["observations"][1:] for e in episodes]),
        episode_ends=ends,
    )
    for key, value in expected.items():
        np.testing.assert_allclose(getattr(loaded, key), value, rtol=1e-6, err_msg=key)
    # within an episode, the next observation is the following row's observation
    inside = ~ends[:-1]
    np.testing.assert_array_equal(
        np.asarray(loaded.next_observations)[:-1][inside],
        np.asarray(loaded.observations)[1:][inside],
    )
    masks_at_ends = np.asarray(loaded.masks)[ends]
    np.testing.assert_array_equal(masks_at_ends, [0.0 if t else 1.0 for t in terminated])
    assert np.all(np.abs(np.asarray(loaded.actions)) <= 1.0)
    # the same dataset by path: its directory, its data/ directory, as a string
    for path in (root / DATASET_ID, root / DATASET_ID / "data", str(root / DATASET_ID)):
        again = data.load_minari(path)
        assert jax.tree.all(jax.tree.map(np.array_equal, again, loaded)), path


def test_recovered_environment_takes_unit_actions(recorded, monkeypatch):
    root, _ = recorded
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    env = data.minari_environment(DATASET_ID)
    raw = gym.make("InvertedPendulum-v5")
    np.testing.assert_array_equal(env.action_space.low, [-1.0])
    np.testing.assert_array_equal(env.action_space.high, [1.0])
    assert env.spec.max_episode_steps == MAX_STEPS
    obs, _ = env.reset(seed=5)
    raw_obs, _ = raw.reset(seed=5)
    np.testing.assert_array_equal(obs, raw_obs)
    obs, *_ = env.step(np.array([0.5], np.float32))
    raw_obs, *_ = raw.step(np.array([1.5], np.float32))  # 0.5 in [-1, 1] is 1.5 in [-3, 3]
    np.testing.assert_allclose(obs, raw_obs)


def test_a_loaded_dataset_trains(recorded, monkeypatch):
    root, _ = recorded
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    transitions = data.load_minari(DATASET_ID)
    horizon = 2
    config = agents.resize(agents.default_config("fql"), width=16, depth=1, num_critics=2)
    config = agents.override(dataclasses.replace(config, flow_steps=3), horizon=horizon)
    agent = agents.make_agent(
        "fql", transitions.obs_dim, transitions.action_dim * horizon, jr.key(0), config
    )
    batch = data.sample_chunks(transitions, jr.key(1), 16, horizon=horizon, discount=0.99)
    agent, metrics = agent.update(jax.tree.map(lambda x: x[None], batch), jr.key(2))
    for name, values in metrics.items():
        assert np.all(np.isfinite(values)), f"{name} = {values}"
    env = data.minari_environment(DATASET_ID)
    obs, _ = env.reset(seed=0)
    chunk = np.asarray(agent.act(obs, jr.key(3)))
    assert chunk.shape == (transitions.action_dim * horizon,)
    env.step(chunk[: transitions.action_dim])


class _DictEnv(gym.Env):
    """Three steps, observations `{"velocity": (2,), "position": (3,)}` that count the steps."""

    observation_space = gym.spaces.Dict(
        {
            "velocity": gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),
            "position": gym.spaces.Box(-np.inf, np.inf, (3,), np.float64),
        }
    )
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        return self._observation(), float(self.t), self.t == 3, False, {}

    def _observation(self):
        return {"velocity": np.full(2, float(self.t)), "position": np.arange(3.0) + 10 * self.t}


class _DiscreteEnv(_DictEnv):
    action_space = gym.spaces.Discrete(3)


class _NaNEnv(_DictEnv):
    def _observation(self):
        observation = super()._observation()
        observation["velocity"][0] = np.nan if self.t == 2 else 0.0
        return observation


def test_dict_observations_are_flattened(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    collector = minari.DataCollector(_DictEnv())
    episodes = _record(collector, 2)
    _create(collector, "tests/dict/random-v0")
    loaded = data.load_minari("tests/dict/random-v0")
    space = _DictEnv.observation_space
    flat = [gym.spaces.flatten(space, o) for e in episodes for o in e["observations"][:-1]]
    assert loaded.obs_dim == 5 and loaded.size == 6
    np.testing.assert_allclose(loaded.observations, flat)
    np.testing.assert_allclose(loaded.observations[1], [10, 11, 12, 1, 1])  # position, velocity
    np.testing.assert_allclose(loaded.episode_ends, [0, 0, 1, 0, 0, 1])
    with pytest.raises(ValueError, match="no environment spec"):
        data.minari_environment("tests/dict/random-v0")  # recorded without a registered env


@pytest.mark.parametrize(
    "env, episodes, message",
    [
        (_DiscreteEnv, 1, "unsupported action space Discrete"),
        (_NaNEnv, 1, "observations contains NaN or inf"),
        (_DictEnv, 0, r"empty dataset \(0 episodes\)"),
    ],
)
@pytest.mark.filterwarnings(
    "ignore:Observation is not in observation space"
)  # Minari flags the NaN
def test_bad_minari_datasets_are_named(tmp_path, monkeypatch, env, episodes, message):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    collector = minari.DataCollector(env())
    _record(collector, episodes)
    _create(collector, "tests/bad/random-v0")
    with pytest.raises(ValueError, match=message) as error:
        data.load_minari("tests/bad/random-v0")
    text = str(error.value)
    assert str(tmp_path / "tests/bad/random-v0") in text and "\n" not in text


def test_missing_datasets_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="'tests/absent-v0' not found locally"):
        data.load_minari("tests/absent-v0")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        data.load_minari(tmp_path / "elsewhere")
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="not a Minari dataset") as error:
        data.load_minari(tmp_path / "junk")
    assert str(tmp_path / "junk") in str(error.value)


def test_missing_packages_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "minari", None)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "interpolant_rl\[minari\]"'):
        data.load_minari("anything-v0")
    with pytest.raises(ImportError, match=r'pip install "interpolant_rl\[minari\]"'):
        data.load_d4rl(tmp_path / "file.hdf5")


# --------------------------------------------------------------------------------------------
# D4RL-format files


def _d4rl_arrays(n=7):
    # episode A: rows 0-2, time limit at 2; B: rows 3-4, terminates at 4; C: rows 5-6, cut off
    return dict(
        observations=np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32),
        actions=np.linspace(-1, 1, n, dtype=np.float32)[:, None],
        rewards=np.arange(n, dtype=np.float32),
        terminals=np.array([0, 0, 0, 0, 1, 0, 0], bool),
        timeouts=np.array([0, 0, 1, 0, 0, 0, 0], bool),
    )


def _write(path, arrays):
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file.create_dataset(key, data=value)
        file.create_dataset("infos/qpos", data=np.zeros((3, 2)))  # extra groups are ignored
    return path


def test_d4rl_without_next_observations_by_hand(tmp_path):
    arrays = _d4rl_arrays()
    loaded = data.load_d4rl(_write(tmp_path / "d4rl.hdf5", arrays))
    # kept: 0, 1 (A without its timeout row 2), 3, 4 (B, terminal kept), 5 (C without its last)
    rows = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(loaded.observations, arrays["observations"][rows])
    np.testing.assert_allclose(loaded.actions, arrays["actions"][rows])
    np.testing.assert_allclose(loaded.rewards, rows)
    np.testing.assert_allclose(loaded.next_observations[:, 0], [1, 2, 4, 4, 6])  # 4: itself
    np.testing.assert_allclose(loaded.masks, [1, 1, 1, 0, 1])
    np.testing.assert_allclose(loaded.episode_ends, [0, 1, 0, 1, 1])


def test_d4rl_with_next_observations_keeps_every_row(tmp_path):
    arrays = _d4rl_arrays()
    arrays["next_observations"] = arrays["observations"] + 0.5
    loaded = data.load_d4rl(_write(tmp_path / "d4rl.hdf5", arrays))
    assert loaded.size == 7
    np.testing.assert_allclose(loaded.next_observations, arrays["next_observations"])
    np.testing.assert_allclose(loaded.masks, [1, 1, 1, 1, 0, 1, 1])  # the timeout keeps mask 1
    np.testing.assert_allclose(loaded.episode_ends, [0, 0, 1, 0, 1, 0, 1])


def _qlearning_dataset(arrays):
    """D4RL's `qlearning_dataset` (terminate_on_end=False, with timeouts), transcribed."""
    rows = []
    for i in range(len(arrays["rewards"]) - 1):
        if arrays["timeouts"][i]:
            continue  # the last step of an episode: its next observation is unknown
        rows.append((i, arrays["observations"][i + 1], bool(arrays["terminals"][i])))
    return rows


def test_d4rl_derivation_matches_qlearning_dataset(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    terminals = rng.random(n) < 0.05
    timeouts = (rng.random(n) < 0.05) & ~terminals
    terminals[-1], timeouts[-1] = False, True
    arrays = dict(
        observations=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminals=terminals.astype(np.float32),
        timeouts=timeouts.astype(np.float32),
    )
    loaded = data.load_d4rl(_write(tmp_path / "random.hdf5", arrays))
    reference = _qlearning_dataset(arrays)
    rows = [i for i, _, _ in reference]
    done = np.array([d for _, _, d in reference])
    assert loaded.size == len(rows)
    np.testing.assert_array_equal(loaded.observations, arrays["observations"][rows])
    np.testing.assert_array_equal(loaded.rewards, arrays["rewards"][rows])
    np.testing.assert_array_equal(loaded.masks, 1.0 - done)
    # next observations agree wherever they matter (D4RL's terminal rows hold the next episode's
    # first observation, ours the row's own: both are masked out)
    next_obs = np.stack([o for _, o, _ in reference])
    np.testing.assert_array_equal(np.asarray(loaded.next_observations)[~done], next_obs[~done])
    # an episode ends at a terminal, or just before a dropped timeout row
    ends = np.asarray(loaded.episode_ends).astype(bool)
    rows = np.array(rows)
    np.testing.assert_array_equal(ends[:-1], terminals[rows[:-1]] | timeouts[rows[:-1] + 1])
    assert ends[-1]


def _bad(change):
    def make(path):
        arrays = _d4rl_arrays()
        change(arrays)
        return _write(path, arrays)

    return make


def _not_hdf5(path):
    path.write_text("observations,actions\n0,0\n")
    return path


def _directory(path):
    path.mkdir()
    return path


def _empty(arrays):
    for key, value in arrays.items():
        arrays[key] = value[:0]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (_bad(lambda a: a.pop("timeouts")), ValueError, r"missing keys \['timeouts'\]"),
        (_bad(lambda a: a["observations"].__setitem__((2, 1), np.nan)), ValueError, "NaN"),
        (_bad(lambda a: a.update(rewards=a["rewards"][:, None])), ValueError, "shapes"),
        (_bad(lambda a: a.update(actions=a["actions"][:-1])), ValueError, "shapes"),
        (_bad(lambda a: a.update(actions=np.zeros((7, 1), int))), ValueError, "expected floats"),
        (_bad(lambda a: a.update(terminals=np.full(7, 2.0))), ValueError, "other than 0 and 1"),
        (_bad(lambda a: a.update(actions=3 * a["actions"])), ValueError, r"outside \[-1, 1\]"),
        (
            _bad(lambda a: a.update(next_observations=np.zeros((7, 3), np.float32))),
            ValueError,
            "differ in shape",
        ),
        (_bad(_empty), ValueError, "empty"),
        (lambda path: path, FileNotFoundError, "no such file"),
        (_directory, ValueError, "not a file"),
        (_not_hdf5, ValueError, "not a readable HDF5 file"),
    ],
)
def test_bad_d4rl_files_are_named(tmp_path, make, error, message):
    path = make(tmp_path / "bad.hdf5")
    with pytest.raises(error, match=message) as caught:
        data.load_d4rl(path)
    text = str(caught.value)
    assert str(path) in text and "\n" not in text
