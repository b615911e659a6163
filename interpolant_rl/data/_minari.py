r"""Minari datasets and D4RL-format HDF5 files from local disk, as
[`Transitions`][interpolant_rl.data.Transitions]. Nothing is ever downloaded: Minari's remote hub
cannot be reached here, so a dataset that is not on disk is an error.

Both loaders follow gymnasium's distinction between the two ways an episode stops:

- a **termination** (the task ended: a fall, a goal) gives mask $m_i = 0$, so the critic never
  bootstraps from $s'_i$, and ends the episode;
- a **truncation** or **timeout** (a time limit) ends the episode but keeps $m_i = 1$: the
  episode was cut, the task goes on, and $s'_i$ is a real state to bootstrap from.

Every episode's last transition is an `episode_end`, so action chunks never run across episodes.

**Actions** end up in $[-1, 1]$, where our agents act. A Minari action space $[\ell, u]$ (per
dimension, finite) is mapped affinely, $a \mapsto 2\,(a - \ell)/(u - \ell) - 1$, and
[`minari_environment`][interpolant_rl.data.minari_environment] wraps the recovered environment
in gymnasium's `RescaleAction` so that the agent's actions are mapped back. D4RL-format files
carry no action space: their actions must already lie in $[-1, 1]$. In both cases values outside
$[-1, 1]$ by at most $10^{-3}$ (rounding) are clipped and anything further is an error.

Needs the optional dependencies: `pip install "interpolant_rl[minari]"` (`minari`, `h5py`),
imported only when a loader is called.
"""

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._transitions import Transitions


_INSTALL = 'pip install "interpolant_rl[minari]"'
_ACTION_TOLERANCE = 1e-3  # rounding slack outside [-1, 1] that is clipped rather than refused
_D4RL_REQUIRED = {"observations": 2, "actions": 2, "rewards": 1, "terminals": 1, "timeouts": 1}
_D4RL_EXPECTED = (
    "expected observations (N, obs_dim), actions (N, action_dim), and (N,) for the rest"
)


def _require(module: str, caller: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{caller} needs the {module} package: {_INSTALL}") from None


# --------------------------------------------------------------------------------------------
# Minari


def _minari_root() -> Path:
    # Minari's own rule (minari.storage.get_dataset_path), without creating the directory
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root) if root is not None else Path.home() / ".minari" / "datasets"


def _minari_data_dir(path_or_dataset_id: str | os.PathLike) -> Path:
    """The `data/` directory (holding `metadata.json`) of a local Minari dataset."""
    if isinstance(path_or_dataset_id, str):
        # a dataset id first (Minari's own lookup), then a path
        candidates = [_minari_root() / path_or_dataset_id, Path(path_or_dataset_id).expanduser()]
    else:
        candidates = [Path(path_or_dataset_id).expanduser()]
    found = [candidate for candidate in candidates if candidate.exists()]
    if not found:
        looked = " and ".join(str(candidate) for candidate in candidates)
        raise FileNotFoundError(
            f"Minari dataset {str(path_or_dataset_id)!r} not found locally (looked for {looked}); "
            "it must exist on local disk: nothing is downloaded"
        )
    directory = found[0]
    for data_dir in (directory / "data", directory):
        if (data_dir / "metadata.json").is_file():
            return data_dir
    raise ValueError(f"{directory}: not a Minari dataset (no data/metadata.json)")


def _open_minari(path_or_dataset_id: str | os.PathLike, caller: str) -> tuple[str, Any]:
    """`(label, MinariDataset)`, the label naming the dataset directory in error messages."""
    minari = _require("minari", caller)
    data_dir = _minari_data_dir(path_or_dataset_id)
    label = str(data_dir.parent if data_dir.name == "data" else data_dir)
    try:
        dataset = minari.MinariDataset(data_dir)
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{label}: not a readable Minari dataset ({message})") from None
    return label, dataset


def _observation_flattener(label: str, space: Any) -> Any:
    """A function flattening a batch of observations to `(T, obs_dim)`, for a Box or a Dict of
    Boxes (row-major, Dict entries in the space's key order: `gymnasium.spaces.flatten`)."""
    import gymnasium

    boxes = space.spaces if isinstance(space, gymnasium.spaces.Dict) else {None: space}
    for key, box in boxes.items():
        where = "observation space" if key is None else f"observation space entry {key!r}"
        if not isinstance(box, gymnasium.spaces.Box):
            raise ValueError(
                f"{label}: unsupported {where} {box} (only Box, or a Dict of Boxes, is supported)"
            )
        if not np.issubdtype(box.dtype, np.floating):
            raise ValueError(f"{label}: {where} has dtype {box.dtype}, expected floats")

    def flatten(observations: Any) -> np.ndarray:
        if not isinstance(space, gymnasium.spaces.Dict):
            observations = np.asarray(observations)
            return observations.reshape(observations.shape[0], -1)
        parts = [np.asarray(observations[key]) for key in space.spaces]
        return np.concatenate([part.reshape(part.shape[0], -1) for part in parts], axis=1)

    return flatten


def _action_bounds(label: str, space: Any) -> tuple[np.ndarray, np.ndarray]:
    import gymnasium

    if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{label}: unsupported action space {space} (expected a 1-D Box)")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(f"{label}: action space {space} has unbounded or empty bounds")
    return low, high


def _needs_rescaling(low: np.ndarray, high: np.ndarray) -> bool:
    return not (np.all(low == -1.0) and np.all(high == 1.0))


def _unit_actions(label: str, actions: np.ndarray, hint: str) -> np.ndarray:
    """Clip rounding errors outside $[-1, 1]$; refuse anything further."""
    if actions.size and np.max(np.abs(actions)) > 1.0 + _ACTION_TOLERANCE:
        worst = float(np.max(np.abs(actions)))
        raise ValueError(f"{label}: actions outside [-1, 1] (max |a| = {worst:.4g}) {hint}")
    return np.clip(actions, -1.0, 1.0)


def _check_finite(label: str, arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{label}: {key} contains NaN or inf")


def _check_flags(label: str, arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        if value.dtype != np.bool_ and not np.all((value == 0) | (value == 1)):
            raise ValueError(f"{label}: {key} has values other than 0 and 1")


def load_minari(path_or_dataset_id: str | os.PathLike) -> Transitions:
    r"""Load a Minari dataset from local disk as one table of transitions.

    The dataset is found as Minari's own `minari.load_dataset(..., download=False)` finds it: a
    string is first read as a dataset id (e.g. `"mujoco/hopper/expert-v0"`) under
    `MINARI_DATASETS_PATH` (default `~/.minari/datasets`), then as a path; a `Path` is a path.
    A path may name the dataset directory or its `data/` subdirectory. Nothing is downloaded.

    Episodes are concatenated in Minari's episode order. An episode of $T$ steps stores $T + 1$
    observations $o_0, \dots, o_T$; it gives the $T$ transitions $(o_t, a_t, r_t, o_{t+1})$ —
    no step is lost, and a truncated episode's $o_T$ is the true final observation. Masks are
    $1 - \text{termination}_t$; `episode_ends` mark each episode's last step, whether it
    terminated or was truncated (a truncation keeps mask 1).

    Observations: a `Box` (flattened row-major if it is not 1-D) or a `Dict` of `Box`es
    (flattened and concatenated in the space's key order, i.e. `gymnasium.spaces.flatten`),
    of floating dtype. Actions: a 1-D `Box` with finite bounds $[\ell, u]$, mapped to $[-1, 1]$
    by $a \mapsto 2\,(a - \ell)/(u - \ell) - 1$ when the bounds differ from $[-1, 1]$ (e.g.
    `InvertedPendulum`'s $[-3, 3]$); values off by at most $10^{-3}$ after that are clipped,
    further ones refused. [`minari_environment`][interpolant_rl.data.minari_environment] returns
    the matching environment, whose actions are mapped back.

    **Arguments:**

    - `path_or_dataset_id`: a Minari dataset id or a path to the dataset.

    **Returns:** a [`Transitions`][interpolant_rl.data.Transitions] with one row per step.

    Raises `FileNotFoundError` when the dataset is not on local disk, `ValueError` (naming the
    dataset directory) for an unreadable dataset, an unsupported observation or action space,
    empty data, inconsistent shapes or NaN/inf, and `ImportError` when `minari` is missing.

    !!! example

        ```python
        train = load_minari("mujoco/hopper/expert-v0")  # under MINARI_DATASETS_PATH
        env = minari_environment("mujoco/hopper/expert-v0")  # acts in [-1, 1]
        ```
    """
    label, dataset = _open_minari(path_or_dataset_id, "load_minari")
    import gymnasium

    flatten = _observation_flattener(label, dataset.observation_space)
    obs_dim = int(gymnasium.spaces.flatdim(dataset.observation_space))
    low, high = _action_bounds(label, dataset.action_space)
    if dataset.total_episodes == 0:
        raise ValueError(f"{label}: empty dataset (0 episodes)")
    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("obs", "actions", "rewards", "terminations", "ends")
    }
    for episode in dataset.iterate_episodes():
        arrays = dict(
            observations=flatten(episode.observations),
            actions=np.asarray(episode.actions),
            rewards=np.asarray(episode.rewards),
            terminations=np.asarray(episode.terminations),
            truncations=np.asarray(episode.truncations),
        )
        steps = arrays["rewards"].shape[0] if arrays["rewards"].ndim == 1 else -1
        expected = dict(
            observations=(steps + 1, obs_dim),
            actions=(steps, low.shape[0]),
            rewards=(steps,),
            terminations=(steps,),
            truncations=(steps,),
        )
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                shapes = {k: v.shape for k, v in arrays.items()}
                raise ValueError(f"{label}: episode {episode.id} has inconsistent shapes {shapes}")
        if steps == 0:
            continue
        for key in ("observations", "actions", "rewards"):
            if not np.issubdtype(arrays[key].dtype, np.number):
                raise ValueError(f"{label}: {key} have dtype {arrays[key].dtype}, expected numbers")
        _check_finite(label, {k: arrays[k] for k in ("observations", "actions", "rewards")})
        _check_flags(label, {k: arrays[k] for k in ("terminations", "truncations")})
        terminations = arrays["terminations"].astype(bool)
        ends = terminations | arrays["truncations"].astype(bool)
        ends[-1] = True
        columns["obs"].append(arrays["observations"])
        columns["actions"].append(arrays["actions"])
        columns["rewards"].append(arrays["rewards"])
        columns["terminations"].append(terminations)
        columns["ends"].append(ends)
    if not columns["rewards"]:
        raise ValueError(f"{label}: empty dataset (no episode has a step)")
    actions = np.concatenate(columns["actions"]).astype(np.float64)
    if _needs_rescaling(low, high):
        actions = 2.0 * (actions - low) / (high - low) - 1.0
    return Transitions(
        observations=np.concatenate([obs[:-1] for obs in columns["obs"]]),
        actions=_unit_actions(label, actions, "after rescaling from the action space's bounds"),
        rewards=np.concatenate(columns["rewards"]),
        masks=1.0 - np.concatenate(columns["terminations"]),
        next_observations=np.concatenate([obs[1:] for obs in columns["obs"]]),
        episode_ends=np.concatenate(columns["ends"]),
    )


def minari_environment(
    path_or_dataset_id: str | os.PathLike, *, eval_env: bool = False, **kwargs: Any
):
    """The gymnasium environment a local Minari dataset was recorded in (Minari's
    `recover_environment`), seen the way [`load_minari`][interpolant_rl.data.load_minari] shows
    the data: actions in $[-1, 1]$ (gymnasium's `RescaleAction`, when the action space has other
    bounds) and flat observations (`FlattenObservation`, when the observation space is not a
    1-D `Box`).

    **Arguments:**

    - `path_or_dataset_id`: as for [`load_minari`][interpolant_rl.data.load_minari].
    - `eval_env`: the dataset's evaluation environment, when it names one (otherwise the
      recording environment, as in Minari).
    - `kwargs`: passed on to `gymnasium.make` (e.g. `render_mode="rgb_array"`).

    **Returns:** a `gymnasium.Env`. Raises as [`load_minari`][interpolant_rl.data.load_minari]
    does, and `ValueError` when the dataset records no environment spec.
    """
    label, dataset = _open_minari(path_or_dataset_id, "minari_environment")
    _observation_flattener(label, dataset.observation_space)
    low, high = _action_bounds(label, dataset.action_space)
    if dataset.env_spec is None:
        raise ValueError(f"{label}: the dataset records no environment spec to recover")
    import gymnasium

    env = dataset.recover_environment(eval_env=eval_env, **kwargs)
    space = dataset.observation_space
    if not (isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1):
        env = gymnasium.wrappers.FlattenObservation(env)
    if _needs_rescaling(low, high):
        ones = np.ones_like(low, dtype=env.action_space.dtype)
        env = gymnasium.wrappers.RescaleAction(env, -ones, ones)
    return env


# --------------------------------------------------------------------------------------------
# D4RL


def _read_d4rl(path: Path) -> dict[str, np.ndarray]:
    h5py = _require("h5py", "load_d4rl")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"{path}: not a readable HDF5 file ({' '.join(str(error).split())})"
        ) from None
    with file:
        missing = sorted(set(_D4RL_REQUIRED) - set(file.keys()))
        if missing:
            raise ValueError(f"{path}: missing keys {missing} (has {sorted(file.keys())})")
        keys = [*_D4RL_REQUIRED, *(["next_observations"] if "next_observations" in file else [])]
        arrays = {}
        for key in keys:
            if not isinstance(file[key], h5py.Dataset):
                raise ValueError(f"{path}: {key} is an HDF5 group, expected an array")
            arrays[key] = np.asarray(file[key][()])
    return arrays


def _validate_d4rl(path: Path, arrays: dict[str, np.ndarray]) -> None:
    for key, value in arrays.items():
        floats = key in ("observations", "actions", "next_observations")
        wanted = np.floating if floats else np.number
        if not (
            np.issubdtype(value.dtype, wanted)
            or (key in ("terminals", "timeouts") and value.dtype == np.bool_)
        ):
            kind = "floats" if floats else "numbers"
            raise ValueError(f"{path}: {key} has dtype {value.dtype}, expected {kind}")
    n = arrays["rewards"].shape[0] if arrays["rewards"].ndim == 1 else None
    for key, value in arrays.items():
        ndim = _D4RL_REQUIRED.get(key, 2)
        if value.ndim != ndim or value.shape[:1] != (n,):
            shapes = {k: v.shape for k, v in arrays.items()}
            raise ValueError(f"{path}: inconsistent shapes {shapes} ({_D4RL_EXPECTED})")
    if (
        "next_observations" in arrays
        and arrays["next_observations"].shape != arrays["observations"].shape
    ):
        shapes = {k: v.shape for k, v in arrays.items()}
        raise ValueError(f"{path}: next_observations and observations differ in shape {shapes}")
    if n == 0:
        raise ValueError(f"{path}: empty dataset (0 rows)")
    _check_finite(
        str(path), {k: v for k, v in arrays.items() if k not in ("terminals", "timeouts")}
    )
    _check_flags(str(path), {k: arrays[k] for k in ("terminals", "timeouts")})


def load_d4rl(path: str | os.PathLike) -> Transitions:
    r"""Load a D4RL-format HDF5 file from a local path.

    The file holds D4RL's flat layout: `observations` `(N, obs_dim)`, `actions`
    `(N, action_dim)` (already in $[-1, 1]$), `rewards` `(N,)`, `terminals` `(N,)` and
    `timeouts` `(N,)` (0/1 or booleans), optionally `next_observations` `(N, obs_dim)`; other
    keys (`infos/...`, `metadata/...`) are ignored. Rows are steps in time order, episodes
    contiguous; an episode ends at a `terminals` row (a termination: mask 0) or a `timeouts`
    row (a time limit: mask 1). A row flagged both counts as a termination.

    - **With `next_observations`:** every row is a transition; masks $= 1 - \text{terminal}_i$,
      `episode_ends` $=$ terminal or timeout (and the last row).
    - **Without:** the next observation is derived within episodes as D4RL's
      `qlearning_dataset` does: $s'_i = s_{i+1}$, and a row whose next observation is unknown
      is dropped — a timeout row (the following row starts a new episode) and a final row that
      is not terminal. Terminal rows are kept (their mask is 0, so $s'_i$ is never bootstrapped
      from); their $s'_i$ is set to $s_i$ itself rather than to the next episode's first
      observation. `episode_ends` mark the last kept row of each episode.

    **Arguments:**

    - `path`: the `.hdf5` file.

    **Returns:** a [`Transitions`][interpolant_rl.data.Transitions].

    Raises `FileNotFoundError` for a missing file, `ValueError` naming the file for anything
    else wrong with it (not a file, not HDF5, missing keys, wrong dtypes or shapes, mismatched
    lengths, empty, NaN/inf, flags other than 0/1, actions outside $[-1, 1]$), and `ImportError`
    when `h5py` is missing.
    """
    path = Path(path)
    arrays = _read_d4rl(path)
    _validate_d4rl(path, arrays)
    observations = arrays["observations"]
    terminals = arrays["terminals"].astype(bool)
    timeouts = arrays["timeouts"].astype(bool) & ~terminals
    ends = terminals | timeouts
    n = observations.shape[0]
    if "next_observations" in arrays:
        rows = np.arange(n)
        next_observations = arrays["next_observations"]
    else:
        following = np.minimum(np.arange(n) + 1, n - 1)
        rows = np.flatnonzero(terminals | (~timeouts & (np.arange(n) + 1 < n)))
        if rows.size == 0:
            raise ValueError(f"{path}: no row has a known next observation (every row a timeout?)")
        next_observations = np.where(terminals[:, None], observations, observations[following])
    # episode index of each row: an episode ends at a terminal or a timeout
    episode = np.concatenate([[0], np.cumsum(ends[:-1])])
    episode_ends = np.append(episode[rows][1:] != episode[rows][:-1], True)
    return Transitions(
        observations=observations[rows],
        actions=_unit_actions(str(path), arrays["actions"][rows], "(D4RL's must be normalised)"),
        rewards=arrays["rewards"][rows],
        masks=1.0 - terminals[rows],
        next_observations=next_observations[rows],
        episode_ends=episode_ends,
    )
