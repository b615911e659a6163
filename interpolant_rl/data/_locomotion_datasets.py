r"""D4RL-style locomotion datasets, built here by rolling out behaviour policies in gymnasium's
MuJoCo `-v5` environments, the way D4RL built its Gym-MuJoCo datasets (Fu et al. 2020): soft
actor-critic trained online in the environment, with

- `random`: rollouts of the randomly initialised policy,
- `medium`: rollouts of the policy early-stopped at about a third of the expert's return,
- `expert`: rollouts of the fully trained policy,
- `medium-replay`: what the replay buffer held when training reached `medium`,
- `medium-expert`: the `medium` and `expert` datasets, one after the other,
- `full-replay`: what the replay buffer held at the end of training.

These are D4RL-*style* datasets on `-v5` environments, not D4RL's files: scores on them are
comparable to D4RL's in kind, not number for number.

**Behaviour policies** are the snapshots that
[`train_behaviour_policy`][interpolant_rl.train.train_behaviour_policy] keeps at every
evaluation of the SAC run: a directory holds `{env}-behaviour.json` (the run's configuration,
seed, and each snapshot's step, file and measured D4RL normalised score; which snapshot is
`medium` and which `expert`) and the snapshots `{env}-step{N}.eqx` (the tanh-Gaussian policy's
leaves, `equinox.tree_serialise_leaves`). A replay dataset is rebuilt from the snapshots instead
of shipping the buffer: for each interval between snapshots $[N_{k-1}, N_k)$ of the training
run, the snapshot at its start is rolled out for the $N_k - N_{k-1}$ steps the buffer collected
then. This reproduces the buffer's mix of policies, not its exact transitions (the policy also
moved within an interval, and SAC's uniformly random first steps are rolled out with the initial
policy instead).

**Rollouts** sample the stochastic policy, $a \sim \pi(\cdot \mid s)$, as D4RL's collection did;
episodes end at a termination (`terminals`) or at the environment's 1000-step limit
(`timeouts`). Episode $e$ resets with seed `seed * 1_000_003 + e` and the policy's keys derive
from `seed`, so a dataset is reproducible.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._files import atomic_write, FileLock, remove_stale_temporaries
from ..nn import TanhGaussianPolicy
from ._d4rl_scores import d4rl_normalized_score
from ._locomotion import make_locomotion_env, parse_locomotion_name
from ._minari import load_d4rl
from ._ogbench_generate import check_recorded_spec, default_cache_dir, read_metadata
from ._transitions import Transitions


SHIPPED_BEHAVIOUR_DIR = Path(__file__).parent / "behaviour"
"""Where the package's own behaviour policies live (`shipped_behaviour_envs()` lists them); pass
your own with `policies_dir`."""
LEVELS = ("random", "medium", "expert")


@dataclasses.dataclass(frozen=True)
class BehaviourSnapshot:
    """One policy snapshot of a behaviour run: `step` (environment steps trained), `file`
    (relative to the index), `normalized_score` (D4RL's, measured at that step)."""

    step: int
    file: str
    normalized_score: float


@dataclasses.dataclass(frozen=True)
class BehaviourIndex:
    """The index `{env}-behaviour.json` of a behaviour run: `env` (`"hopper"`, ...), `obs_dim`,
    `action_dim`, network `width` and `depth`, the run's `seed` and `config` (JSON), the
    `snapshots` in step order, the steps of the `medium` and `expert` snapshots (`medium_step`
    is `None` when the run never reached the medium score), and `measured`: for each level
    measured when the index was written (`random`, `medium`, `expert`), the per-episode D4RL
    normalised scores of
    [`measure_behaviour_policy`][interpolant_rl.data.measure_behaviour_policy] (`episodes`,
    `seed`, `normalized_scores`, their `mean` and `std`)."""

    env: str
    obs_dim: int
    action_dim: int
    width: int
    depth: int
    seed: int
    config: dict
    snapshots: tuple[BehaviourSnapshot, ...]
    medium_step: int | None
    expert_step: int
    measured: dict = dataclasses.field(default_factory=dict)

    def snapshot(self, step: int) -> BehaviourSnapshot:
        return next(s for s in self.snapshots if s.step == step)

    def level(self, level: str) -> BehaviourSnapshot:
        """The snapshot of `random` (step 0), `medium` or `expert`."""
        step = dict(random=0, medium=self.medium_step, expert=self.expert_step)[level]
        if step is None:
            raise ValueError(f"the {self.env} behaviour run never reached its medium score")
        return self.snapshot(step)


def shipped_behaviour_envs() -> tuple[str, ...]:
    """The environments (`"hopper"`, ...) whose behaviour policies the package ships."""
    return tuple(
        sorted(
            p.name.removesuffix("-behaviour.json")
            for p in SHIPPED_BEHAVIOUR_DIR.glob("*-behaviour.json")
        )
    )


def behaviour_index_path(directory: str | Path, env: str) -> Path:
    return Path(directory) / f"{env}-behaviour.json"


def write_behaviour_index(directory: str | Path, index: BehaviourIndex) -> None:
    """Write `index` atomically as `{env}-behaviour.json` in `directory`."""
    text = json.dumps(dataclasses.asdict(index), indent=2) + "\n"
    atomic_write(behaviour_index_path(directory, index.env), lambda f: f.write(text.encode()))


def save_behaviour_snapshot(directory: str | Path, env: str, step: int, network) -> str:
    """Write a policy network as `{env}-step{step}.eqx` (atomically); returns the file name."""
    name = f"{env}-step{step}.eqx"
    atomic_write(Path(directory) / name, lambda f: eqx.tree_serialise_leaves(f, network))
    return name


def read_behaviour_index(directory: str | Path, env: str) -> BehaviourIndex:
    """The behaviour run of `env` in `directory`; `ValueError` naming the file when it is
    missing or malformed."""
    path = behaviour_index_path(directory, env)
    if not path.exists():
        raise ValueError(
            f"{path} is needed: no behaviour policies for {env} there (train them with "
            "experiments/train_behaviour.py, or pass the directory that holds them)"
        )
    raw = read_metadata(path)
    try:
        snapshots = tuple(BehaviourSnapshot(**s) for s in raw.pop("snapshots"))
        return BehaviourIndex(**raw, snapshots=snapshots)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a behaviour index ({error})") from None


def behaviour_fingerprint(directory: str | Path, index: BehaviourIndex) -> str:
    """SHA-256 of the behaviour run a dataset is rolled out from: the index's levels and every
    snapshot file's bytes, so that a dataset built from other policies (another run, or an
    older shipped set) is told apart from one built from these."""
    digest = hashlib.sha256(
        json.dumps([index.env, index.seed, index.medium_step, index.expert_step]).encode()
    )
    for snapshot in index.snapshots:
        digest.update(str(snapshot.step).encode())
        path = Path(directory) / snapshot.file
        digest.update(path.read_bytes() if path.exists() else b"missing")
    return digest.hexdigest()


def _check_same_behaviour(meta: Path, directory: Path, index: BehaviourIndex) -> None:
    recorded = read_metadata(meta).get("behaviour_fingerprint")
    if recorded != behaviour_fingerprint(directory, index):
        raise ValueError(
            f"{meta}: the dataset there was built from other behaviour policies than those in "
            f"{directory} (use another directory, remove its files, or pass overwrite=True)"
        )


def ship_behaviour_policies(
    run_dir: str | Path, env: str, destination: str | Path, *, keep_every: int | None = None
) -> BehaviourIndex:
    r"""Copy the behaviour run of `env` in `run_dir` (its index and snapshots) to `destination`
    (e.g. the package's `SHIPPED_BEHAVIOUR_DIR`), keeping every snapshot up to the medium step
    (the medium-replay dataset rolls out each of them) and, after it, only those whose step is a
    multiple of `keep_every` (`None`: all), plus the expert's; snapshots after the expert are
    dropped (no dataset uses them). The full-replay dataset, which rolls out each listed
    snapshot until the next one, then stands for the replay buffer with the policy refreshed
    every `keep_every` steps after medium instead of every snapshot interval; its size is
    unchanged. The shipped index records the thinning in its `config["shipped_every"]`.
    Files are written atomically, the index last; an existing index of `env` in `destination` is
    replaced (its snapshots are not deleted).

    **Returns:** the shipped index."""
    if keep_every is not None and keep_every < 1:
        raise ValueError(f"keep_every must be >= 1 or None, got {keep_every}")
    index = read_behaviour_index(run_dir, env)
    medium = -1 if index.medium_step is None else index.medium_step

    def kept(step):
        regular = keep_every is None or step % keep_every == 0
        return step <= index.expert_step and (
            step <= medium or step == index.expert_step or regular
        )

    snapshots = tuple(s for s in index.snapshots if kept(s.step))
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for snapshot in snapshots:
        content = (Path(run_dir) / snapshot.file).read_bytes()
        atomic_write(destination / snapshot.file, lambda f, content=content: f.write(content))
    config = dict(index.config, shipped_every=keep_every)
    shipped = dataclasses.replace(index, snapshots=snapshots, config=config)
    write_behaviour_index(destination, shipped)
    return shipped


def load_behaviour_policy(directory: str | Path, index: BehaviourIndex, step: int):
    """The tanh-Gaussian policy network of the snapshot at `step`."""
    template = TanhGaussianPolicy(
        index.action_dim, index.obs_dim, index.width, index.depth, key=jr.key(0)
    )
    path = Path(directory) / index.snapshot(step).file
    try:
        return eqx.tree_deserialise_leaves(path, template)
    except Exception as error:  # noqa: BLE001 - any unreadable or mismatched file, one line
        raise ValueError(f"{path}: not a policy of this index ({type(error).__name__})") from None


@eqx.filter_jit
def _act(network, observation, key):
    return network.sample_and_log_prob(observation, key)[0]


def rollouts(
    network, env, num_steps: int, seed: int, progress: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """`num_steps` transitions of `network` acting stochastically in `env` (see the module
    docstring), as D4RL's columns `observations`, `actions`, `rewards`, `terminals`,
    `timeouts`, `next_observations`; the last episode is cut by a timeout at `num_steps`."""
    obs_dim = int(np.prod(env.observation_space.shape))
    action_dim = int(np.prod(env.action_space.shape))
    columns = dict(
        observations=np.zeros((num_steps, obs_dim), np.float32),
        actions=np.zeros((num_steps, action_dim), np.float32),
        rewards=np.zeros(num_steps, np.float32),
        terminals=np.zeros(num_steps, bool),
        timeouts=np.zeros(num_steps, bool),
        next_observations=np.zeros((num_steps, obs_dim), np.float32),
    )
    key, episode = jr.key(seed), 0
    observation, _ = env.reset(seed=seed * 1_000_003)
    for i in range(num_steps):
        key, action_key = jr.split(key)
        action = np.asarray(_act(network, jnp.asarray(observation, jnp.float32), action_key))
        following, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or i == num_steps - 1
        row = (observation, action, reward, terminated, truncated and not terminated, following)
        for column, value in zip(columns.values(), row, strict=True):
            column[i] = value
        observation = following
        if terminated or truncated:
            episode += 1
            observation, _ = env.reset(seed=seed * 1_000_003 + episode)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(1000)
    return columns


def episode_scores(network, env, episodes: int, seed: int) -> list[float]:
    """D4RL normalised scores of `episodes` whole episodes of `network` acting stochastically in
    `env` as [`rollouts`][interpolant_rl.data.rollouts] does (episode $e$ reset with seed
    `seed * 1_000_003 + e`, the policy's keys from `jax.random.key(seed + e)`)."""
    scores = []
    for episode in range(episodes):
        key, total, done = jr.key(seed + episode), 0.0, False
        observation, _ = env.reset(seed=seed * 1_000_003 + episode)
        while not done:
            key, action_key = jr.split(key)
            action = np.asarray(_act(network, jnp.asarray(observation, jnp.float32), action_key))
            observation, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        scores.append(float(d4rl_normalized_score(env.spec.id, total)))
    return scores


def measure_behaviour_policy(
    directory: str | Path, index: BehaviourIndex, level: str, episodes: int = 10, seed: int = 0
) -> dict:
    r"""Measure the `level` (`"random"`, `"medium"`, `"expert"`) policy of `index` (in
    `directory`): [`episode_scores`][interpolant_rl.data.episode_scores] of `episodes` episodes
    from `seed`, the stochastic acting that datasets are rolled out with.

    **Returns:** `dict(episodes, seed, normalized_scores, mean, std)` (`std` the sample standard
    deviation of one episode's score, 0 for one episode), the record `BehaviourIndex.measured`
    keeps per level."""
    network = load_behaviour_policy(directory, index, index.level(level).step)
    env = make_locomotion_env(f"{index.env}-{level}-v2")
    scores = episode_scores(network, env, episodes, seed)
    return dict(
        episodes=episodes,
        seed=seed,
        normalized_scores=scores,
        mean=float(np.mean(scores)),
        std=float(np.std(scores, ddof=1)) if episodes > 1 else 0.0,
    )


def _write_hdf5(path: Path, columns: dict[str, np.ndarray]) -> None:
    """D4RL's flat layout, written to a temporary file of `atomic_write`'s naming and renamed
    into place."""
    try:
        import h5py
    except ImportError:
        raise ImportError(
            'writing D4RL-format files needs h5py: pip install "interpolant_rl[minari]"'
        ) from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as file:
            for name, values in columns.items():
                file.create_dataset(name, data=values, compression="gzip")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _dataset_columns(name, policies_dir, index, num_steps, seed, progress):
    parts = parse_locomotion_name(name)
    env = make_locomotion_env(name)
    dataset = parts["dataset"]

    def level(level_name, steps, level_seed):
        network = load_behaviour_policy(policies_dir, index, index.level(level_name).step)
        return rollouts(network, env, steps, level_seed, progress)

    if dataset in LEVELS:
        return level(dataset, num_steps, seed)
    if dataset == "medium-expert":
        halves = [level("medium", num_steps, seed), level("expert", num_steps, seed + 1)]
        return {k: np.concatenate([h[k] for h in halves]) for k in halves[0]}
    # replays: each snapshot for the steps it collected in training
    last = index.level("medium").step if dataset == "medium-replay" else index.expert_step
    pieces = []
    previous = 0
    for snapshot in index.snapshots:
        if 0 < snapshot.step <= last:
            network = load_behaviour_policy(policies_dir, index, previous)
            pieces.append(
                rollouts(network, env, snapshot.step - previous, seed + previous, progress)
            )
            previous = snapshot.step
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def dataset_size(name: str, index: BehaviourIndex, num_steps: int) -> int:
    """Transitions in dataset `name`: `num_steps` per policy level (twice for medium-expert),
    the training steps until medium (medium-replay) or until the end (full-replay)."""
    dataset = parse_locomotion_name(name)["dataset"]
    if dataset == "medium-replay":
        return index.level("medium").step
    if dataset == "full-replay":
        return index.expert_step
    return 2 * num_steps if dataset == "medium-expert" else num_steps


def generate_locomotion_dataset(
    name: str,
    directory: str | Path,
    *,
    num_steps: int = 1_000_000,
    seed: int = 0,
    policies_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Build the D4RL-style dataset `name` (e.g. `"hopper-medium-v2"`, see the module
    docstring) in `directory` as D4RL's HDF5 layout `{name}.hdf5` (loadable by
    [`load_d4rl`][interpolant_rl.data.load_d4rl]) and `{name}.meta.json` (the spec, the
    behaviour run's index, versions), from the behaviour policies in `policies_dir` (default:
    the ones shipped in the package, `SHIPPED_BEHAVIOUR_DIR`).

    `num_steps` transitions per policy level (D4RL: 1M); `seed` seeds the rollouts. The rules of
    [`generate_dataset`][interpolant_rl.data.generate_dataset] hold: one lock per dataset
    (`.{name}.lock`), files written atomically with an `.{name}.incomplete` marker until the
    metadata is written, existing files kept unless `overwrite`, and an existing dataset of
    another spec, or built from other behaviour policies (the metadata's
    [`behaviour_fingerprint`][interpolant_rl.data.behaviour_fingerprint]), refused in one line. `progress(n)` is called every 1000 transitions.

    **Returns:** the path of the `.hdf5` file."""
    parts = parse_locomotion_name(name)
    if parts is None or parts["dataset"] is None:
        raise ValueError(f"{name!r} is not a D4RL locomotion dataset name (e.g. hopper-medium-v2)")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    policies_dir = Path(SHIPPED_BEHAVIOUR_DIR if policies_dir is None else policies_dir)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path, meta = directory / f"{name}.hdf5", directory / f"{name}.meta.json"
    incomplete = directory / f".{name}.incomplete"
    spec = dict(dataset=name, num_steps=num_steps, seed=seed)
    with FileLock(directory / f".{name}.lock").acquire(wait=True):
        remove_stale_temporaries(directory, [path.name, meta.name])
        if path.exists() and not meta.exists() and not incomplete.exists() and not overwrite:
            raise ValueError(
                f"{path} exists and was not generated here (no {meta.name}: D4RL's own file?); "
                "pass overwrite=True or another directory"
            )
        if meta.exists() and not incomplete.exists() and not overwrite:
            existing = read_metadata(meta)
            if existing.get("spec") != spec:
                raise ValueError(
                    f"{meta}: the existing dataset was generated with {existing.get('spec')}, "
                    f"not {spec} (pass overwrite=True or another directory)"
                )
            index = read_behaviour_index(policies_dir, parts["env"])
            _check_same_behaviour(meta, policies_dir, index)
            if path.exists():
                return path
        index = read_behaviour_index(policies_dir, parts["env"])
        columns = _dataset_columns(name, policies_dir, index, num_steps, seed, progress)
        metadata = dict(
            spec=spec,
            size=int(columns["rewards"].shape[0]),
            behaviour=dataclasses.asdict(index),
            behaviour_fingerprint=behaviour_fingerprint(policies_dir, index),
            generator="interpolant_rl.data.generate_locomotion_dataset",
            versions={p: version(p) for p in ("mujoco", "gymnasium", "numpy", "jax")},
        )
        incomplete.touch()
        meta.unlink(missing_ok=True)
        _write_hdf5(path, columns)
        atomic_write(meta, lambda file: file.write(json.dumps(metadata, indent=2).encode()))
        incomplete.unlink()
    return path


def default_d4rl_dir() -> Path:
    """Where D4RL-format files are looked for and built by default: `d4rl/` beside the OGBench
    cache (`~/.cache/interpolant_rl/d4rl`, or under `$XDG_CACHE_HOME`)."""
    return default_cache_dir().parent / "d4rl"


def load_locomotion(
    name: str,
    directory: str | Path | None = None,
    *,
    num_steps: int | None = None,
    seed: int | None = None,
    policies_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple:
    """The environment and the offline data of a locomotion task.

    - A D4RL name (`"hopper-medium-v2"`): the `-v5` environment and the D4RL-format file
      `{directory}/{name}.hdf5` (default directory:
      [`default_d4rl_dir`][interpolant_rl.data.default_d4rl_dir]) read by
      [`load_d4rl`][interpolant_rl.data.load_d4rl]. The file is D4RL's own (which a user
      downloads; this library cannot fetch it) or one built here: when it is missing it is
      generated with [`generate_locomotion_dataset`][interpolant_rl.data.generate_locomotion_dataset]
      (`num_steps`, default 1M, `seed`, default 0, `policies_dir`, `progress`) if behaviour
      policies for the environment are available, and otherwise one line names what is needed.
      A file built here whose `.meta.json` records another `num_steps` or `seed` than one given
      explicitly, or other behaviour policies than `policies_dir`'s
      ([`behaviour_fingerprint`][interpolant_rl.data.behaviour_fingerprint]), is refused in
      one line.
    - A gymnasium id (`"Hopper-v5"`): the environment and `None` (no offline data: an
      online-only run).

    **Returns:** `(env, train)`, `train` a [`Transitions`][interpolant_rl.data.Transitions] or
    `None`."""
    env = make_locomotion_env(name)
    parts = parse_locomotion_name(name)
    if parts["dataset"] is None:
        return env, None
    directory = default_d4rl_dir() if directory is None else Path(directory)
    path, meta = directory / f"{name}.hdf5", directory / f"{name}.meta.json"
    policies = Path(SHIPPED_BEHAVIOUR_DIR if policies_dir is None else policies_dir)
    if not path.exists() or (directory / f".{name}.incomplete").exists():
        if not behaviour_index_path(policies, parts["env"]).exists():
            raise ValueError(
                f"{path} is needed: D4RL's file for {name} (download it where a network allows), "
                f"or behaviour policies for {parts['env']} to build it from (none in {policies}; "
                "train them with experiments/train_behaviour.py)"
            )
        generate_locomotion_dataset(
            name,
            directory,
            num_steps=1_000_000 if num_steps is None else num_steps,
            seed=seed or 0,
            policies_dir=policies,
            progress=progress,
        )
    elif meta.exists():
        check_recorded_spec(meta, num_steps=num_steps, seed=seed)
        if behaviour_index_path(policies, parts["env"]).exists():
            _check_same_behaviour(meta, policies, read_behaviour_index(policies, parts["env"]))
    train: Transitions = load_d4rl(path)
    if train.obs_dim != int(np.prod(env.observation_space.shape)):
        raise ValueError(
            f"{path}: observations of dimension {train.obs_dim}, but {env.spec.id} has "
            f"{env.observation_space.shape}"
        )
    return env, train
