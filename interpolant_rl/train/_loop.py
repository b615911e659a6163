r"""Offline then online training of any agent, with evaluation, logging and resumable
checkpoints.

The loop, for a [`TrainConfig`][interpolant_rl.train.TrainConfig]:

1. **Offline:** `offline_steps` agent updates on chunks of the offline dataset, `updates_per_call`
   of them per jitted call (one `lax.scan`).
2. **Online:** `online_steps` environment steps. The agent acts once per chunk and the chunk runs
   open-loop; every step goes to a replay buffer; after each chunk, `utd × horizon` updates on
   batches that mix offline and online chunks (`online_fraction` of each batch from the buffer).
   The first `random_action_steps` online steps (RLPD: 5000) take actions drawn uniformly from
   $[-1, 1]^d$ instead of the agent's, and make no updates: training starts after them.
3. **Evaluation** every `eval_interval` steps (offline updates and online environment steps count
   alike) and at the end: `eval_episodes` episodes, success = the last step's `info["success"]`.

Determinism: every random draw derives from `seed` (the update keys from the step number,
evaluation and online episodes, random actions included, from their index), so the same seed
gives the same metrics on CPU, and a run resumed from a checkpoint continues exactly as if
uninterrupted. Checkpoints are saved every `checkpoint_interval` steps (online: at the first
episode end after that), at the end, and on Ctrl-C; a non-finite loss stops the run with [`NonFiniteLossError`][interpolant_rl.train.NonFiniteLossError],
keeping the last good checkpoint.
"""

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import gymnasium
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..agents import AbstractAgent
from ..data import mixed_batch, ReplayBuffer, sample_chunks, Transitions
from ._checkpoint import load_checkpoint, save_checkpoint
from ._logging import MetricsLogger


class NonFiniteLossError(FloatingPointError):
    """A training metric became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The training schedule (defaults: the QAM protocol)."""

    offline_steps: int = 1_000_000  # agent updates on the offline dataset
    online_steps: int = 0  # environment steps afterwards (QAM protocol: 500k; 0 = offline only)
    batch_size: int = 256  # transitions (chunks) per update
    horizon: int = 1  # action-chunk length h (5 for manipulation); the agent's critic must match
    discount: float = 0.99  # gamma, for chunk rewards; the agent's critic must match
    updates_per_call: int = 100  # offline updates per jitted call
    utd: int = 1  # updates per environment step online
    online_fraction: float = 0.5  # share of each online-phase batch drawn from the replay buffer
    random_action_steps: int = 0  # first online steps: uniform in [-1, 1], no updates (RLPD: 5000)
    eval_interval: int = 50_000  # steps between evaluations
    eval_episodes: int = 50  # episodes per evaluation
    checkpoint_interval: int = 50_000  # steps between checkpoints
    seed: int = 0  # every random draw derives from it
    tensorboard: bool = (
        False  # also log to {run_dir}/tensorboard (extra: interpolant_rl[tensorboard])
    )

    def __post_init__(self):
        for name in ("offline_steps", "online_steps", "random_action_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "batch_size",
            "horizon",
            "updates_per_call",
            "utd",
            "eval_interval",
            "eval_episodes",
            "checkpoint_interval",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must lie in [0, 1], got {self.discount}")
        if not 0.0 <= self.online_fraction <= 1.0:
            raise ValueError(f"online_fraction must lie in [0, 1], got {self.online_fraction}")


@eqx.filter_jit
def _offline_call(agent, transitions, key, num_updates, batch_size, horizon, discount):
    batch_keys = jr.split(jr.fold_in(key, 0), num_updates)
    batches = jax.vmap(lambda k: sample_chunks(transitions, k, batch_size, horizon, discount))(
        batch_keys
    )
    return agent.update(batches, jr.fold_in(key, 1))


@eqx.filter_jit
def _online_call(
    agent, transitions, buffer, key, num_updates, batch_size, online_size, horizon, discount
):
    def both(k):
        k1, k2 = jr.split(k)
        offline = sample_chunks(transitions, k1, batch_size - online_size, horizon, discount)
        online = buffer.sample(k2, online_size, horizon, discount)
        return mixed_batch(offline, online)

    batches = jax.vmap(both)(jr.split(jr.fold_in(key, 0), num_updates))
    return agent.update(batches, jr.fold_in(key, 1))


# the old buffer is donated: adding a row must not copy the whole buffer every environment step
_add = eqx.filter_jit(ReplayBuffer.add, donate="all")

# Per-environment-step key arithmetic, compiled: eagerly, `jr.split` plus unpacking costs ~50 us
# and `jr.fold_in` ~100 us per call on CPU (one dispatch per primitive), as much as a one-step
# policy's whole action; compiled, each is one ~10 us dispatch with identical values.
_split_pair = jax.jit(lambda key: tuple(jr.split(key)))
_fold_in = jax.jit(jr.fold_in)


def _rollout_action(agent: AbstractAgent, ob, key) -> np.ndarray:
    """One action (chunk) for one environment observation, as the rollouts call it: the
    observation converted on the host (a NumPy float32 array goes to `act` as it is)."""
    return np.asarray(agent.act(np.asarray(ob, dtype=np.float32), key))


def evaluation_env(env):
    """A second environment configured like `env`, for evaluation: evaluating in the training
    environment would reset it in the middle of an online episode, which then continued from
    the evaluation's last state. Registered environments (OGBench's) are re-made from their
    spec (the same id, keyword arguments and wrappers); others are deep-copied. `None` for
    `None`."""
    if env is None:
        return None
    if getattr(env, "spec", None) is not None:
        return gymnasium.make(env.spec)
    return copy.deepcopy(env)


# How every random draw derives from the seed; shared with `train_seeds`, which must derive
# them exactly as `train` does for its seeds to match single-seed runs.


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


def evaluate(agent: AbstractAgent, env, episodes: int, horizon: int, seed: int) -> dict[str, float]:
    """Run `episodes` episodes (seeded `seed`, `seed + 1`, ...), executing each action chunk
    open-loop; returns the mean `success` (the last step's `info["success"]`) and `return`."""
    successes, returns = [], []
    for episode in range(episodes):
        ob, info = env.reset(seed=seed + episode)
        key = jr.key(seed + episode)
        total, done = 0.0, False
        while not done:
            key, act_key = _split_pair(key)
            chunk = _rollout_action(agent, ob, act_key)
            for action in chunk.reshape(horizon, -1):
                ob, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                done = terminated or truncated
                if done:
                    break
        successes.append(float(info.get("success", 0.0)))
        returns.append(total)
    return dict(success=float(np.mean(successes)), episode_return=float(np.mean(returns)))


def _check_finite(metrics: dict[str, Any], step: int) -> dict[str, float]:
    last = {name: float(np.asarray(values)[-1]) for name, values in metrics.items()}
    for name, values in metrics.items():
        if not np.all(np.isfinite(np.asarray(values))):
            raise NonFiniteLossError(f"{name} became non-finite by step {step}")
    return last


def train(
    agent: AbstractAgent,
    dataset: Transitions,
    env,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    header: dict[str, Any] | None = None,
    resume: bool = False,
    progress=None,
    eval_env=None,
) -> tuple[AbstractAgent, list[dict[str, Any]]]:
    """Train `agent` offline on `dataset`, then online in `env` (see the module docstring).

    **Arguments:**

    - `agent`: a freshly created agent (also the template a checkpoint is read into).
    - `dataset`: the offline [`Transitions`][interpolant_rl.data.Transitions].
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

    **Returns:** `(agent, eval_rows)`.
    """
    if eval_env is None:
        eval_env = evaluation_env(env)
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.eqx"
    obs_dim, action_dim = dataset.obs_dim, dataset.action_dim
    capacity = max(config.online_steps, 1)
    buffer = ReplayBuffer.create(obs_dim, action_dim, capacity)
    step, episode = 0, 0
    if resume:
        (agent, buffer), saved = load_checkpoint(checkpoint_path, (agent, buffer))
        step, episode = saved["step"], saved["episode"]
    logger = MetricsLogger(
        run_dir, resume_step=step if resume else None, tensorboard=config.tensorboard
    )
    header = dict(header or {}, train_config=dataclasses.asdict(config))
    total = config.offline_steps + config.online_steps
    key = jr.key(config.seed)
    last_checkpoint = step

    def save():
        save_checkpoint(checkpoint_path, (agent, buffer), dict(header, step=step, episode=episode))

    def maybe_evaluate(force=False):
        if eval_env is None:
            return
        if force or (step % config.eval_interval == 0 and step > 0):
            if any(row["step"] == step for row in logger.rows("eval")):
                return
            start = time.perf_counter()
            result = evaluate(
                agent, eval_env, config.eval_episodes, config.horizon, _evaluation_seed(step)
            )
            row = dict(step=step, **result, eval_time_s=time.perf_counter() - start)
            logger.log("eval", row)
            if progress is not None:
                progress(0, row)

    try:
        if resume:
            maybe_evaluate()  # an interruption may have come between an update and its evaluation
        # ---- offline
        while step < config.offline_steps:
            until_eval = config.eval_interval - step % config.eval_interval
            n = min(config.updates_per_call, config.offline_steps - step, until_eval)
            call_key = jr.fold_in(key, step)
            new_agent, metrics = _offline_call(
                agent, dataset, call_key, n, config.batch_size, config.horizon, config.discount
            )
            last = _check_finite(metrics, step + n)
            agent, step = new_agent, step + n
            logger.log("train", dict(step=step, **last))
            if progress is not None:
                progress(n, last)
            maybe_evaluate()
            if step - last_checkpoint >= config.checkpoint_interval:
                save()
                last_checkpoint = step
        # ---- online
        online_size = _online_size(config)
        ob = None
        while step < total:
            if ob is None:
                ob, _ = env.reset(seed=_reset_seed(config.seed, episode))
                episode_key, random_key = _episode_keys(key, episode)
                chunk_index = 0
            # the first `random_action_steps` online steps are uniformly random (no agent call)
            random_left = config.offline_steps + config.random_action_steps - step
            if random_left < config.horizon:
                chunk = _rollout_action(agent, ob, _fold_in(episode_key, chunk_index))
            if random_left > 0:
                uniform = jr.uniform(
                    _fold_in(random_key, chunk_index), (config.horizon * action_dim,), minval=-1
                )
                if random_left >= config.horizon:
                    chunk = np.asarray(uniform)
                else:  # the chunk crosses into the agent's phase
                    head = random_left * action_dim
                    chunk = np.concatenate([np.asarray(uniform)[:head], chunk[head:]])
            chunk_index += 1
            first_step = step
            episode_over = False
            executed = 0
            for action in chunk.reshape(config.horizon, -1):
                next_ob, reward, terminated, truncated, info = env.step(action)
                episode_over = terminated or truncated
                buffer = _add(
                    buffer,
                    jnp.asarray(ob, jnp.float32),
                    jnp.asarray(action, jnp.float32),
                    jnp.float32(reward),
                    jnp.float32(1.0 - float(terminated)),
                    jnp.asarray(next_ob, jnp.float32),
                    jnp.float32(float(episode_over)),
                )
                ob, step, executed = next_ob, step + 1, executed + 1
                if episode_over or step >= total:
                    break
            learning = step - max(first_step, config.offline_steps + config.random_action_steps)
            last = {}
            if learning > 0:  # no updates while the actions are random
                new_agent, metrics = _online_call(
                    agent,
                    dataset,
                    buffer,
                    jr.fold_in(key, step),
                    config.utd * learning,
                    config.batch_size,
                    online_size,
                    config.horizon,
                    config.discount,
                )
                last = _check_finite(metrics, step)
                agent = new_agent
                logger.log("train", dict(step=step, **last, online=1))
            if progress is not None:
                progress(executed, last)
            if step % config.eval_interval < executed:
                maybe_evaluate(force=True)
            if episode_over or step >= total:
                ob, episode = None, episode + 1
                if step - last_checkpoint >= config.checkpoint_interval:
                    save()
                    last_checkpoint = step
        maybe_evaluate(force=True)
        save()
    except KeyboardInterrupt:
        save()
        raise
    finally:
        logger.close()
    return agent, logger.rows("eval")
