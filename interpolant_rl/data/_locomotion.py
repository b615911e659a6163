r"""Gym-MuJoCo locomotion tasks (D4RL's setting): gymnasium's MuJoCo `-v5` environments, named
either by a D4RL dataset name (`"hopper-medium-v2"`: the `Hopper-v5` environment and the
D4RL-format file `hopper-medium-v2.hdf5`) or by a gymnasium id (`"Hopper-v5"`: the environment
alone, for online-only runs).

All four environments act in $[-1, 1]^d$ already, the box every agent acts in, so no rescaling is
needed (checked when one is made).
"""

import re
from pathlib import Path

import numpy as np

from .. import _environments  # noqa: F401  (headless rendering, quiet console)
from ._d4rl_scores import D4RL_DATASETS
from ._minari import load_d4rl
from ._ogbench_generate import default_cache_dir
from ._transitions import Transitions


LOCOMOTION_ENV_IDS = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}
_D4RL_NAME = re.compile(
    r"^(?P<env>halfcheetah|hopper|walker2d|ant)-(?P<dataset>"
    + "|".join(D4RL_DATASETS)
    + r")-v(?P<version>[0-2])$"
)


def parse_locomotion_name(name: str) -> dict[str, str | None] | None:
    """`{"env", "env_id", "dataset"}` of a locomotion task name — a D4RL dataset name
    (`"walker2d-medium-expert-v2"`: dataset `"medium-expert"`) or one of the gymnasium ids in
    `LOCOMOTION_ENV_IDS` (dataset `None`) — or `None` for any other name."""
    match = _D4RL_NAME.match(name)
    if match is not None:
        return dict(
            env=match["env"], env_id=LOCOMOTION_ENV_IDS[match["env"]], dataset=match["dataset"]
        )
    for env, env_id in LOCOMOTION_ENV_IDS.items():
        if name == env_id:
            return dict(env=env, env_id=env_id, dataset=None)
    return None


def make_locomotion_env(name: str):
    """The gymnasium `-v5` environment of a locomotion task name (see
    [`parse_locomotion_name`][interpolant_rl.data.parse_locomotion_name]); `ValueError` for
    another name."""
    parts = parse_locomotion_name(name)
    if parts is None:
        raise ValueError(
            f"{name!r} is not a locomotion task: expected '<env>-<dataset>-v0|1|2' with env in "
            f"{', '.join(LOCOMOTION_ENV_IDS)} and dataset in {', '.join(D4RL_DATASETS)}, or one "
            f"of {', '.join(LOCOMOTION_ENV_IDS.values())}"
        )
    import gymnasium

    env = gymnasium.make(parts["env_id"])
    low, high = env.action_space.low, env.action_space.high
    if not (np.all(low == -1.0) and np.all(high == 1.0)):  # every agent acts in [-1, 1]
        raise ValueError(f"{parts['env_id']}: action space [{low}, {high}] is not [-1, 1]")
    return env


def default_d4rl_dir() -> Path:
    """Where D4RL-format files are looked for by default: `d4rl/` beside the OGBench cache
    (`~/.cache/interpolant_rl/d4rl`, or under `$XDG_CACHE_HOME`)."""
    return default_cache_dir().parent / "d4rl"


def load_locomotion(name: str, directory: str | Path | None = None) -> tuple:
    """The environment and the offline data of a locomotion task.

    - A D4RL name (`"hopper-medium-v2"`): the `-v5` environment and the D4RL-format file
      `{directory}/{name}.hdf5` (default directory:
      [`default_d4rl_dir`][interpolant_rl.data.default_d4rl_dir]) read by [`load_d4rl`][interpolant_rl.data.load_d4rl] (D4RL's own
      files, which a user downloads; this library cannot fetch them). A missing file is one
      line naming the path.
    - A gymnasium id (`"Hopper-v5"`): the environment and `None` (no offline data: an
      online-only run).

    **Returns:** `(env, train)`, `train` a [`Transitions`][interpolant_rl.data.Transitions] or
    `None`."""
    env = make_locomotion_env(name)
    if parse_locomotion_name(name)["dataset"] is None:
        return env, None
    directory = default_d4rl_dir() if directory is None else Path(directory)
    path = directory / f"{name}.hdf5"
    if not path.exists():
        raise ValueError(
            f"{path} is needed: D4RL's file for {name} (download it where a network allows, "
            "and pass its directory as the data directory)"
        )
    train: Transitions = load_d4rl(path)
    if train.obs_dim != int(np.prod(env.observation_space.shape)):
        raise ValueError(
            f"{path}: observations of dimension {train.obs_dim}, but {env.spec.id} has "
            f"{env.observation_space.shape}"
        )
    return env, train
