"""The behaviour policies shipped in the package (issue 14): each reaches the normalised score
its index records, and a D4RL-style dataset builds from them on a fresh cache."""

import json
import math

import numpy as np
import pytest

from interpolant_rl import data


SHIPPED = data.shipped_behaviour_envs()


def test_the_package_ships_behaviour_policies():
    # fails when the package data goes missing (a packaging rule that drops *.eqx / *.json)
    assert "hopper" in SHIPPED
    for env in SHIPPED:
        index = data.read_behaviour_index(data.SHIPPED_BEHAVIOUR_DIR, env)
        assert index.medium_step is not None and set(index.measured) >= {"medium", "expert"}
        for snapshot in index.snapshots:
            assert (data.SHIPPED_BEHAVIOUR_DIR / snapshot.file).exists(), snapshot.file


@pytest.mark.parametrize("level", ["medium", "expert"])
@pytest.mark.parametrize("env", SHIPPED)
def test_a_shipped_policy_reaches_its_recorded_score(env, level):
    index = data.read_behaviour_index(data.SHIPPED_BEHAVIOUR_DIR, env)
    record = index.measured[level]
    episodes = 3
    again = data.measure_behaviour_policy(
        data.SHIPPED_BEHAVIOUR_DIR, index, level, episodes, record["seed"]
    )
    # The record's own first episodes again: on the machine that recorded them they are equal; on
    # another one, floating-point differences can change a chaotic hopper's episode, so the bound
    # is four standard errors of a 3-episode mean by the record's own spread (2 points at least)
    tolerance = max(4.0 * record["std"] / math.sqrt(episodes), 2.0)
    assert abs(again["mean"] - record["mean"]) <= tolerance, (again, record)


def test_a_dataset_builds_from_the_shipped_policies_on_a_fresh_cache(tmp_path):
    _, transitions = data.load_locomotion("hopper-medium-v2", tmp_path, num_steps=300)
    assert np.asarray(transitions.rewards).shape == (300,)
    meta = json.loads((tmp_path / "hopper-medium-v2.meta.json").read_text())
    assert meta["spec"] == dict(dataset="hopper-medium-v2", num_steps=300, seed=0)
    shipped = data.read_behaviour_index(data.SHIPPED_BEHAVIOUR_DIR, "hopper")
    assert meta["behaviour"]["medium_step"] == shipped.medium_step
    # the medium policy stays up (Hopper's episodes end when it falls): the data are a
    # walking policy's, not a random one's
    assert np.mean(np.asarray(transitions.rewards)) > 1.0
