r"""Behaviour policies for D4RL-style locomotion datasets, trained as D4RL trained its own: soft
actor-critic online in the environment, with the policy kept at every evaluation.

D4RL (Fu et al. 2020) trained SAC online per environment; its `expert` datasets roll out the
fully trained policy, `medium` a policy early-stopped at about a third of the expert's
performance, `random` a randomly initialised one. The targets here, `MEDIUM_SCORES`, are the
normalised scores D4RL's own medium datasets sit near — 40 / 44 / 62 on halfcheetah / hopper /
walker2d, the figures the issue gives (D4RL's files cannot be downloaded here to re-measure
them) — so that a medium dataset built here is comparable to D4RL's; a third of the expert's
*return* alone would give 35 / 34 / 33. For ant, with no figure at hand, a third of the expert's
return: normalised 38.

**SAC** is the library's RLPD agent configured as SAC ([`SAC_CONFIG`][interpolant_rl.train.SAC_CONFIG]):
no behaviour-cloning term, two critics with the clipped double-Q target ($K = 2$, $\rho = 1$:
$\bar Q - \mathrm{std}\,Q = \min(Q_1, Q_2)$), target entropy $-d$ (SAC's), learned temperature,
2×256 networks, Adam $3\cdot10^{-4}$, one update per environment step after 10 000 uniformly
random steps, batch 256, $\gamma = 0.99$. RLPD's LayerNorm in the critic stays (a departure from
the original SAC, which had none; it only stabilises the critic).
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import jax.random as jr

from ..agents import CriticConfig, make_agent, NetworkConfig
from ..agents.rlpd import RLPDConfig
from ..data import (
    d4rl_normalized_score,
    make_locomotion_env,
    parse_locomotion_name,
)
from ..data._locomotion_datasets import (
    BehaviourIndex,
    BehaviourSnapshot,
    measure_behaviour_policy,
    save_behaviour_snapshot,
    write_behaviour_index,
)
from ._checkpoint import read_checkpoint_header
from ._logging import read_rows
from ._loop import evaluate, train, TrainConfig


SAC_CONFIG = RLPDConfig(
    bc_alpha=0.0,
    initial_temperature=1.0,
    target_entropy_per_dim=-1.0,
    actor=NetworkConfig(256, 2),
    critic=CriticConfig(width=256, depth=2, num_critics=2, rho=1.0, horizon=1, discount=0.99),
)
# the normalised score the level `medium` is early-stopped at (see the module docstring)
MEDIUM_SCORES = {"halfcheetah": 40.0, "hopper": 44.0, "walker2d": 62.0, "ant": 38.0}


def _locomotion_parts(env: str) -> dict:
    parts = parse_locomotion_name(env) or parse_locomotion_name(f"{env}-random-v2")
    if parts is None:
        raise ValueError(
            f"{env!r} is not a locomotion environment (halfcheetah, hopper, walker2d, ant)"
        )
    return parts


def behaviour_run_dir(out_dir: str | Path, env: str) -> Path:
    """Where [`train_behaviour_policy`][interpolant_rl.train.train_behaviour_policy] keeps the
    SAC run of `env` (logs, checkpoint) unless told otherwise: `out_dir/sac-{env}`, with `env`'s
    short name (`"hopper"` for `"Hopper-v5"` too). Raises `ValueError` for an environment that is
    not a locomotion one."""
    return Path(out_dir) / f"sac-{_locomotion_parts(env)['env']}"


def train_behaviour_policy(
    env: str,
    out_dir: str | Path,
    *,
    online_steps: int = 1_000_000,
    evaluation_interval: int = 10_000,
    evaluation_episodes: int = 10,
    random_action_steps: int = 10_000,
    medium_score: float | None = None,
    seed: int = 0,
    config: RLPDConfig = SAC_CONFIG,
    run_dir: str | Path | None = None,
    progress: Callable[[int, dict], None] | None = None,
    resume: bool = False,
    time_limit_s: float | None = None,
    finish: bool = False,
    expert_step: int | None = None,
) -> BehaviourIndex | None:
    """Train SAC on the locomotion environment `env` (`"hopper"`, ... or an id such as
    `"Hopper-v5"`) for `online_steps` steps and keep its policy in `out_dir`: a snapshot before
    training (step 0, the `random` level) and at every evaluation (`evaluation_interval`
    steps, `evaluation_episodes` episodes measuring D4RL's normalised score), and the index
    `{env}-behaviour.json` naming the `medium` snapshot — the first whose score reaches
    `medium_score` (default `MEDIUM_SCORES[env]`) — and the `expert` one, the last, with the
    `random`, `medium` and `expert` policies each re-measured over `evaluation_episodes` whole
    episodes ([`measure_behaviour_policy`][interpolant_rl.data.measure_behaviour_policy]).

    The SAC run itself (logs, checkpoint) goes to `run_dir` (default
    [`behaviour_run_dir`][interpolant_rl.train.behaviour_run_dir]`(out_dir, env)`).
    Training to expert takes hours on a CPU, so it can be done in parts: `time_limit_s` stops
    it at the first episode end after that many seconds (checkpointed, evaluated, snapshot kept)
    and returns `None` without writing the index; `resume=True` continues from `run_dir`'s
    checkpoint with the same arguments, picking up the snapshots already kept (their scores
    from the run's `eval.jsonl`), and writes the index once `online_steps` are done.
    `finish=True` (same arguments) trains no further and writes the index of an interrupted run
    from the snapshots it kept: its `expert` is then the last of them, and the index's
    `config["trained_steps"]` records how far training went (below the planned `online_steps`,
    which stay in `config["schedule"]`). `expert_step` names another snapshot as the `expert`
    (D4RL's was the final policy, the default; a shorter or noisier run may end on a poor one),
    recorded in `config["expert_choice"]`.

    **Returns:** the [`BehaviourIndex`][interpolant_rl.data.BehaviourIndex], or `None` when
    `time_limit_s` ended the run first."""
    parts = _locomotion_parts(env)
    name = parts["env"]
    medium_score = MEDIUM_SCORES[name] if medium_score is None else medium_score
    run_dir = behaviour_run_dir(out_dir, env) if run_dir is None else Path(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    environment = make_locomotion_env(parts["env_id"])
    obs_dim = int(environment.observation_space.shape[0])
    action_dim = int(environment.action_space.shape[0])
    agent = make_agent("rlpd", obs_dim, action_dim, jr.key(seed), config)
    snapshots = [
        BehaviourSnapshot(
            0,
            save_behaviour_snapshot(out_dir, name, 0, agent.acting_policy().network),
            float("nan"),  # measured below
        )
    ]

    if (resume or finish) and not (run_dir / "checkpoint.eqx").exists():
        raise ValueError(f"--{'finish' if finish else 'resume'}: no checkpoint in {run_dir}")
    if resume or finish:  # the snapshots kept before the interruption, scored by evaluations
        until = read_checkpoint_header(run_dir / "checkpoint.eqx")["step"]
        for row in read_rows(run_dir / "eval.jsonl", until=until):
            file = f"{name}-step{row['step']}.eqx"
            if not (out_dir / file).exists():
                raise ValueError(
                    f"--resume: {out_dir / file} (kept at step {row['step']}) is missing"
                )
            snapshots.append(BehaviourSnapshot(row["step"], file, row["normalized_score"]))

    def keep(agent, row):
        file = save_behaviour_snapshot(out_dir, name, row["step"], agent.acting_policy().network)
        snapshots.append(BehaviourSnapshot(row["step"], file, row["normalized_score"]))

    schedule = TrainConfig(
        offline_steps=0,
        online_steps=online_steps,
        random_action_steps=random_action_steps,
        batch_size=256,
        eval_interval=evaluation_interval,
        eval_episodes=evaluation_episodes,
        checkpoint_interval=evaluation_interval,
        seed=seed,
        time_limit_s=time_limit_s,
    )
    initial = evaluate(agent, make_locomotion_env(parts["env_id"]), evaluation_episodes, 1, seed)
    snapshots[0] = dataclasses.replace(
        snapshots[0],
        normalized_score=d4rl_normalized_score(parts["env_id"], initial["episode_return"]),
    )
    if not finish:
        train(
            agent,
            None,
            environment,
            schedule,
            run_dir,
            header=dict(behaviour=dict(env=name, config=repr(config))),
            progress=progress,
            eval_metrics=lambda row: dict(
                normalized_score=d4rl_normalized_score(parts["env_id"], row["episode_return"])
            ),
            on_evaluation=keep,
            resume=resume,
        )
    if not finish and max(s.step for s in snapshots) < online_steps:  # the time limit came first
        return None
    snapshots = sorted({s.step: s for s in snapshots}.values(), key=lambda s: s.step)
    medium = next(
        (s.step for s in snapshots if s.step > 0 and s.normalized_score >= medium_score), None
    )
    if expert_step is not None and expert_step not in {s.step for s in snapshots}:
        raise ValueError(
            f"expert_step {expert_step}: no snapshot there (kept: every {evaluation_interval} "
            f"steps up to {snapshots[-1].step})"
        )
    expert = snapshots[-1].step if expert_step is None else expert_step
    index = BehaviourIndex(
        env=name,
        obs_dim=obs_dim,
        action_dim=action_dim,
        width=config.actor.width,
        depth=config.actor.depth,
        seed=seed,
        config=json.loads(
            json.dumps(
                dict(
                    sac=dataclasses.asdict(config),
                    schedule=dataclasses.asdict(dataclasses.replace(schedule, time_limit_s=None)),
                    medium_score=medium_score,
                    trained_steps=snapshots[-1].step,
                    expert_choice="last snapshot"
                    if expert_step is None
                    else f"step {expert_step}, chosen",
                ),
                default=str,
            )
        ),
        snapshots=tuple(snapshots),
        medium_step=medium,
        expert_step=expert,
    )
    # each level re-measured over whole episodes, the record a shipped policy is tested against
    levels = ("random", "expert") if medium is None else ("random", "medium", "expert")
    measured = {
        level: measure_behaviour_policy(out_dir, index, level, evaluation_episodes, seed)
        for level in levels
    }
    index = dataclasses.replace(index, measured=measured)
    write_behaviour_index(out_dir, index)
    return index
