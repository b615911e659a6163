"""OGBench datasets generated locally load through OGBench's own loader; bad files are named."""

import json

import numpy as np
import pytest

from interpolant_rl import data


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ogbench")
    spec = data.GenerationSpec("cube-double-play-v0", num_episodes=2, seed=3)
    paths = data.generate_dataset(spec, directory, workers=2)
    return spec, directory, paths


def test_generated_files_load_through_ogbench(generated):
    spec, directory, paths = generated
    env, train, val = data.load_ogbench("cube-double-play-singletask-task2-v0", directory)
    # 1001 rows per episode -> 1000 transitions; one validation episode
    assert train.size == 2000 and val.size == 1000
    assert train.obs_dim == env.observation_space.shape[0] == 37 and train.action_dim == 5
    rewards = np.asarray(train.rewards)
    assert set(np.unique(rewards)) <= {-2.0, -1.0, 0.0}
    np.testing.assert_array_equal(np.asarray(train.masks) == 0, rewards == 0)
    assert float(np.sum(train.episode_ends)) == 2.0
    assert np.all(np.abs(np.asarray(train.actions)) <= 1.0)
    meta = json.loads(paths["meta"].read_text())
    assert meta["spec"] == {"dataset": "cube-double-play-v0", "num_episodes": 2, "seed": 3}
    assert {"ogbench", "mujoco"} <= set(meta["versions"])


def test_generation_is_seeded_and_order_preserving(generated):
    spec, directory, paths = generated
    seeds = data._ogbench_generate._episode_seeds(spec)  # the same seeds, by hand
    second = data.generate_episode("cube-double", "play", int(seeds[1]))
    with np.load(paths["train"]) as file:
        np.testing.assert_array_equal(file["observations"][1001:], second["observations"])
        np.testing.assert_array_equal(file["actions"][1001:], second["actions"])


def test_existing_metadata_with_another_spec_is_refused(generated):
    spec, directory, paths = generated
    other = data.GenerationSpec("cube-double-play-v0", num_episodes=5, seed=3)
    with pytest.raises(ValueError, match="generated with"):
        data.generate_dataset(other, directory)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(actions=np.zeros((3, 5), np.float32), terminals=np.array([0, 0, 1])), "missing keys"),
        (
            dict(
                observations=np.zeros((3, 2)),
                actions=np.zeros((2, 5)),
                terminals=np.array([0, 0, 1]),
            ),
            "inconsistent shapes",
        ),
        (
            dict(
                observations=np.full((3, 2), np.nan),
                actions=np.zeros((3, 5)),
                terminals=np.array([0, 0, 1]),
            ),
            "NaN",
        ),
        (
            dict(observations=np.zeros((0, 2)), actions=np.zeros((0, 5)), terminals=np.zeros(0)),
            "empty",
        ),
        (
            dict(
                observations=np.zeros((3, 2)),
                actions=np.zeros((3, 5)),
                terminals=np.array([0, 0, 0]),
            ),
            "terminal",
        ),
    ],
)
def test_bad_files_are_named(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as error:
        data.validate_ogbench_file(path)
    assert str(path) in str(error.value)


def test_bad_names(tmp_path):
    with pytest.raises(ValueError, match="not a singletask"):
        data.load_ogbench("cube-double-play-v0", tmp_path)
    with pytest.raises(ValueError, match="cannot be generated locally"):
        data.load_ogbench("antmaze-large-navigate-singletask-v0", tmp_path)
    with pytest.raises(ValueError, match="generable datasets"):
        data.GenerationSpec("cube-nine-play-v0", 1)
    with pytest.raises(ValueError, match="num_episodes"):
        data.GenerationSpec("scene-play-v0", 0)
    garbage = tmp_path / "junk.npz"
    garbage.write_text("not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        data.validate_ogbench_file(garbage)
