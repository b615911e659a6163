r"""Several seeds of one configuration trained as one program, sharded over the devices.

[`train_seeds`][interpolant_rl.train.train_seeds] runs the schedule of
[`train`][interpolant_rl.train.train] for $N$ agents at once. The agents are one *stacked*
PyTree (every array has a leading seed axis of length $N$; [`make_agents`][interpolant_rl.train.make_agents]
builds it), and every device computation is one jitted call that vmaps the single-seed program
over that axis:

- **offline:** one call per block of `updates_per_call` updates, each seed sampling its own
  batches with its own key;
- **online:** $N$ environments (one per seed, reset with that seed's episode seeds), one call
  for the actions of all $N$ per chunk, $N$ stacked replay buffers, one call for all the
  updates of a chunk;
- **evaluation:** $N$ environments stepped together, one call for the actions of all $N$ per
  chunk.

**Seeding.** Seed $s$ of $N$ is `config.seed + s`, and every random draw of seed $s$ derives
from it exactly as [`train`][interpolant_rl.train.train]'s do from `config.seed` (same keys,
same environment seeds), so seed $s$ of an $N$-seed run reproduces `train` run alone with
`TrainConfig(seed=config.seed + s)` and an agent made with `jax.random.key(config.seed + s)`,
up to float rounding: a vmapped program may order a reduction differently, and learning
amplifies a last-bit difference over many updates (the tests hold the agents to `rtol = 1e-4`
after 70 tiny updates).

**Sharding.** With more than one device (`jax.devices()`, or `devices=`), the seed axis is
split over a one-dimensional mesh `Mesh(devices, ("seeds",))` with
`NamedSharding(mesh, PartitionSpec("seeds"))`: each device trains $N / \#\text{devices}$ seeds
and the offline dataset is replicated on every device. No communication is needed between
seeds, so this scales with the devices. $N$ must be a multiple of the number of devices
(a one-line `ValueError` otherwise).

**Episodes of different lengths.** Seeds act in lockstep, one chunk each per round, but their
step counts drift apart online: a chunk stops early at an episode end, so seeds reach the
evaluation and checkpoint marks in different rounds. A seed that reaches one waits (makes no
step) until every seed has reached it; then the due evaluations run together and, once every
seed is at an episode boundary, the checkpoint is written. Waiting changes nothing in a seed's
own run; it costs at most an episode of idle slots per checkpoint.
"""

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

from ..agents import AbstractAgent, make_agent
from ..data import ReplayBuffer, Transitions
from ._checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint
from ._logging import MetricsLogger
from ._loop import (
    _check_finite,
    _episode_keys,
    _evaluation_seed,
    _offline_call,
    _online_call,
    _online_size,
    _reset_seed,
    evaluation_env,
    NonFiniteLossError,
    TrainConfig,
)


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
    agent, e.g. to `act` with or to compare with a single-seed run."""
    arrays, static = eqx.partition(agents, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[index], arrays), static)


def seed_sharding(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> NamedSharding:
    """The sharding of a seed axis of length `num_seeds` over `devices` (default: all of
    `jax.devices()`): `NamedSharding(Mesh(devices, ("seeds",)), PartitionSpec("seeds"))`.

    Raises a one-line `ValueError` unless `num_seeds` is a multiple of the number of devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be >= 1, got {num_seeds}")
    if num_seeds % len(devices):
        raise ValueError(
            f"{num_seeds} seeds cannot be split evenly over {len(devices)} devices: use a "
            f"multiple of {len(devices)} seeds, or fewer devices (e.g. CUDA_VISIBLE_DEVICES)"
        )
    return NamedSharding(Mesh(np.asarray(devices), ("seeds",)), PartitionSpec("seeds"))


# --------------------------------------------------------------------------------------------
# Moving arrays between the host and the (possibly several, possibly multi-host) devices


def _put(x, sharding: NamedSharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    x = np.asarray(x)  # the same on every process: each runs the whole host-side loop
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _put_tree(tree: PyTree, sharding: NamedSharding) -> PyTree:
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: _put(x, sharding), arrays), static)


def _get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def _get_tree(tree: PyTree) -> PyTree:
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(_get, arrays), static)


def _constrain(tree: PyTree, sharding: NamedSharding) -> PyTree:
    arrays, static = eqx.partition(tree, eqx.is_array)
    arrays = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), arrays)
    return eqx.combine(arrays, static)


def _select(mask, new: PyTree, old: PyTree) -> PyTree:
    """`new` where `mask` (one flag per seed), `old` elsewhere."""
    new_arrays, static = eqx.partition(new, eqx.is_array)
    old_arrays = eqx.filter(old, eqx.is_array)

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return eqx.combine(jax.tree.map(pick, new_arrays, old_arrays), static)


# --------------------------------------------------------------------------------------------
# The vmapped programs: each is `train`'s single-seed program under `filter_vmap`, with the
# seed's key derived inside from its seed and step exactly as `train` derives it


@eqx.filter_jit
def _offline_calls(
    agents, transitions, seeds, steps, num_updates, batch_size, horizon, discount, sharding
):
    def one(agent, seed, step):
        key = jr.fold_in(jr.key(seed), step)
        return _offline_call(agent, transitions, key, num_updates, batch_size, horizon, discount)

    return _constrain(eqx.filter_vmap(one)(agents, seeds, steps), sharding)


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

    new, metrics = eqx.filter_vmap(one)(agents, buffers, seeds, steps)
    return _constrain((_select(active, new, agents), metrics), sharding)


@eqx.filter_jit
def _online_actions(agents, observations, seeds, episodes, chunk_indices, size, sharding):
    """Each seed's agent chunk and uniform random chunk for its current chunk of its episode
    (the keys of `train`'s online loop)."""

    def one(agent, observation, seed, episode, chunk_index):
        action_key, uniform_key = _episode_keys(jr.key(seed), episode)
        action = agent.policy(observation[None], jr.fold_in(action_key, chunk_index))[0]
        uniform = jr.uniform(jr.fold_in(uniform_key, chunk_index), (size,), minval=-1)
        return action, uniform

    outputs = eqx.filter_vmap(one)(agents, observations, seeds, episodes, chunk_indices)
    return _constrain(outputs, sharding)


@eqx.filter_jit
def _evaluation_actions(agents, observations, key_data, sharding):
    """`evaluate`'s per-chunk step for every seed: split the key, act with the second half."""

    def one(agent, observation, data):
        key, action_key = jr.split(jr.wrap_key_data(data))
        return agent.policy(observation[None], action_key)[0], jr.key_data(key)

    return _constrain(eqx.filter_vmap(one)(agents, observations, key_data), sharding)


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

    return _constrain(eqx.filter_vmap(one)(buffers, rows, counts), sharding)


# --------------------------------------------------------------------------------------------
# Evaluation of several seeds together


def _evaluate_seeds(
    agents, envs, which, first_seeds, episodes, horizon, obs_dim, sharding
) -> dict[int, dict[str, float]]:
    """[`evaluate`][interpolant_rl.train.evaluate] for each seed index `s` in `which` (with
    `first_seeds[s]` as its `seed`), each in its own environment, one vmapped call per chunk."""
    num = len(envs)
    key_data = np.stack([np.asarray(jr.key_data(jr.key(0)))] * num)
    observations = np.zeros((num, obs_dim), np.float32)
    episode = dict.fromkeys(which, 0)
    total = dict.fromkeys(which, 0.0)
    successes = {s: [] for s in which}
    returns = {s: [] for s in which}

    def start(s):
        seed = first_seeds[s] + episode[s]
        ob, _ = envs[s].reset(seed=seed)
        observations[s] = ob
        key_data[s] = np.asarray(jr.key_data(jr.key(seed)))
        total[s] = 0.0

    for s in which:
        start(s)
    running = list(which)
    while running:
        chunks, new_key_data = _evaluation_actions(
            agents, _put(observations, sharding), _put(key_data, sharding), sharding
        )
        chunks, new_key_data = _get(chunks), _get(new_key_data)
        for s in list(running):
            key_data[s] = new_key_data[s]
            done = False
            for action in chunks[s].reshape(horizon, -1):
                ob, reward, terminated, truncated, info = envs[s].step(action)
                total[s] += float(reward)
                done = terminated or truncated
                if done:
                    break
            observations[s] = ob
            if done:
                successes[s].append(float(info.get("success", 0.0)))
                returns[s].append(total[s])
                episode[s] += 1
                if episode[s] == episodes:
                    running.remove(s)
                else:
                    start(s)
    return {
        s: dict(success=float(np.mean(successes[s])), episode_return=float(np.mean(returns[s])))
        for s in which
    }


# --------------------------------------------------------------------------------------------
# The loop


def _num_seeds(agents: AbstractAgent) -> int:
    leaves = jax.tree.leaves(eqx.filter(agents, eqx.is_array))
    sizes = {x.shape[0] if x.ndim else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "train_seeds: agents must be stacked (every array with the same leading seed axis, "
            "as make_agents builds them)"
        )
    return sizes.pop()


def _check_seeds(metrics, which, steps, seeds) -> dict[int, dict[str, float]]:
    lasts = {}
    for s in which:
        try:
            lasts[s] = _check_finite({name: v[s] for name, v in metrics.items()}, steps[s])
        except NonFiniteLossError as error:
            raise NonFiniteLossError(f"{error} (seed {seeds[s]})") from None
    return lasts


def _saved_rows(path: Path, step: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [row for row in rows if row["step"] <= step]


def train_seeds(
    agents: AbstractAgent,
    dataset: Transitions,
    envs: Sequence[Any] | None,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    header: dict[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int, dict[str, Any]], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[AbstractAgent, list[list[dict[str, Any]]]]:
    """Train $N$ seeds of one configuration together, each as [`train`][interpolant_rl.train.train]
    trains one: the same schedule, evaluations, logs and checkpoints, with every device
    computation one jitted call vmapped over the seeds and sharded over `devices`.

    Seed $s$ is `config.seed + s`; its random draws derive from it exactly as `train`'s do
    from `config.seed`, so it reproduces `train(agent_s, dataset, env_s,
    replace(config, seed=config.seed + s), ...)` (with `agent_s` made from
    `jax.random.key(config.seed + s)`) to float32 rounding. Online, seeds act one chunk each
    per round; a seed that reaches an evaluation mark, or an episode end with a checkpoint
    due, waits until all have, so the evaluations run together and the checkpoint is taken
    with every seed between episodes.

    **Arguments:**

    - `agents`: $N$ freshly created agents, stacked (e.g.
      [`make_agents`][interpolant_rl.train.make_agents]`(name, obs_dim, action_dim,
      range(config.seed, config.seed + N), agent_config)`); entry $s$ trains as seed
      `config.seed + s`. Also the template a checkpoint is read into.
    - `dataset`: the offline [`Transitions`][interpolant_rl.data.Transitions], shared by all seeds.
    - `envs`: $N$ gymnasium environments, one per seed (evaluation and the online phase); or
      `None` when `online_steps == 0` and evaluation is not wanted.
    - `config`: the schedule, as for `train`; `config.seed` is the first seed.
    - `run_dir`: seed `k`'s logs go to `{run_dir}/seed{k}/` (`train.jsonl/csv`,
      `eval.jsonl/csv`, as `train` writes them: each is a run directory for
      `experiments/plot.py`); the checkpoint of all seeds is `{run_dir}/checkpoint.eqx`.
    - `header`: extra JSON recorded in every checkpoint.
    - `resume`: continue from `{run_dir}/checkpoint.eqx` (written by `train_seeds` for the
      same seeds).
    - `progress`: a callable `progress(steps, info)`, called for each seed's logged rows with
      `info["seed"]` the seed; `steps` summed over all calls reaches $N\\times$ the total steps.
    - `devices`: the devices to shard the seeds over (default: `jax.devices()`); $N$ must be a
      multiple of their number.

    **Returns:** `(agents, eval_rows)`: the trained stacked agents (sharded like the inputs)
    and, per seed, its evaluation rows.

    The checkpoint header has `train`'s fields (`step` and `episode` are the smallest over the
    seeds), plus `seeds`, and `seed_steps` / `seed_episodes` per seed. Every process of a
    multi-host run must call `train_seeds` identically; only process 0 writes files.
    """
    run_dir = Path(run_dir)
    num = _num_seeds(agents)
    seeds = [config.seed + s for s in range(num)]
    sharding = seed_sharding(num, devices)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    if envs is not None:
        envs = list(envs)
        if len(envs) != num:
            raise ValueError(f"train_seeds: {num} seeds need {num} environments, got {len(envs)}")
    elif config.online_steps > 0:
        raise ValueError("train_seeds: online_steps > 0 needs environments (envs=None)")
    # separate evaluation environments, as in `train`: never reset an online episode midway
    eval_envs = None if envs is None else [evaluation_env(env) for env in envs]
    checkpoint_path = run_dir / "checkpoint.eqx"
    obs_dim, action_dim = dataset.obs_dim, dataset.action_dim
    total = config.offline_steps + config.online_steps
    learning_starts = config.offline_steps + config.random_action_steps
    buffer = ReplayBuffer.create(obs_dim, action_dim, max(config.online_steps, 1))
    buffers = jax.tree.map(lambda x: np.broadcast_to(x, (num, *x.shape)), buffer)
    steps, episodes = [0] * num, [0] * num
    if resume:
        saved = read_checkpoint_header(checkpoint_path)
        if saved.get("seeds") != seeds:
            raise ValueError(
                f"{checkpoint_path}: a checkpoint of seeds {saved.get('seeds')}, not of this "
                f"run's seeds {seeds}"
            )
        (agents, buffers), saved = load_checkpoint(checkpoint_path, (_get_tree(agents), buffers))
        steps, episodes = list(saved["seed_steps"]), list(saved["seed_episodes"])
    agents, buffers = _put_tree(agents, sharding), _put_tree(buffers, sharding)
    dataset = _put_tree(dataset, replicated)
    seed_array = _put(np.asarray(seeds, np.int32), sharding)
    seed_dirs = [run_dir / f"seed{seed}" for seed in seeds]
    eval_rows = [
        _saved_rows(directory / "eval.jsonl", steps[s]) if resume else []
        for s, directory in enumerate(seed_dirs)
    ]
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("train_seeds: logs read")
    loggers = []
    if jax.process_index() == 0:
        for s, directory in enumerate(seed_dirs):
            resume_step = steps[s] if resume else None
            loggers.append(
                MetricsLogger(directory, resume_step=resume_step, tensorboard=config.tensorboard)
            )
    header = dict(header or {}, train_config=dataclasses.asdict(config), seeds=seeds)
    last_checkpoint = list(steps)

    def put(x):
        return _put(np.asarray(x), sharding)

    def log(s, stream, row):
        if stream == "eval":
            eval_rows[s].append(row)
        if loggers:
            loggers[s].log(stream, row)

    def save():
        state = (_get_tree(agents), _get_tree(buffers))
        if jax.process_index() == 0:
            counters = dict(seed_steps=list(steps), seed_episodes=list(episodes))
            save_checkpoint(
                checkpoint_path,
                state,
                dict(header, step=min(steps), episode=min(episodes), **counters),
            )

    def evaluate_seeds(which):
        if envs is None:
            return
        which = [s for s in which if not any(row["step"] == steps[s] for row in eval_rows[s])]
        if not which:
            return
        start = time.perf_counter()
        results = _evaluate_seeds(
            agents,
            eval_envs,
            which,
            [_evaluation_seed(step) for step in steps],
            config.eval_episodes,
            config.horizon,
            obs_dim,
            sharding,
        )
        elapsed = time.perf_counter() - start
        for s in which:
            row = dict(step=steps[s], **results[s], eval_time_s=elapsed)
            log(s, "eval", row)
            if progress is not None:
                progress(0, dict(row, seed=seeds[s]))

    def due(s):  # an unforced evaluation: at the interval's multiples
        return steps[s] % config.eval_interval == 0 and steps[s] > 0

    try:
        if resume:  # an interruption may have come between an update and its evaluation
            evaluate_seeds([s for s in range(num) if due(s)])
        # ---- offline: all seeds move together
        while steps[0] < config.offline_steps:
            step = steps[0]
            until_eval = config.eval_interval - step % config.eval_interval
            n = min(config.updates_per_call, config.offline_steps - step, until_eval)
            new_agents, metrics = _offline_calls(
                agents,
                dataset,
                seed_array,
                put(np.asarray(steps, np.int32)),
                n,
                config.batch_size,
                config.horizon,
                config.discount,
                sharding,
            )
            lasts = _check_seeds(_get_tree(metrics), range(num), [step + n] * num, seeds)
            agents, steps = new_agents, [step + n] * num
            for s in range(num):
                log(s, "train", dict(step=steps[s], **lasts[s]))
            if progress is not None:
                for s in range(num):
                    progress(n, dict(lasts[s], seed=seeds[s]))
            evaluate_seeds([s for s in range(num) if due(s)])
            if steps[0] - last_checkpoint[0] >= config.checkpoint_interval:
                save()
                last_checkpoint = list(steps)
        # ---- online: one chunk per seed per round
        online_size = _online_size(config)
        chunk_size = config.horizon * action_dim
        observations = np.zeros((num, obs_dim), np.float32)
        at_boundary = [True] * num  # between episodes: the next chunk starts one
        chunk_index = [0] * num
        evaluation_due, checkpoint_due = [False] * num, [False] * num
        while any(step < total for step in steps):
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
            actions, uniforms = _get_tree(
                _online_actions(
                    agents,
                    put(observations),
                    seed_array,
                    put(np.asarray(episodes, np.int32)),
                    put(np.asarray(chunk_index, np.int32)),
                    chunk_size,
                    sharding,
                )
            )
            # the chunk's transitions, in `ReplayBuffer.add`'s order of fields
            rows = [
                np.zeros((num, config.horizon, *shape), np.float32)
                for shape in ((obs_dim,), (action_dim,), (), (), (obs_dim,), ())
            ]
            executed, episode_over = [0] * num, [False] * num
            for s in running:
                # the first `random_action_steps` online steps are uniformly random, as in `train`
                random_left = learning_starts - steps[s]
                chunk = actions[s]
                if random_left >= config.horizon:
                    chunk = uniforms[s]
                elif random_left > 0:  # the chunk crosses into the agent's phase
                    head = random_left * action_dim
                    chunk = np.concatenate([uniforms[s][:head], actions[s][head:]])
                chunk_index[s] += 1
                ob = observations[s]
                for j, action in enumerate(chunk.reshape(config.horizon, -1)):
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
                [put(column) for column in rows],
                put(np.asarray(executed)),
                sharding,
            )
            first_steps = steps
            steps = [step + count for step, count in zip(steps, executed, strict=True)]
            # no updates while the actions are random; then utd updates per executed step
            counts = {
                s: config.utd * (steps[s] - max(first_steps[s], learning_starts)) for s in running
            }
            counts = {s: count for s, count in counts.items() if count > 0}
            step_array = put(np.asarray(steps, np.int32))
            lasts = {}
            for num_updates in sorted(set(counts.values())):
                group = [s for s, count in counts.items() if count == num_updates]
                new_agents, metrics = _online_calls(
                    agents,
                    dataset,
                    buffers,
                    seed_array,
                    step_array,
                    put(np.isin(np.arange(num), group)),
                    num_updates,
                    config.batch_size,
                    online_size,
                    config.horizon,
                    config.discount,
                    sharding,
                )
                lasts.update(_check_seeds(_get_tree(metrics), group, steps, seeds))
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
                    progress(executed[s], dict(lasts.get(s, {}), seed=seeds[s]))
        evaluate_seeds(range(num))
        save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        for logger in loggers:
            logger.close()
    return agents, eval_rows
