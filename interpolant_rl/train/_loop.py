r"""Offline then online training of $N \ge 1$ seeds of any agent, with evaluation, logging and
resumable checkpoints: one driver, [`train_seeds`][interpolant_rl.train.train_seeds], of which
[`train`][interpolant_rl.train.train] is the one-seed form.

The schedule, for a [`TrainConfig`][interpolant_rl.train.TrainConfig]; the data's chunk length
$h$ (`horizon`) and discount are the agent's critic's
([`AbstractCritic.horizon`][interpolant_rl.agents.AbstractCritic.horizon]), stated once:

1. **Offline:** `offline_steps` agent updates on chunks of the offline dataset, `updates_per_call`
   of them per jitted call (one `lax.scan`).
2. **Online:** `online_steps` environment steps. The agent acts once per chunk and the chunk runs
   open-loop; every step goes to a replay buffer; after each chunk, `utd × horizon` updates on
   batches that mix offline and online chunks (`online_fraction` of each batch from the buffer).
   The first `random_action_steps` online steps (RLPD: 5000) take actions drawn uniformly from
   $[-1, 1]^d$ instead of the agent's, and make no updates: training starts after them.
3. **Evaluation** every `eval_interval` steps (offline updates and online environment steps count
   alike) and at the end: `eval_episodes` episodes, success = the last step's `info["success"]`;
   `parallel_episodes` of them (default: all) run side by side in copies of the environment, one
   batched act call per chunk for all of them.

**The seed axis.** The agents are one *stacked* PyTree (every array has a leading seed axis of
length $N$; [`make_agents`][interpolant_rl.train.make_agents] builds it; `train` stacks its one
agent with $N = 1$), and every device computation is one jitted call of the single-seed program
applied to every seed: vmapped over the axis when $N > 1$, and called on the seed's own arrays
when $N = 1$ (a vmap over one seed compiles to a program that is slower on CPU and whose rounding
matches no other $N$; see `_per_seed`). The calls:

- **offline:** one per block of `updates_per_call` updates, each seed sampling its own batches;
- **online:** $N$ environments (one per seed), one call for the actions of all $N$ per chunk,
  $N$ stacked replay buffers, one call appending a chunk's transitions, one for the updates;
- **evaluation:** $N \times$ `parallel_episodes` environments stepped together, one call for all
  their action chunks per chunk.

**Seeding.** Seed $s$ of $N$ is `config.seed + s`, and every random draw of a seed derives from
it alone (the update keys from the step number, evaluation and online episodes, random actions
included, from their index), so the same seeds give the same metrics on CPU, a run resumed from
a checkpoint continues exactly as if uninterrupted, and seed $s$'s run does not depend on the
other seeds. Its results match a one-seed run of `config.seed + s` to float rounding, not bit for
bit: the vmapped program batches every matmul over the seeds, and XLA may lay out and sum a
batched product in another order than a single one.

**Sharding.** The seed axis is split over a one-dimensional mesh of `devices` (default: every
device when $N > 1$, the first when $N = 1$; see [`seed_sharding`][interpolant_rl.train.seed_sharding]):
each device trains $N / \#\text{devices}$ seeds, and the offline dataset is replicated.

**Episodes of different lengths.** Seeds act in lockstep, one chunk each per round, but their
step counts drift apart online: a chunk stops early at an episode end. A seed that reaches an
evaluation mark, or an episode end with a checkpoint due, waits (makes no step) until every
seed has reached one; then the due evaluations run together and, once every seed is between
episodes, the checkpoint is written. Waiting changes nothing in a seed's own run.

**Checkpoints** (`{run_dir}/checkpoint.eqx`, one file for all seeds) are saved every
`checkpoint_interval` steps (online: at the first episode end after that), at the end, and on
Ctrl-C. With `time_limit_s`, the run ends early at the first call boundary after that many
seconds (online: once every seed is between episodes) with the end's evaluation and checkpoint,
from which `resume` continues; a non-finite loss stops the run with
[`NonFiniteLossError`][interpolant_rl.train.NonFiniteLossError], keeping the last good one.
"""

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import gymnasium
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from jaxtyping import PyTree

from .. import _environments  # noqa: F401  (headless rendering, quiet console)
from ..agents import AbstractAgent, make_agent, unsweep
from ..data import mixed_batch, ReplayBuffer, sample_chunks, Transitions
from ._checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)
from ._logging import MetricsLogger, read_rows, WandbConfig
from ._sharding import constrain, get, get_tree, put, put_tree, seed_sharding
from ._sweep import SweepMember
from ._video import check_video_support, write_mp4


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training schedule (defaults: the QAM protocol)."""

    offline_steps: int = 1_000_000  # agent updates on the offline dataset
    online_steps: int = 0  # environment steps afterwards (QAM protocol: 500k; 0 = offline only)
    batch_size: int = 256  # transitions (chunks) per update
    updates_per_call: int = 100  # offline updates per jitted call
    utd: int = 1  # updates per environment step online
    online_fraction: float = 0.5  # share of each online-phase batch drawn from the replay buffer
    random_action_steps: int = 0  # first online steps: uniform in [-1, 1], no updates (RLPD: 5000)
    eval_interval: int = 50_000  # steps between evaluations
    eval_episodes: int = 50  # episodes per evaluation
    # evaluation episodes run side by side per seed, one act call per chunk for all of them (in
    # copies of the evaluation environment); None: all `eval_episodes` at once
    parallel_episodes: int | None = None
    checkpoint_interval: int = 50_000  # steps between checkpoints
    seed: int = 0  # every random draw derives from it (seed s of N: seed + s)
    # record this many evaluation episodes per seed and evaluation as MP4 ({run_dir}/videos,
    # extra: interpolant_rl[video]); the evaluation environments must render RGB frames
    video_episodes: int = 0
    # stop at the first call boundary (online: with every seed between episodes) after this
    # many seconds of training, then evaluate and checkpoint as at the end (None: no limit); a
    # cluster job's wall-time limit, or a benchmark's budget. `resume` continues the run.
    time_limit_s: float | None = None
    tensorboard: bool = (
        False  # also log to {run_dir}/tensorboard (extra: interpolant_rl[tensorboard])
    )
    # also log to Weights & Biases (extra: interpolant_rl[wandb]); N seeds: one W&B run each,
    # named "{name}-seed{k}", grouped under `group` (default: the name)
    wandb: WandbConfig | None = None

    def __post_init__(self):
        for name in ("offline_steps", "online_steps", "random_action_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "batch_size",
            "updates_per_call",
            "utd",
            "eval_interval",
            "eval_episodes",
            "checkpoint_interval",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.online_fraction <= 1.0:
            raise ValueError(f"online_fraction must lie in [0, 1], got {self.online_fraction}")
        if self.video_episodes < 0 or self.video_episodes > self.eval_episodes:
            raise ValueError(
                f"video_episodes must lie in [0, eval_episodes = {self.eval_episodes}], "
                f"got {self.video_episodes}"
            )
        if self.parallel_episodes is not None and self.parallel_episodes < 1:
            raise ValueError(
                f"parallel_episodes must be >= 1 or None, got {self.parallel_episodes}"
            )
        if self.time_limit_s is not None and not self.time_limit_s > 0:  # NaN too
            raise ValueError(f"time_limit_s must be > 0 or None, got {self.time_limit_s}")


# --------------------------------------------------------------------------------------------
# Agents on a seed axis


def make_agents(
    name: str, obs_dim: int, action_dim: int, seeds: Sequence[int], config: Any = None
) -> AbstractAgent:
    """One agent per seed, stacked: agent `name` built as
    [`make_agent`][interpolant_rl.agents.make_agent]`(name, obs_dim, action_dim,
    jax.random.key(seed), config)` for each of `seeds`, in one `eqx.filter_vmap`. Every array
    gets a leading axis of `len(seeds)`; the static parts (configuration, optimiser) are shared.
    Entry `s` equals the agent `make_agent` builds from `seeds[s]` exactly.
    """
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("make_agents: seeds must not be empty")
    keys = jnp.stack([jr.key(seed) for seed in seeds])
    return eqx.filter_vmap(lambda key: make_agent(name, obs_dim, action_dim, key, config))(keys)


def select_seed(agents: AbstractAgent, index: int) -> AbstractAgent:
    """Entry `index` of stacked agents (as [`make_agents`][interpolant_rl.train.make_agents]
    builds and [`train_seeds`][interpolant_rl.train.train_seeds] returns them): an ordinary
    agent, e.g. to `act` with or to compare with a single-seed run. A member of a
    [`make_sweep`][interpolant_rl.train.make_sweep] comes back with its swept values as Python
    floats in its configuration, as if it had been made with them."""
    return unsweep(_entry(agents, index))


def select_members(agents: AbstractAgent, indices: Sequence[int]) -> AbstractAgent:
    """The entries `indices` of stacked agents, stacked again (e.g. one process's block of a
    [`make_sweep`][interpolant_rl.train.make_sweep])."""
    indices = np.asarray(list(indices))
    arrays, static = eqx.partition(agents, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[indices], arrays), static)


def _entry(tree: PyTree, index: int) -> PyTree:
    """Entry `index` along the seed axis of every array of `tree`."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[index], arrays), static)


def _stack(tree: PyTree) -> PyTree:
    """`tree` (e.g. an agent or a buffer) with a seed axis of length 1 on every array."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[None], arrays), static)


def _num_seeds(agents: AbstractAgent) -> int:
    leaves = jax.tree.leaves(eqx.filter(agents, eqx.is_array))
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "train_seeds: agents must be stacked (every array with the same leading seed axis, "
            "as make_agents builds them)"
        )
    return sizes.pop()


# --------------------------------------------------------------------------------------------
# How every random draw of a seed derives from it


def _online_size(config: TrainConfig) -> int:
    """Rows of each online-phase batch drawn from the replay buffer."""
    return min(max(1, round(config.online_fraction * config.batch_size)), config.batch_size)


def _reset_seed(seed: int, episode: int) -> int:
    """The `env.reset` seed of online episode `episode`."""
    return seed * 1_000_003 + episode


def _episode_keys(key, episode):
    """The keys of online episode `episode`: `(agent actions, uniform random actions)`, each
    folded with the chunk index. Traceable (`episode` may be a traced integer)."""
    actions = jr.fold_in(jr.fold_in(key, 2**30), episode)
    uniform = jr.fold_in(jr.fold_in(key, 2**30 + 1), episode)
    return actions, uniform


def _evaluation_seed(step: int) -> int:
    """The seed of the first evaluation episode at `step` (episode `e` uses it plus `e`)."""
    return 10**6 + step


# --------------------------------------------------------------------------------------------
# The device programs: the single-seed program applied to every seed of the stacked arguments


def _per_seed(fn: Callable, *args: PyTree) -> PyTree:
    """`fn` applied to each seed's slice of `args` (PyTrees whose arrays all have a leading
    seed axis), its results stacked along that axis again.

    Several seeds: `eqx.filter_vmap(fn)`. One seed: `fn` on the seed's own arrays (the axis
    removed, then restored), i.e. the single-seed program itself. A vmap over a seed axis of
    length 1 would compile differently: XLA drops the unit axis and may then lay out a matmul
    otherwise (e.g. transpose the other operand), so its rounding matches neither a single
    seed's program nor a seed of a vmap over $N \\ge 2$, and it runs slower on CPU
    (`benchmarks/multi_seed.py`).
    """
    arrays, static = eqx.partition(args, eqx.is_array)
    if jax.tree.leaves(arrays)[0].shape[0] > 1:
        return eqx.filter_vmap(fn)(*args)
    out = fn(*eqx.combine(jax.tree.map(lambda x: x[0], arrays), static))
    return _stack(out)


def _offline_call(agent, transitions, key, num_updates, batch_size, horizon, discount):
    """One seed's offline block: `num_updates` updates on batches it samples with `key`."""
    batch_keys = jr.split(jr.fold_in(key, 0), num_updates)
    batches = jax.vmap(lambda k: sample_chunks(transitions, k, batch_size, horizon, discount))(
        batch_keys
    )
    return agent.update(batches, jr.fold_in(key, 1))


def _online_call(
    agent, transitions, buffer, key, num_updates, batch_size, online_size, horizon, discount
):
    """One seed's online updates, on batches mixing the offline data and its replay buffer
    (the buffer alone when there is no offline data, `transitions=None`)."""

    def both(k):
        k1, k2 = jr.split(k)
        online = buffer.sample(k2, online_size, horizon, discount)
        if transitions is None:  # online only: no offline data to mix in
            return online
        offline = sample_chunks(transitions, k1, batch_size - online_size, horizon, discount)
        return mixed_batch(offline, online)

    batches = jax.vmap(both)(jr.split(jr.fold_in(key, 0), num_updates))
    return agent.update(batches, jr.fold_in(key, 1))


@eqx.filter_jit
def _offline_calls(
    agents, transitions, seeds, steps, num_updates, batch_size, horizon, discount, sharding
):
    """Every seed's offline block, its key derived from its seed and step."""

    def one(agent, seed, step):
        key = jr.fold_in(jr.key(seed), step)
        return _offline_call(agent, transitions, key, num_updates, batch_size, horizon, discount)

    return constrain(_per_seed(one, agents, seeds, steps), sharding)


def _select(mask, new: PyTree, old: PyTree) -> PyTree:
    """`new` where `mask` (one flag per seed), `old` elsewhere."""
    new_arrays, static = eqx.partition(new, eqx.is_array)
    old_arrays = eqx.filter(old, eqx.is_array)

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return eqx.combine(jax.tree.map(pick, new_arrays, old_arrays), static)


@eqx.filter_jit
def _online_calls(
    agents,
    transitions,
    buffers,
    seeds,
    steps,
    active,
    num_updates,
    batch_size,
    online_size,
    horizon,
    discount,
    sharding,
):
    """The online updates of the seeds flagged `active` (the others are returned unchanged)."""

    def one(agent, buffer, seed, step):
        key = jr.fold_in(jr.key(seed), step)
        return _online_call(
            agent,
            transitions,
            buffer,
            key,
            num_updates,
            batch_size,
            online_size,
            horizon,
            discount,
        )

    new, metrics = _per_seed(one, agents, buffers, seeds, steps)
    if seeds.shape[0] > 1:  # a single seed is always active: the loop calls only when it is
        new = _select(active, new, agents)
    return constrain((new, metrics), sharding)


@eqx.filter_jit
def _online_actions(agents, observations, seeds, episodes, chunk_indices, size, sharding):
    """Each seed's agent chunk and uniform random chunk for its current chunk of its episode."""

    def one(agent, observation, seed, episode, chunk_index):
        action_key, uniform_key = _episode_keys(jr.key(seed), episode)
        action = agent.policy(observation[None], jr.fold_in(action_key, chunk_index))[0]
        uniform = jr.uniform(jr.fold_in(uniform_key, chunk_index), (size,), minval=-1)
        return action, uniform

    outputs = _per_seed(one, agents, observations, seeds, episodes, chunk_indices)
    return constrain(outputs, sharding)


@eqx.filter_jit
def _acting_policies(agents, sharding):
    """Every seed's [`acting_policy`][interpolant_rl.agents.AbstractAgent.acting_policy],
    stacked: what an evaluation acts with, holding only the arrays acting reads (so each call
    of `_evaluation_actions` hands over those, not the whole agents)."""
    return constrain(_per_seed(lambda agent: agent.acting_policy(), agents), sharding)


@eqx.filter_jit
def _evaluation_actions(policies, observations, key_data, sharding):
    """One evaluation chunk of every episode under way, for every seed (observations and key
    data with axes `(seed, episode slot, ...)`): each episode splits its own key and acts with
    the second half, so its actions do not depend on which episodes run beside it."""

    def one(policy, observations, data):
        def episode(observation, data):
            key, action_key = jr.split(jr.wrap_key_data(data))
            return policy(observation[None], action_key)[0], jr.key_data(key)

        return jax.vmap(episode)(observations, data)

    return constrain(_per_seed(one, policies, observations, key_data), sharding)


@eqx.filter_jit(donate="all")
def _add_chunks(buffers, rows, counts, sharding):
    """Append the first `counts[s]` of seed `s`'s `horizon` rows to its buffer."""

    def one(buffer, rows, count):
        def body(buffer, inputs):
            index, row = inputs
            keep = index < count
            # a row that is not kept rewrites the row already there and leaves size/position
            current = jax.tree.leaves(
                jax.tree.map(lambda column: column[buffer.position], buffer.storage)
            )
            row = [jnp.where(keep, new, old) for new, old in zip(row, current, strict=True)]
            added = buffer.add(*row)
            size = jnp.where(keep, added.size, buffer.size)
            position = jnp.where(keep, added.position, buffer.position)
            return eqx.tree_at(lambda b: (b.size, b.position), added, (size, position)), None

        horizon = rows[0].shape[0]
        buffer, _ = jax.lax.scan(body, buffer, (jnp.arange(horizon), rows))
        return buffer

    return constrain(_per_seed(one, buffers, rows, counts), sharding)


# --------------------------------------------------------------------------------------------
# Evaluation


def evaluation_env(env, render: bool = False):
    """A second environment configured like `env`, for evaluation: evaluating in the training
    environment would reset it in the middle of an online episode, which then continued from
    the evaluation's last state. Registered environments (OGBench's) are re-made from their
    spec (the same id, keyword arguments and wrappers; with `render`, in `rgb_array` render
    mode where the environment declares it — OGBench's render frames in any mode); others are
    deep-copied. `None` for `None`."""
    if env is None:
        return None
    if getattr(env, "spec", None) is not None:
        if render and "rgb_array" in env.metadata.get("render_modes", []):
            return gymnasium.make(env.spec, render_mode="rgb_array")
        return gymnasium.make(env.spec)
    return copy.deepcopy(env)


def evaluation_envs(env, count: int) -> list:
    """`env` and `count - 1` more environments configured like it
    ([`evaluation_env`][interpolant_rl.train.evaluation_env] copies): the slots in which one
    seed's evaluation episodes run side by side."""
    return [env] + [evaluation_env(env) for _ in range(count - 1)]


def _evaluation_chunks(policies, observations, key_data, sharding):
    """One step of an evaluation, on the host: the action chunk and next key data of every
    episode slot of every seed (NumPy arrays with axes `(seed, slot, ...)`), from the stacked
    `_acting_policies`, in one call."""
    chunks, key_data = _evaluation_actions(
        policies, put(observations, sharding), put(key_data, sharding), sharding
    )
    return get(chunks), get(key_data)


def _frame(env) -> np.ndarray:
    frame = env.render()
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[-1] == 3):
        raise ValueError(
            "video_episodes: the evaluation environment does not render RGB frames "
            "(make it with render_mode='rgb_array')"
        )
    return frame


def _evaluate(
    agents, env_slots, which, first_seeds, episodes, horizon, sharding, videos=None, record=0
) -> dict[int, dict[str, float]]:
    """The evaluation of the seeds with indices `which`: seed `s` runs `episodes` episodes,
    seeded `first_seeds[s]`, `first_seeds[s] + 1`, ..., in its environments `env_slots[s]`
    side by side (a slot takes the next episode when its episode ends), each action chunk
    executed open-loop; one call computes the chunks of every running episode of every seed.
    Episode `e` acts with its own key (`jax.random.key(first_seeds[s] + e)`, split before
    each chunk), so the results do not depend on the number of slots (up to float rounding
    of the batched products). Returns each seed's mean `success` (the last step's
    `info["success"]`) and `episode_return`. With `record > 0`, the frames of each seed's
    episodes `0 .. record - 1` (after the reset and after every step) are put in `videos` as
    `videos[s, e]`."""
    num, width = len(env_slots), len(env_slots[0])
    key_data = np.zeros((num, width, *np.shape(jr.key_data(jr.key(0)))), np.uint32)
    observations = None
    next_episode = dict.fromkeys(which, 0)
    slot_episode, total = {}, {}
    successes = {s: np.zeros(episodes) for s in which}
    returns = {s: np.zeros(episodes) for s in which}

    def start(s, j) -> bool:
        nonlocal observations
        if next_episode[s] == episodes:
            return False
        episode = slot_episode[s, j] = next_episode[s]
        next_episode[s] += 1
        seed = first_seeds[s] + episode
        ob, _ = env_slots[s][j].reset(seed=seed)
        if observations is None:
            observations = np.zeros((num, width, *np.shape(ob)), np.float32)
        observations[s, j] = ob
        key_data[s, j] = np.asarray(jr.key_data(jr.key(seed)))
        total[s, j] = 0.0
        if episode < record:
            videos[s, episode] = [_frame(env_slots[s][j])]
        return True

    running = [(s, j) for s in which for j in range(width) if start(s, j)]
    policies = _acting_policies(agents, sharding)
    while running:
        chunks, new_key_data = _evaluation_chunks(policies, observations, key_data, sharding)
        for s, j in list(running):
            key_data[s, j] = new_key_data[s, j]
            env, done = env_slots[s][j], False
            recording = slot_episode[s, j] < record
            for action in chunks[s, j].reshape(horizon, -1):
                ob, reward, terminated, truncated, info = env.step(action)
                if recording:
                    videos[s, slot_episode[s, j]].append(_frame(env))
                total[s, j] += float(reward)
                done = terminated or truncated
                if done:
                    break
            observations[s, j] = ob
            if done:
                successes[s][slot_episode[s, j]] = float(info.get("success", 0.0))
                returns[s][slot_episode[s, j]] = total[s, j]
                if not start(s, j):
                    running.remove((s, j))
    return {
        s: dict(success=float(np.mean(successes[s])), episode_return=float(np.mean(returns[s])))
        for s in which
    }


def evaluate(
    agent: AbstractAgent,
    env,
    episodes: int,
    horizon: int,
    seed: int,
    parallel_episodes: int | None = None,
    video_episodes: int = 0,
    video_dir: str | Path | None = None,
) -> dict[str, float]:
    """Run `episodes` episodes of `agent` in `env` (seeded `seed`, `seed + 1`, ...), executing
    each action chunk open-loop; returns the mean `success` (the last step's
    `info["success"]`) and `episode_return`.

    This is the training loop's evaluation of one seed: `parallel_episodes` episodes (default:
    all) run side by side in copies of `env`
    ([`evaluation_envs`][interpolant_rl.train.evaluation_envs], made for this call), one
    batched act call per chunk for all of them; in episode `e` the key starts as
    `jax.random.key(seed + e)` and is split before each chunk, the second half acting. `env`
    may also be a list of environments, the slots themselves (e.g. made once with
    `evaluation_envs` for many evaluations); `parallel_episodes` is then their number. With
    `video_episodes = n`, episodes `0 .. n - 1` are recorded to `video_dir/episode{e}.mp4`
    (the environments must render RGB frames; `pip install "interpolant_rl[video]"`).
    """
    if video_episodes and video_dir is None:
        raise ValueError("evaluate: video_episodes needs a video_dir")
    if video_episodes:
        check_video_support()
    sharding = seed_sharding(1, jax.local_devices()[:1])
    if isinstance(env, list | tuple):
        slots = list(env)
    else:
        slots = evaluation_envs(env, min(episodes, parallel_episodes or episodes))
    videos = {}
    result = _evaluate(
        _stack(agent), [slots], [0], [seed], episodes, horizon, sharding, videos, video_episodes
    )[0]
    for (_, episode), frames in sorted(videos.items()):
        write_mp4(Path(video_dir) / f"episode{episode}.mp4", np.stack(frames), _fps(slots[0]))
    return result


def _fps(env) -> float:
    return float(env.metadata.get("render_fps") or 30)


# --------------------------------------------------------------------------------------------
# The driver


def _check_finite(metrics, which, steps, seeds) -> dict[int, dict[str, float]]:
    """The last value of each metric of the seeds `which`; `NonFiniteLossError` if any is
    not finite."""
    lasts = {}
    for s in which:
        for name, values in metrics.items():
            if not np.all(np.isfinite(values[s])):
                raise NonFiniteLossError(
                    f"{name} became non-finite by step {steps[s]} (seed {seeds[s]})"
                )
        lasts[s] = {name: float(values[s][-1]) for name, values in metrics.items()}
    return lasts


def _load(path: Path, agents, buffers, seeds, names):
    """`(agents, buffers, steps, episodes)` from the checkpoint at `path`, checked to be one of
    `seeds` (and of the sweep members `names`, when it records members). A checkpoint without
    `seeds` in its header was written by `train` before it ran on a seed axis (version 0.1.0):
    one unstacked agent and buffer, read for a run of one seed."""
    saved = read_checkpoint_header(path)
    saved_seeds = saved.get("seeds", seeds if len(seeds) == 1 else None)
    if saved_seeds != seeds:
        raise CheckpointError(
            f"{path}: a checkpoint of seeds {saved.get('seeds')}, not of this run's seeds {seeds}"
        )
    if saved.get("members", names) != names:
        raise CheckpointError(
            f"{path}: a checkpoint of members {saved['members']}, not of this run's {names}"
        )
    if "seeds" not in saved:
        (agent, buffer), saved = load_checkpoint(path, (_entry(agents, 0), _entry(buffers, 0)))
        return _stack(agent), _stack(buffer), [saved["step"]], [saved["episode"]]
    (agents, buffers), saved = load_checkpoint(path, (agents, buffers))
    return agents, buffers, list(saved["seed_steps"]), list(saved["seed_episodes"])


def train_seeds(
    agents: AbstractAgent,
    dataset: Transitions | None,
    envs: Sequence[Any] | None,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    header: dict[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    eval_envs: Sequence[Any] | None = None,
    eval_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
    on_evaluation: Callable[[AbstractAgent, dict[int, dict[str, Any]]], None] | None = None,
    members: Sequence[SweepMember] | None = None,
) -> tuple[AbstractAgent, list[list[dict[str, Any]]]]:
    """Train $N \\ge 1$ seeds of one configuration together, offline on `dataset` then online,
    with evaluations, logs and checkpoints (see the module docstring): every device computation
    is one jitted call for all seeds, sharded over `devices`.

    Seed $s$ is `config.seed + s`; its random draws derive from it alone, so its run does not
    depend on the other seeds and matches a one-seed run of `config.seed + s` (e.g.
    [`train`][interpolant_rl.train.train] of an agent made from `jax.random.key(config.seed +
    s)`) to float rounding. Online, seeds act one chunk each per round; a seed that reaches an
    evaluation mark, or an episode end with a checkpoint due, waits until all have, so the
    evaluations run together and the checkpoint is taken with every seed between episodes.

    **Arguments:**

    - `agents`: $N$ freshly created agents, stacked (e.g.
      [`make_agents`][interpolant_rl.train.make_agents]`(name, obs_dim, action_dim,
      range(config.seed, config.seed + N), agent_config)`); entry $s$ trains as seed
      `config.seed + s`. Also the template a checkpoint is read into.
    - `dataset`: the offline [`Transitions`][interpolant_rl.data.Transitions], shared by all seeds,
      or `None` for an online-only run (`offline_steps = 0`; every batch from the replay buffer,
      whatever `online_fraction` says).
    - `envs`: $N$ gymnasium environments, one per seed (evaluation and the online phase); or
      `None` when `online_steps == 0` and evaluation is not wanted.
    - `config`: the schedule; `config.seed` is the first seed.
    - `run_dir`: where the logs (`train.jsonl/csv`, `eval.jsonl/csv`, and TensorBoard's with
      `config.tensorboard`) go: `run_dir` itself for one seed, `{run_dir}/seed{k}/` for seed
      `k` of several (each a run directory for `experiments/plot.py`); the checkpoint of all
      seeds is `{run_dir}/checkpoint.eqx`.
    - `header`: extra JSON recorded in every checkpoint (e.g. the full run configuration).
    - `resume`: continue from `{run_dir}/checkpoint.eqx` (written for the same seeds).
    - `progress`: a callable `progress(steps, info)`, called for each seed's logged rows with
      `info["seed"]` the seed; `steps` summed over all calls reaches $N\\times$ the total steps.
    - `devices`: the devices to shard the seeds over (default: this process's,
      `jax.local_devices()`, for several seeds, its first for one); $N$ must be a multiple of
      their number.
    - `eval_envs`: the $N$ environments evaluations run in (default:
      [`evaluation_env`][interpolant_rl.train.evaluation_env] of each of `envs`, separate
      copies, so an evaluation never interrupts an online episode); each seed's
      `config.parallel_episodes` episodes run side by side in copies of its environment
      ([`evaluation_envs`][interpolant_rl.train.evaluation_envs]), one act call per chunk for
      all of them.
    - `eval_metrics`: metrics derived from an evaluation's (`success`, `episode_return`), added to
      its row, e.g. D4RL's normalised score:
      `lambda row: dict(normalized_score=d4rl_normalized_score("hopper-medium-v2", row["episode_return"]))`.
    - `on_evaluation`: called after each evaluation as `on_evaluation(agents, rows)`, with the
      stacked agents as evaluated (on the host) and `rows` mapping each evaluated seed's index
      to its logged row, e.g. to keep snapshots of the policy
      ([`train_behaviour_policy`][interpolant_rl.train.train_behaviour_policy] does).
    - `members`: what each entry of `agents` is, for agents stacked over hyperparameter values
      as well as seeds ([`make_sweep`][interpolant_rl.train.make_sweep] returns them): entry
      $s$ trains with seed `members[s].seed` (its random draws derive from it alone, as
      above) and logs to `{run_dir}/{members[s].name}` (e.g. `tau=3/seed1`, or `seed1`, also
      for a single member). Default: seeds `config.seed + s`, as described above.

    **Returns:** `(agents, eval_rows)`: the trained stacked agents (sharded like the inputs)
    and, per seed, its evaluation rows.

    The checkpoint header holds `header`, `train_config`, `seeds`, `seed_steps` and
    `seed_episodes` (per seed), and `step` and `episode` (their minimum). Several processes
    (hosts) either each train their own members on their own devices (the default, and what
    `run.py --distributed` does: see [`process_block`][interpolant_rl.train.process_block]),
    or, with `devices` spanning several processes, all call `train_seeds` identically as one
    program, each stepping every environment, and only process 0 writes files.
    """
    run_dir = Path(run_dir)
    num = _num_seeds(agents)
    # the chunk length h and discount of the data the agent learns from: its critic's, stated
    # once (a chunk's reward is discounted within the chunk, its bootstrap by gamma^h)
    horizon, discount = agents.critic.horizon, agents.critic.discount
    given_members = members is not None
    if members is None:
        members = [SweepMember(config.seed + s) for s in range(num)]
    members = list(members)
    if len(members) != num:
        raise ValueError(f"train_seeds: {num} stacked agents, but {len(members)} members")
    seeds = [member.seed for member in members]
    swept = any(member.values for member in members)
    names = [member.name for member in members] if swept else None
    if devices is None:  # this process's devices (several processes: each its own members)
        devices = jax.local_devices()[:1] if num == 1 else jax.local_devices()
    sharding = seed_sharding(num, devices)
    # One program spanning several processes' devices: every process runs this whole loop with
    # the same arguments, process 0 writes. Otherwise (the usual case, also one process of a
    # multi-process run with its own members) this process owns every file it writes.
    spanning = any(d.process_index != jax.process_index() for d in sharding.mesh.devices.flat)
    writer = not spanning or jax.process_index() == 0
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    if envs is not None:
        envs = list(envs)
        if len(envs) != num:
            raise ValueError(f"train_seeds: {num} seeds need {num} environments, got {len(envs)}")
    elif config.online_steps > 0:
        raise ValueError("train_seeds: online_steps > 0 needs environments (envs=None)")
    if config.video_episodes:
        check_video_support()  # before any work
    if eval_envs is None and envs is not None:
        eval_envs = [evaluation_env(env, render=config.video_episodes > 0) for env in envs]
    if eval_envs is not None:  # each seed's episodes side by side, in copies of its environment
        width = min(config.eval_episodes, config.parallel_episodes or config.eval_episodes)
        eval_envs = [evaluation_envs(env, width) for env in eval_envs]
    checkpoint_path = run_dir / "checkpoint.eqx"
    if dataset is None:  # online only
        if envs is None:
            raise ValueError("train_seeds: an online-only run (dataset=None) needs environments")
        if config.offline_steps > 0:
            raise ValueError(
                "train_seeds: offline_steps > 0 needs an offline dataset (dataset=None)"
            )
        obs_dim = int(np.prod(envs[0].observation_space.shape))
        action_dim = int(np.prod(envs[0].action_space.shape))
    else:
        obs_dim, action_dim = dataset.obs_dim, dataset.action_dim
    total = config.offline_steps + config.online_steps
    learning_starts = config.offline_steps + config.random_action_steps
    buffer = ReplayBuffer.create(obs_dim, action_dim, max(config.online_steps, 1))
    buffers = jax.tree.map(lambda x: np.broadcast_to(x, (num, *x.shape)), buffer)
    steps, episodes = [0] * num, [0] * num
    if resume:
        agents, buffers, steps, episodes = _load(
            checkpoint_path, get_tree(agents), buffers, seeds, names
        )
    elif writer:
        # a fresh run: an older run's checkpoint must not outlive it (resuming would continue that
        # run's weights under this run's metrics)
        checkpoint_path.unlink(missing_ok=True)
    agents, buffers = put_tree(agents, sharding), put_tree(buffers, sharding)
    dataset = put_tree(dataset, replicated)
    seed_array = put(np.asarray(seeds, np.int32), sharding)
    log_dirs = (
        [run_dir] if num == 1 and not given_members else [m.directory(run_dir) for m in members]
    )
    eval_rows = [
        read_rows(directory / "eval.jsonl", until=steps[s]) if resume else []
        for s, directory in enumerate(log_dirs)
    ]
    if spanning:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("train_seeds: logs read")
    loggers = []
    if writer:
        for s, directory in enumerate(log_dirs):
            resume_step = steps[s] if resume else None
            wandb = config.wandb
            if wandb is not None and num > 1:  # one W&B run per seed, grouped
                name = wandb.name or run_dir.name
                label = members[s].name.replace("/", "-")
                wandb = dataclasses.replace(
                    wandb, name=f"{name}-{label}", group=wandb.group or name
                )
            loggers.append(
                MetricsLogger(
                    directory,
                    resume_step=resume_step,
                    tensorboard=config.tensorboard,
                    wandb=wandb,
                    config=dict(header or {}, seed=seeds[s], **dict(members[s].values))
                    if wandb is not None
                    else None,
                )
            )
    # the schedule with the data's chunking (the critic's), as the checkpoint's record of the run
    schedule = dict(dataclasses.asdict(config), horizon=horizon, discount=discount)
    header = dict(header or {}, train_config=schedule, seeds=seeds)
    if swept:
        header["members"] = names
    last_checkpoint = list(steps)

    def to_devices(x):
        return put(np.asarray(x), sharding)

    def log(s, stream, row):
        if stream == "eval":
            eval_rows[s].append(row)
        if loggers:
            loggers[s].log(stream, row)

    def save():
        state = (get_tree(agents), get_tree(buffers))
        if writer:
            counters = dict(seed_steps=list(steps), seed_episodes=list(episodes))
            save_checkpoint(
                checkpoint_path,
                state,
                dict(header, step=min(steps), episode=min(episodes), **counters),
            )

    def evaluate_seeds(which):
        if eval_envs is None:
            return
        which = [s for s in which if not any(row["step"] == steps[s] for row in eval_rows[s])]
        if not which:
            return
        start = time.perf_counter()
        videos = {}
        results = _evaluate(
            agents,
            eval_envs,
            which,
            [_evaluation_seed(step) for step in steps],
            config.eval_episodes,
            horizon,
            sharding,
            videos,
            config.video_episodes,
        )
        elapsed = time.perf_counter() - start
        for (s, episode), frames in sorted(videos.items()):
            if loggers:
                path = log_dirs[s] / "videos" / f"step{steps[s]}-episode{episode}.mp4"
                write_mp4(path, np.stack(frames), _fps(eval_envs[s][0]))
                loggers[s].video("eval", steps[s], f"video{episode}", path)
        rows = {}
        for s in which:
            derived = {} if eval_metrics is None else eval_metrics(results[s])
            rows[s] = dict(step=steps[s], **results[s], **derived, eval_time_s=elapsed)
            log(s, "eval", rows[s])
            if progress is not None:
                progress(0, dict(rows[s], seed=seeds[s], member=s))
        if on_evaluation is not None:
            on_evaluation(get_tree(agents), rows)

    def due(s):  # an unforced evaluation: at the interval's multiples
        return steps[s] % config.eval_interval == 0 and steps[s] > 0

    started = time.monotonic()

    def out_of_time() -> bool:
        over = config.time_limit_s is not None and time.monotonic() - started >= config.time_limit_s
        if spanning:  # every process must stop at the same boundary
            from jax.experimental import multihost_utils

            over = bool(multihost_utils.broadcast_one_to_all(np.asarray(over)))
        return over

    try:
        if resume:  # an interruption may have come between an update and its evaluation
            evaluate_seeds([s for s in range(num) if due(s)])
        # ---- offline: all seeds move together. Each row also records the call's wall time
        # (dispatch to metrics on the host) and the host's time between the previous call's
        # metrics and this call's dispatch, evaluations and checkpoints excluded: the device
        # idles then, so sum(host) / sum(host + call) is the loop's own idle fraction.
        ready, paused, stopped = None, 0.0, False
        while steps[0] < config.offline_steps:
            if out_of_time():
                stopped = True
                break
            step = steps[0]
            until_eval = config.eval_interval - step % config.eval_interval
            n = min(config.updates_per_call, config.offline_steps - step, until_eval)
            dispatch = time.perf_counter()
            host_time = 0.0 if ready is None else dispatch - ready - paused
            new_agents, metrics = _offline_calls(
                agents,
                dataset,
                seed_array,
                to_devices(np.asarray(steps, np.int32)),
                n,
                config.batch_size,
                horizon,
                discount,
                sharding,
            )
            metrics = get_tree(metrics)
            ready = time.perf_counter()
            timing = dict(call_time_s=ready - dispatch, host_time_s=host_time)
            lasts = _check_finite(metrics, range(num), [step + n] * num, seeds)
            agents, steps = new_agents, [step + n] * num
            for s in range(num):
                log(s, "train", dict(step=steps[s], **lasts[s], **timing))
            if progress is not None:
                for s in range(num):
                    progress(n, dict(lasts[s], seed=seeds[s], member=s))
            pause = time.perf_counter()
            evaluate_seeds([s for s in range(num) if due(s)])
            if steps[0] - last_checkpoint[0] >= config.checkpoint_interval:
                save()
                last_checkpoint = list(steps)
            paused = time.perf_counter() - pause
        # ---- online: one chunk per seed per round
        online_size = config.batch_size if dataset is None else _online_size(config)
        chunk_size = horizon * action_dim
        observations = np.zeros((num, obs_dim), np.float32)
        at_boundary = [True] * num  # between episodes: the next chunk starts one
        chunk_index = [0] * num
        evaluation_due, checkpoint_due = [False] * num, [False] * num
        while not stopped and any(step < total for step in steps):
            if all(at_boundary) and out_of_time():
                break
            running = [
                s
                for s in range(num)
                if steps[s] < total and not (evaluation_due[s] or checkpoint_due[s])
            ]
            if not running:  # every seed waits at a mark: evaluate, then checkpoint if possible
                evaluate_seeds([s for s in range(num) if evaluation_due[s]])
                if any(checkpoint_due) and all(at_boundary):
                    save()
                    last_checkpoint = list(steps)
                evaluation_due, checkpoint_due = [False] * num, [False] * num
                continue
            for s in running:
                if at_boundary[s]:
                    observations[s], _ = envs[s].reset(seed=_reset_seed(seeds[s], episodes[s]))
                    at_boundary[s], chunk_index[s] = False, 0
            actions, uniforms = get_tree(
                _online_actions(
                    agents,
                    to_devices(observations),
                    seed_array,
                    to_devices(np.asarray(episodes, np.int32)),
                    to_devices(np.asarray(chunk_index, np.int32)),
                    chunk_size,
                    sharding,
                )
            )
            # the chunk's transitions, in `ReplayBuffer.add`'s order of fields
            rows = [
                np.zeros((num, horizon, *shape), np.float32)
                for shape in ((obs_dim,), (action_dim,), (), (), (obs_dim,), ())
            ]
            executed, episode_over = [0] * num, [False] * num
            for s in running:
                # the first `random_action_steps` online steps are uniformly random
                random_left = learning_starts - steps[s]
                chunk = actions[s]
                if random_left >= horizon:
                    chunk = uniforms[s]
                elif random_left > 0:  # the chunk crosses into the agent's phase
                    head = random_left * action_dim
                    chunk = np.concatenate([uniforms[s][:head], actions[s][head:]])
                chunk_index[s] += 1
                ob = observations[s]
                for j, action in enumerate(chunk.reshape(horizon, -1)):
                    next_ob, reward, terminated, truncated, _ = envs[s].step(action)
                    episode_over[s] = terminated or truncated
                    row = (ob, action, reward, 1.0 - float(terminated), next_ob, episode_over[s])
                    for column, value in zip(rows, row, strict=True):
                        column[s, j] = value
                    ob, executed[s] = next_ob, executed[s] + 1
                    if episode_over[s] or steps[s] + executed[s] >= total:
                        break
                observations[s] = ob
            buffers = _add_chunks(
                buffers,
                [to_devices(column) for column in rows],
                to_devices(np.asarray(executed)),
                sharding,
            )
            first_steps = steps
            steps = [step + count for step, count in zip(steps, executed, strict=True)]
            # no updates while the actions are random; then utd updates per executed step
            counts = {
                s: config.utd * (steps[s] - max(first_steps[s], learning_starts)) for s in running
            }
            counts = {s: count for s, count in counts.items() if count > 0}
            step_array = to_devices(np.asarray(steps, np.int32))
            lasts = {}
            for num_updates in sorted(set(counts.values())):
                group = [s for s, count in counts.items() if count == num_updates]
                new_agents, metrics = _online_calls(
                    agents,
                    dataset,
                    buffers,
                    seed_array,
                    step_array,
                    to_devices(np.isin(np.arange(num), group)),
                    num_updates,
                    config.batch_size,
                    online_size,
                    horizon,
                    discount,
                    sharding,
                )
                lasts.update(_check_finite(get_tree(metrics), group, steps, seeds))
                agents = new_agents
            for s in running:
                if s in lasts:
                    log(s, "train", dict(step=steps[s], **lasts[s], online=1))
                if steps[s] % config.eval_interval < executed[s]:
                    evaluation_due[s] = True
                if episode_over[s] or steps[s] >= total:
                    at_boundary[s], episodes[s] = True, episodes[s] + 1
                    if steps[s] - last_checkpoint[s] >= config.checkpoint_interval:
                        checkpoint_due[s] = True
            if progress is not None:
                for s in running:
                    progress(executed[s], dict(lasts.get(s, {}), seed=seeds[s], member=s))
        evaluate_seeds(range(num))
        save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        for logger in loggers:
            logger.close()
    return agents, eval_rows


def train(
    agent: AbstractAgent,
    dataset: Transitions | None,
    env,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    header: dict[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    eval_env=None,
    eval_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None,
    on_evaluation: Callable[[AbstractAgent, dict[str, Any]], None] | None = None,
) -> tuple[AbstractAgent, list[dict[str, Any]]]:
    """Train one `agent` offline on `dataset`, then online in `env`: [`train_seeds`][interpolant_rl.train.train_seeds]
    with one seed, `config.seed` (the agent stacked on a seed axis of length 1, on the first
    device), returning the agent unstacked.

    **Arguments:**

    - `agent`: a freshly created agent (also the template a checkpoint is read into).
    - `dataset`: the offline [`Transitions`][interpolant_rl.data.Transitions] (`None`: online
      only).
    - `env`: a gymnasium environment (evaluation and the online phase); may be `None` when
      `online_steps == 0` and evaluation is not wanted (`eval_interval` larger than the run).
    - `config`: the schedule.
    - `run_dir`: where `train.jsonl/csv`, `eval.jsonl/csv` and `checkpoint.eqx` go.
    - `header`: extra JSON recorded in every checkpoint (e.g. the full run configuration).
    - `resume`: continue from `run_dir/checkpoint.eqx`.
    - `progress`: a callable `progress(steps_done, info: dict)` (e.g. a progress bar's update).
    - `eval_env`: the environment evaluations run in (default:
      [`evaluation_env`][interpolant_rl.train.evaluation_env]`(env)`, a separate copy, so an
      evaluation never interrupts an online episode).
    - `eval_metrics`: metrics derived from each evaluation (see `train_seeds`).
    - `on_evaluation`: called after each evaluation as `on_evaluation(agent, row)` with the
      agent as evaluated and its row.

    **Returns:** `(agent, eval_rows)`.
    """
    agents, (eval_rows,) = train_seeds(
        _stack(agent),
        dataset,
        None if env is None else [env],
        config,
        run_dir,
        header=header,
        resume=resume,
        progress=progress,
        eval_envs=None if eval_env is None else [eval_env],
        eval_metrics=eval_metrics,
        on_evaluation=None
        if on_evaluation is None
        else lambda stacked, rows: on_evaluation(select_seed(stacked, 0), rows[0]),
    )
    return select_seed(agents, 0), eval_rows
