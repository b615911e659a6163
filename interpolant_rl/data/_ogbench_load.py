r"""OGBench datasets as [`Transitions`][interpolant_rl.data.Transitions]: validated loading from a
local directory in OGBench's file format, generating the files first when they are missing and
the wheel's oracles can produce them.

**Reward timing.** We follow ogbench >= 1.2 everywhere: a transition's reward and mask are
computed from the state *before* the step ($r_i = r(s_i)$), both in the relabelled offline data
(OGBench's loader) and in the online singletask environment (its `step` evaluates success on the
pre-step state), so offline and online rows mean the same thing.
"""

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._ogbench_generate import (
    _generate_locked,
    check_recorded_spec,
    dataset_lock,
    dataset_paths,
    default_cache_dir,
    DOMAINS,
    GenerationSpec,
)
from ._transitions import Transitions


_SINGLETASK = re.compile(
    r"^(?P<domain>.+)-(?P<kind>play|noisy|navigate|stitch|explore)-singletask(?:-task(?P<task>\d+))?-v0$"
)
NUM_TASKS = 5  # every OGBench singletask environment registers task1 .. task5 (and the default)
_REQUIRED = {"observations": 2, "actions": 2, "terminals": 1}


def validate_ogbench_file(path: str | Path) -> None:
    """Check one OGBench `.npz` file: readable, the keys `observations`, `actions`, `terminals`
    with consistent leading sizes, float actions, finite values, not empty, and a final
    `terminals` flag. Raises `ValueError` naming the file and the problem."""
    path = Path(path)
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        file = np.load(path)
    except unreadable as error:
        raise ValueError(f"{path}: not a readable .npz file ({error})") from None
    if not isinstance(file, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz archive (one array)")
    with file:
        missing = sorted(set(_REQUIRED) - set(file.files))
        if missing:
            raise ValueError(f"{path}: missing keys {missing} (has {sorted(file.files)})")
        try:  # a truncated archive fails here, when an array is decompressed
            arrays = {k: file[k] for k in _REQUIRED}
            for extra in ("qpos", "qvel", "button_states"):
                if extra in file.files:
                    arrays[extra] = file[extra]
        except unreadable as error:
            raise ValueError(
                f"{path}: corrupt .npz file ({type(error).__name__}: {error})"
            ) from None
    n = arrays["terminals"].shape[0] if arrays["terminals"].ndim == 1 else None
    if n == 0:
        raise ValueError(f"{path}: empty dataset (0 rows)")
    for key, value in arrays.items():
        ndim = _REQUIRED.get(key)
        if (ndim is not None and value.ndim != ndim) or value.shape[:1] != (n,):
            shapes = {k: v.shape for k, v in arrays.items()}
            raise ValueError(f"{path}: inconsistent shapes {shapes}")
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: {key} contains NaN or inf")
    if not np.issubdtype(arrays["actions"].dtype, np.floating):
        raise ValueError(f"{path}: actions have dtype {arrays['actions'].dtype}, expected floats")
    if not arrays["terminals"][-1]:
        raise ValueError(f"{path}: the last row is not marked terminal (truncated file?)")


def parse_singletask_name(dataset_name: str) -> dict[str, str | None]:
    """Split a singletask OGBench name, e.g. `"cube-double-play-singletask-task2-v0"`, into
    `domain`, `kind`, `task` (or `None`: the default task) and `file_stem` (`"cube-double-play-v0"`).
    Raises `ValueError` for a malformed name or an unknown domain."""
    match = _SINGLETASK.match(dataset_name)
    known = (
        *DOMAINS,
        "antmaze-medium",
        "antmaze-large",
        "antmaze-giant",
        "humanoidmaze-medium",
        "humanoidmaze-large",
        "humanoidmaze-giant",
        "antsoccer-arena",
        "antsoccer-medium",
    )
    if match is None or match["domain"] not in known:
        raise ValueError(
            f"{dataset_name!r} is not a singletask OGBench dataset name (expected "
            f"'<domain>-<play|noisy|...>-singletask[-taskN]-v0' with domain in {', '.join(known)})"
        )
    parts = match.groupdict()
    if parts["task"] is not None and not 1 <= int(parts["task"]) <= NUM_TASKS:
        raise ValueError(
            f"{dataset_name!r}: OGBench singletask datasets have tasks 1-{NUM_TASKS}, "
            f"not task {parts['task']}"
        )
    parts["file_stem"] = f"{parts['domain']}-{parts['kind']}-v0"
    return parts


def load_ogbench(
    dataset_name: str,
    directory: str | Path | None = None,
    *,
    num_episodes: int | None = None,
    seed: int | None = None,
    workers: int = 1,
    sparse: bool = False,
    progress=None,
):
    """Load a singletask OGBench dataset (e.g. `"cube-double-play-singletask-task2-v0"`) and its
    environment.

    The files `{domain}-{kind}-v0.npz` / `-val.npz` are read from `directory` (default
    [`default_cache_dir`][interpolant_rl.data.default_cache_dir]); when missing they are
    generated with [`generate_dataset`][interpolant_rl.data.generate_dataset] (`num_episodes`,
    default 1000, `seed`, default 0, `workers`, `progress`) for the manipulation domains, and
    otherwise (antmaze, humanoidmaze: expert policies are not shipped) an error says which files
    to provide. When the files were generated here (a `.meta.json` beside them), a `num_episodes`
    or `seed` given explicitly must be the recorded one: a dataset of another size or seed is an
    error naming the file, never silently used. Files are validated, then loaded and relabelled
    by OGBench's own `make_env_and_datasets` (rewards $= \\#\\text{satisfied} -
    \\#\\text{subtasks}$, mask 0 when all are satisfied). The dataset's lock is held from the
    check to the validation, so a concurrent generation of the same files is waited for.

    **Arguments:** as above, plus `sparse`: any non-zero reward becomes $-1$ (the protocol's
    option for scene and puzzle).

    **Returns:** `(env, train, val)`: the gymnasium singletask environment and two
    [`Transitions`][interpolant_rl.data.Transitions] (episode ends at OGBench's trajectory ends).
    """
    match = parse_singletask_name(dataset_name)
    directory = default_cache_dir() if directory is None else Path(directory)
    file_stem = match["file_stem"]
    paths = dataset_paths(directory, file_stem)
    train_path, val_path = paths["train"], paths["val"]
    generable = match["domain"] in DOMAINS and match["kind"] in ("play", "noisy")
    try:
        if generable:
            directory.mkdir(parents=True, exist_ok=True)
        lock = dataset_lock(directory, file_stem).acquire(wait=True)
    except OSError:  # a read-only directory of OGBench's own files: nothing to coordinate
        lock = None
    try:
        present = train_path.exists() and val_path.exists() and not paths["incomplete"].exists()
        if not present:
            if not generable:
                raise ValueError(
                    f"{train_path} and {val_path} are needed: {file_stem} cannot be generated "
                    "locally (its expert policies are not shipped with ogbench); place OGBench's "
                    "files there"
                )
            spec = GenerationSpec(
                file_stem, 1000 if num_episodes is None else num_episodes, seed or 0
            )
            _generate_locked(spec, directory, workers, progress, overwrite=False)
        elif paths["meta"].exists():
            check_recorded_spec(paths["meta"], num_episodes=num_episodes, seed=seed)
        validate_ogbench_file(train_path)
        validate_ogbench_file(val_path)
    finally:
        if lock is not None:
            lock.release()

    import ogbench

    env, train, val = ogbench.make_env_and_datasets(dataset_name, dataset_dir=str(directory))
    return env, _transitions(train, sparse), _transitions(val, sparse)


def _transitions(dataset: dict, sparse: bool) -> Transitions:
    rewards = np.asarray(dataset["rewards"], dtype=np.float32)
    if sparse:
        rewards = np.where(rewards != 0, -1.0, 0.0).astype(np.float32)
    return Transitions(
        observations=dataset["observations"],
        actions=dataset["actions"],
        rewards=rewards,
        masks=dataset["masks"],
        next_observations=dataset["next_observations"],
        episode_ends=dataset["terminals"],
    )
