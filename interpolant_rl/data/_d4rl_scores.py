r"""D4RL normalised scores of the Gym-MuJoCo locomotion tasks.

$$\text{score}(R) = 100\,\frac{R - R_\text{random}}{R_\text{expert} - R_\text{random}},$$

0 for a uniformly random policy, 100 for D4RL's expert (Fu et al. 2020, "D4RL: Datasets for Deep
Data-Driven Reinforcement Learning"). The reference returns are D4RL's `REF_MIN_SCORE` /
`REF_MAX_SCORE` (`d4rl/infos.py`), set for the `-v0` datasets and reused unchanged by its `-v1`
and `-v2` datasets; they are per environment, the same for every dataset of it (random, medium,
medium-replay, full-replay, medium-expert, expert).
"""

import re

import numpy as np
from jaxtyping import ArrayLike


# environment: (random policy's return, expert's return), D4RL's d4rl/infos.py
D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
D4RL_DATASETS = ("random", "medium", "medium-replay", "full-replay", "medium-expert", "expert")

_ENV_IDS = {"HalfCheetah": "halfcheetah", "Hopper": "hopper", "Walker2d": "walker2d", "Ant": "ant"}
_D4RL_NAME = re.compile(
    r"^(?P<env>[a-z0-9]+)-(?P<dataset>" + "|".join(D4RL_DATASETS) + r")-v(?P<version>[0-2])$"
)
_ENV_ID = re.compile(r"^(?P<env>[A-Za-z0-9]+)-v(?P<version>\d+)$")


def d4rl_environment(name: str) -> str:
    """The D4RL environment (`"hopper"`, ...) of a D4RL dataset name (`"hopper-medium-v2"`) or a
    gymnasium environment id (`"Hopper-v5"`); `ValueError` naming the accepted forms otherwise."""
    match = _D4RL_NAME.match(name)
    if match is not None and match["env"] in D4RL_REFERENCE_RETURNS:
        return match["env"]
    match = _ENV_ID.match(name)
    if match is not None and match["env"] in _ENV_IDS:
        return _ENV_IDS[match["env"]]
    raise ValueError(
        f"{name!r} is not a D4RL locomotion task: expected '<env>-<dataset>-v0|1|2' with env in "
        f"{', '.join(D4RL_REFERENCE_RETURNS)} and dataset in {', '.join(D4RL_DATASETS)}, or a "
        f"gymnasium id {', '.join(f'{e}-vN' for e in _ENV_IDS)}"
    )


def d4rl_normalized_score(name: str, episode_return: ArrayLike) -> float | np.ndarray:
    r"""D4RL's normalised score of `episode_return` on task `name` (the module's equation; 0 =
    random, 100 = expert), for a D4RL name (`"hopper-medium-v2"`) or a gymnasium id
    (`"Hopper-v5"`). A number for a number, an array for an array of returns."""
    random_return, expert_return = D4RL_REFERENCE_RETURNS[d4rl_environment(name)]
    score = 100.0 * (np.asarray(episode_return, np.float64) - random_return)
    score = score / (expert_return - random_return)
    return float(score) if np.ndim(score) == 0 else score
