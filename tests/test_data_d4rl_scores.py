"""D4RL normalised scores: D4RL's reference returns (d4rl/infos.py), transcribed here on their own."""

import numpy as np
import pytest

from interpolant_rl import data


# (random, expert) returns as printed in D4RL's REF_MIN_SCORE / REF_MAX_SCORE
REFERENCE = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
IDS = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d", "ant": "Ant"}


@pytest.mark.parametrize("env", list(REFERENCE))
def test_random_is_0_and_expert_is_100_under_every_name(env):
    low, high = REFERENCE[env]
    names = [f"{env}-{d}-v{v}" for d in data._d4rl_scores.D4RL_DATASETS for v in (0, 1, 2)]
    names += [f"{IDS[env]}-v{v}" for v in (2, 3, 4, 5)]
    for name in names:
        assert data.d4rl_normalized_score(name, low) == pytest.approx(0.0, abs=1e-9)
        assert data.d4rl_normalized_score(name, high) == pytest.approx(100.0)


def test_a_return_in_between_by_hand_and_arrays():
    # hopper: 100 (1500 + 20.272305) / (3234.3 + 20.272305) = 46.71...
    assert data.d4rl_normalized_score("hopper-medium-v2", 1500.0) == pytest.approx(
        100 * 1520.272305 / 3254.572305
    )
    returns = np.array([-280.178953, 5927.410524, 12135.0])  # the midpoint in the middle
    np.testing.assert_allclose(
        data.d4rl_normalized_score("HalfCheetah-v5", returns), [0.0, 50.0, 100.0], atol=1e-9
    )
    assert isinstance(data.d4rl_normalized_score("Walker2d-v5", 100), float)


@pytest.mark.parametrize(
    "name", ["hopper-v2", "humanoid-medium-v2", "hopper-medium-v3", "Humanoid-v5", "hopper"]
)
def test_unknown_names_are_refused_in_one_line(name):
    with pytest.raises(ValueError, match="not a D4RL locomotion task") as error:
        data.d4rl_normalized_score(name, 0.0)
    assert "\n" not in str(error.value)
