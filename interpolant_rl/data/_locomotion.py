r"""Gym-MuJoCo locomotion tasks (D4RL's setting): gymnasium's MuJoCo `-v5` environments, named
either by a D4RL dataset name (`"hopper-medium-v2"`: the `Hopper-v5` environment and the
D4RL-format file `hopper-medium-v2.hdf5`) or by a gymnasium id (`"Hopper-v5"`: the environment
alone, for online-only runs).

All four environments act in $[-1, 1]^d$ already, the box every agent acts in, so no rescaling is
needed (checked when one is made).
"""

import re

import numpy as np

from .. import _environments  # noqa: F401  (headless rendering, quiet console)
from ._d4rl_scores import D4RL_DATASETS


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
