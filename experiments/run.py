"""Train an agent offline then online on an OGBench singletask dataset (the main job).

    python experiments/run.py                      # the CPU demo: small dataset, QAM, a few minutes
    python experiments/run.py --agent fql --seed 3
    python experiments/run.py --agent fql --num-seeds 4   # seeds 0-3 as one program (vmapped)
    python experiments/run.py --sweep tau=1,3,10 --num-seeds 4   # 3 taus x 4 seeds, one program
    python experiments/run.py --agent rlpd         # online only: 1000 random steps, then 19k
    python experiments/run.py --preset paper       # the QAM paper's configuration (needs a GPU)
    python experiments/run.py --agent bam --protocol reference   # the reference script's values
    python experiments/run.py --agent fql --fql.alpha 30 --fql.critic.rho 0   # any agent setting
    python experiments/run.py --agent help         # every agent, one paragraph each
    python experiments/run.py --agent cgql_linex --help   # the agent's settings and their defaults
    python experiments/run.py --resume --out-dir runs/qam-cube-single-0
    python experiments/run.py --agent moma_ql --env hopper-medium-v2   # D4RL-style data from the shipped policies (or your D4RL file in --data-dir)
    python experiments/run.py --agent rlpd --env Hopper-v5   # locomotion, online only

The dataset is read from `--data-dir` (OGBench's file format) or generated there with the
oracles shipped in the ogbench wheel; a D4RL locomotion name reads D4RL's HDF5 file from there. Every run directory gets `train.jsonl/csv`,
`eval.jsonl/csv`, `checkpoint.eqx` and `summary.json` (configuration, final metrics, wall time,
versions). Every run goes through `interpolant_rl.train.train_seeds`: with `--num-seeds N` the
seeds `seed .. seed+N-1` train together in one jitted program (vmapped, sharded over the visible
devices); each seed gets its own run directory `OUT_DIR/seed{k}` (with its `summary.json`),
`OUT_DIR` holds the shared checkpoint and an aggregate `summary.json`. One seed (the default)
is the same loop with N = 1, its run directory `OUT_DIR` itself. `--sweep NAME=V1,V2,...`
(repeatable: the grid of several) adds float hyperparameters of the agent to the program's axis:
every value times every seed trains together, member (tau=3, seed k) in `OUT_DIR/tau=3/seed{k}`. Plot learning curves with
`python experiments/plot.py RUN_DIR ...` (for N seeds: `OUT_DIR/seed*`).
"""

import contextlib
import dataclasses
import importlib.util
import inspect
import json
import math
import sys
import textwrap
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import tyro
from tqdm import tqdm

from interpolant_rl import agents, data, train


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Command-line configuration of one run. Fields left unset take the preset's value."""

    agent: str = "qam"
    """Agent name: one of qam, qam_fql, qam_edit, bam, moma_ql, ofql, fql, fbrac, bc, rebrac, td3bc, ifql, iql, cql, fawac, cgql, cgql_mse, cgql_linex, qsm, diffusion_bc, diffusion_ql, dac, consistency_bc, consistency_ac, dsrl, fedit, rlpd, nc_lql, som, prior_guidance."""
    env: str = "cube-single-play-singletask-task1-v0"
    """OGBench singletask dataset name (the environment is derived from it); or a D4RL locomotion dataset name (hopper-medium-v2: gymnasium's Hopper-v5 and the D4RL-format file hopper-medium-v2.hdf5 in --data-dir); or a locomotion environment id (Hopper-v5, HalfCheetah-v5, Walker2d-v5, Ant-v5: online only)."""
    preset: Literal["cpu", "paper"] = "cpu"
    """'cpu': sizes for a 2-core machine (minutes); 'paper': the QAM protocol (1M + 500k steps, 4x512, K = 10)."""
    seed: int = 0
    """Seed of everything (dataset generation has its own: --data-seed)."""
    num_seeds: int = 1
    """Train seeds seed..seed+N-1 together as one program, sharded over the visible devices (N a multiple of their number); each in OUT_DIR/seed{k}."""
    # appended: `--sweep a=1,2 --sweep b=3,4` is the grid of both (a plain tuple would keep the last)
    sweep: tyro.conf.UseAppendAction[tuple[str, ...]] = ()
    """Float hyperparameters of the agent trained together with the seeds as one program: NAME=V1,V2,... (a field of the agent's configuration, e.g. tau=1,3,10, alpha=3,10, learning_rate=1e-4,3e-4, critic.rho=0,0.5; repeat the flag for a grid). Member (tau=3, seed k) runs in OUT_DIR/tau=3/seed{k}, exactly as a run with --tau 3 --seed k would (to float rounding)."""
    out_dir: Path | None = None
    """Run directory (default runs/{agent}-{env}-seed{seed}; with --num-seeds N, runs/{agent}-{env}-seeds{seed}-{seed+N-1})."""
    resume: bool = False
    """Continue the run in --out-dir from its checkpoint (its recorded configuration must match; see the docs' "Run directories")."""
    overwrite: bool = False
    """Clear --out-dir first (a fresh run refuses a directory that holds files)."""
    data_dir: Path | None = None
    """Where OGBench's .npz files are read or generated (default: the library's cache)."""
    dataset_episodes: int | None = None
    """Episodes generated when the dataset is missing (cpu: 100, paper: 1000)."""
    dataset_steps: int | None = None
    """Transitions per policy level of a locomotion dataset built here (cpu: 100000, paper: 1000000, D4RL's)."""
    behaviour_dir: Path | None = None
    """Behaviour policies locomotion datasets are built from (default: the ones shipped in the package)."""
    data_seed: int = 0
    """Seed of dataset generation."""
    workers: int = 2
    """Processes for dataset generation."""
    offline_steps: int | None = None
    """Offline gradient steps (cpu: 20000, paper: 1000000; rlpd, nc_lql, som: 0, they are online only)."""
    online_steps: int | None = None
    """Online environment steps after the offline phase (cpu: 0, paper: 500000; rlpd, nc_lql, som on cpu: 20000)."""
    random_action_steps: int | None = None
    """First online steps taken uniformly at random, before any online update (rlpd: paper 5000, cpu 1000; nc_lql: paper 30000, cpu 1000; som: paper 5000, cpu 1000; others 0)."""
    batch_size: int | None = None
    """Batch size (256 in both presets)."""
    chunk: int | None = None
    """Action-chunk length h (default: the dataset's domain in the QAM study, 5 on cube/scene/puzzle and 1 on antmaze/humanoidmaze; 5 for datasets outside its ten domains, e.g. cube-single)."""
    width: int | None = None
    """Hidden units per layer of every network (cpu: 256, paper: 512)."""
    depth: int | None = None
    """Hidden layers of every network (cpu: 2, paper: 4)."""
    num_critics: int | None = None
    """Critic ensemble size K (cpu: 2, paper: 10)."""
    tau: float | None = None
    """Inverse temperature of tilt-based agents (default: the QAM study's value for the agent and the dataset's domain)."""
    discount: float | None = None
    """Discount gamma per environment step (default: the domain's, 0.995 on antmaze-giant and humanoidmaze, 0.99 elsewhere)."""
    sparse: tyro.conf.DisallowNone[bool | None] = None
    """Sparse rewards: any non-zero reward becomes -1 (default: the domain's, on for scene and puzzle, off elsewhere)."""
    protocol: Literal["paper", "reference"] = "paper"
    """Per-domain hyperparameters: the QAM paper's Table 4, or its public reference script's values where they differ."""
    eval_interval: int | None = None
    """Steps between evaluations (cpu: 5000, paper: 50000)."""
    eval_episodes: int | None = None
    """Episodes per evaluation (cpu: 10, paper: 50)."""
    video_episodes: int = 0
    """Record this many evaluation episodes per seed and evaluation as MP4 in OUT_DIR/videos (pip install "interpolant_rl[video]"), also logged to W&B with --wandb; rendered headless through MuJoCo's EGL backend."""
    parallel_episodes: int | None = None
    """Evaluation episodes run side by side per seed, one batched act call per chunk for all of them, each in its own copy of the environment (default: all of them)."""
    tensorboard: bool = False
    """Also write the metrics as TensorBoard scalars to OUT_DIR/tensorboard (pip install "interpolant_rl[tensorboard]")."""
    wandb: bool = False
    """Also log the metrics to Weights & Biases (pip install "interpolant_rl[wandb]"); with --num-seeds N, one W&B run per seed, grouped."""
    wandb_project: str = "interpolant_rl"
    """W&B project."""
    wandb_group: str | None = None
    """W&B group (default: the run directory's name)."""
    wandb_name: str | None = None
    """W&B run name (default: the run directory's name; seed k of several: NAME-seed{k})."""
    wandb_mode: Literal["online", "offline"] = "online"
    """'offline' keeps the W&B run in OUT_DIR/wandb without a network (upload later with `wandb sync`)."""
    updates_per_call: int = 100
    """Updates per jitted call in the offline phase."""
    distributed: bool = False
    """One process of a multi-process (multi-host) run: start the same command once per host; each process trains its block of the members (seeds x swept values) on its own devices, in OUT_DIR/process{p}, and process 0 writes the aggregate OUT_DIR/summary.json. The coordinator, process count and id come from the cluster's environment (SLURM, Open MPI) unless --coordinator, --num-processes and --process-id give them (they imply --distributed)."""
    coordinator: str | None = None
    """Coordinator address host:port of a multi-process run (served by process 0)."""
    num_processes: int | None = None
    """Processes of a multi-process run."""
    process_id: int | None = None
    """This process's index in a multi-process run, 0 .. num_processes-1."""
    time_limit: float | None = None
    """Stop after this many seconds of training (at the next call boundary; online, with every seed between episodes), evaluate and checkpoint there; --resume continues. For a cluster job's wall-time limit."""


def resolve(config: RunConfig) -> RunConfig:
    """Fill unset fields from the agent's preset, then the preset, and check every value before
    any work starts."""
    preset = train.preset(config.preset, config.agent)
    filled = {k: v for k, v in preset.items() if getattr(config, k) is None}
    locomotion = data.parse_locomotion_name(config.env)
    if locomotion is not None:
        # the Gym-locomotion protocol of Diffusion-QL, which MoMa QL and OFQL follow: no action
        # chunks, gamma 0.99, two critics (over the preset's K), dense rewards
        domain_wide = dict(chunk=1, discount=0.99, sparse=False, num_critics=2)
    else:  # the domain-wide settings of the QAM study (chunk 5 and dense rewards outside its domains)
        domain = agents.domain_of(config.env)
        settings = agents.domain_settings(domain) if domain is not None else None
        domain_wide = dict(
            chunk=settings.chunk if settings else 5,
            discount=settings.discount if settings else 0.99,
            sparse=settings.sparse if settings else False,
        )
    filled.update({k: v for k, v in domain_wide.items() if getattr(config, k) is None})
    config = dataclasses.replace(config, **filled)
    if config.agent not in agents.available_agents():
        raise ValueError(
            f"unknown agent {config.agent!r}; available: {', '.join(agents.available_agents())}"
        )
    # the run's own sizes; the schedule's values are checked by `TrainConfig` itself (below)
    for name in (
        "width",
        "depth",
        "num_critics",
        "chunk",
        "dataset_episodes",
        "dataset_steps",
        "workers",
        "num_seeds",
    ):
        if getattr(config, name) < 1:
            raise ValueError(
                f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}"
            )
    if not 0.0 <= config.discount <= 1.0:  # also rejects nan
        raise ValueError(f"--discount must lie in [0, 1], got {config.discount}")
    if config.tau is not None and not (math.isfinite(config.tau) and config.tau >= 0):
        raise ValueError(f"--tau must be finite and >= 0, got {config.tau}")
    train_config(config)
    if config.resume and config.overwrite:
        raise ValueError("--resume continues the run in --out-dir, --overwrite clears it: not both")
    if locomotion is None:
        data.parse_singletask_name(config.env)  # unknown or malformed names fail here
    else:
        if config.sparse:
            raise ValueError("--sparse applies to OGBench datasets, not to locomotion tasks")
        if locomotion["dataset"] is None and config.offline_steps > 0:
            raise ValueError(
                f"{config.env} has no offline dataset: train online only (--offline-steps 0 "
                f"--online-steps N, e.g. --agent rlpd), or name a D4RL dataset "
                f"({locomotion['env']}-medium-v2)"
            )
    if config.video_episodes and importlib.util.find_spec("av") is None:
        raise ValueError('--video-episodes needs PyAV: pip install "interpolant_rl[video]"')
    if config.wandb and importlib.util.find_spec("wandb") is None:
        raise ValueError('--wandb needs wandb: pip install "interpolant_rl[wandb]"')
    if config.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        raise ValueError(
            '--tensorboard needs tensorboardX: pip install "interpolant_rl[tensorboard]"'
        )
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    count = len(members_of(config))  # also checks the --sweep syntax
    if is_distributed(config):  # JAX must not start before the processes have joined
        if config.num_processes is not None and count % config.num_processes:
            raise ValueError(
                f"{count} members (seeds x swept values) cannot be split evenly over "
                f"--num-processes {config.num_processes}"
            )
    elif count > 1:
        train.seed_sharding(count)  # N must be a multiple of the devices
    if config.out_dir is None:
        name = f"seed{config.seed}" if config.num_seeds == 1 else f"seeds{seeds[0]}-{seeds[-1]}"
        if config.sweep:
            name += "-sweep-" + "-".join(axis for axis in sweep_axes(config))
        config = dataclasses.replace(
            config, out_dir=Path("runs") / f"{config.agent}-{config.env}-{name}"
        )
    if config.out_dir.exists() and not config.out_dir.is_dir():
        raise ValueError(f"--out-dir {config.out_dir} is a file, not a run directory")
    if (
        config.resume
        and not is_distributed(config)  # each process checks its own directory
        and not (config.out_dir / "checkpoint.eqx").exists()
    ):
        raise ValueError(f"--resume: no checkpoint in {config.out_dir}")
    return config


def sweep_axes(config: RunConfig) -> dict[str, tuple[float, ...]]:
    """The `--sweep` axes, by field name (one-line `ValueError` for a malformed or repeated one)."""
    axes = {}
    for spec in config.sweep:
        name, values = train.parse_sweep(spec)
        if name in axes:
            raise ValueError(f"--sweep {name} is given twice")
        axes[name] = values
    return axes


def members_of(config: RunConfig) -> list[train.SweepMember]:
    """What the run trains, in the program's order: every point of the `--sweep` grid (if any)
    times every seed."""
    seeds = range(config.seed, config.seed + config.num_seeds)
    points = train.sweep_grid(sweep_axes(config)) if config.sweep else [()]
    return [train.SweepMember(seed, point) for point in points for seed in seeds]


def check_sweep(config: RunConfig, agent_cfg: Any) -> None:
    """Every `--sweep` value set on the agent's configuration and checked by it (a one-line
    `ValueError` naming a field that is not a float hyperparameter, or a rejected value)."""
    for point in train.sweep_grid(sweep_axes(config)) if config.sweep else []:
        member_config = agent_cfg
        for name, value in point:
            try:
                member_config = train.with_value(member_config, name, value)
            except ValueError as error:
                message = str(error)
                raise ValueError(
                    message
                    if message.startswith("cannot sweep")
                    else f"--sweep {name}={value:g}: {message}"
                ) from None


def is_distributed(config: RunConfig) -> bool:
    """Whether this is one process of a multi-process run."""
    return config.distributed or config.coordinator is not None


def run_members(config: RunConfig) -> list[train.SweepMember]:
    """The members this process trains: all of them, or its block of a multi-process run."""
    members = members_of(config)
    return train.process_block(members) if is_distributed(config) else members


def member_dir(config: RunConfig, member: train.SweepMember) -> Path:
    """A member's run directory: `OUT_DIR` for a single seed without a sweep, else
    `OUT_DIR/{member.name}` (`seed1`, `tau=3/seed1`; under `OUT_DIR/process{p}` in a
    multi-process run)."""
    if config.num_seeds == 1 and not config.sweep and not is_distributed(config):
        return config.out_dir
    return member.directory(config.out_dir)


# `TrainConfig` fields whose command-line flag has another name
_FLAG_OF = {"time_limit_s": "time_limit", "checkpoint_interval": "eval_interval"}


def train_config(config: RunConfig) -> train.TrainConfig:
    """The training schedule of a resolved run. `TrainConfig` checks its own values; its error
    is re-worded to name the command-line flag (`--eval-interval must be >= 1, got 0`)."""
    try:
        return train.TrainConfig(
            offline_steps=config.offline_steps,
            online_steps=config.online_steps,
            random_action_steps=config.random_action_steps,
            batch_size=config.batch_size,
            updates_per_call=config.updates_per_call,
            eval_interval=config.eval_interval,
            eval_episodes=config.eval_episodes,
            parallel_episodes=config.parallel_episodes,
            video_episodes=config.video_episodes,
            checkpoint_interval=config.eval_interval,
            seed=config.seed,
            tensorboard=config.tensorboard,
            wandb=train.WandbConfig(
                project=config.wandb_project,
                group=config.wandb_group,
                name=config.wandb_name or Path(config.out_dir or ".").resolve().name,
                mode=config.wandb_mode,
            )
            if config.wandb
            else None,
            time_limit_s=config.time_limit,
        )
    except ValueError as error:
        field, _, rest = str(error).partition(" ")
        flag = _FLAG_OF.get(field, field).replace("_", "-")
        raise ValueError(f"--{flag} {rest}") from None


# Run settings that may differ between a run and its resumption: the offline phase's length, the
# cadence, logging, and where files live (not --online-steps: the replay buffer's capacity is the
# online phase's length, so the checkpoint holds a buffer of that size). Every other `RunConfig` field (agent, env, seeds, sizes, data
# spec, ...) and every agent setting must match the checkpoint's record. `--offline-steps` may
# change only while the checkpoint is still inside both offline phases. `--updates-per-call` and
# `--eval-interval` cut the offline updates into other blocks, whose keys derive from the block's
# first step: the resumed run is then a run of the same configuration, not bit-for-bit the
# uninterrupted one.
RESUMABLE = (
    "offline_steps",
    "eval_interval",
    "eval_episodes",
    "parallel_episodes",
    "video_episodes",
    "tensorboard",
    "wandb",
    "wandb_project",
    "wandb_group",
    "wandb_name",
    "wandb_mode",
    "updates_per_call",
    "time_limit",
    "coordinator",
    "process_id",
    "workers",
    "data_dir",
    "behaviour_dir",
    "out_dir",
    "resume",
    "overwrite",
    "preset",
)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def agent_settings(agent_cfg: Any) -> dict[str, Any]:
    """The agent configuration as JSON (nested dicts), as recorded in the checkpoint header."""
    return _as_json(dataclasses.asdict(agent_cfg))


def check_resume(config: RunConfig, agent_cfg: Any) -> None:
    """Check that the checkpoint in `config.out_dir` was written by this configuration: every
    `RunConfig` field but those in `RESUMABLE`, and every agent setting, must equal the recorded
    value; an agent setting the checkpoint does not record (added to the library since) counts
    at its default. Raises `ValueError` with one line naming each differing field, its recorded
    and its given value."""
    path = config.out_dir / "checkpoint.eqx"
    saved = train.read_checkpoint_header(path)
    recorded = saved.get("run", {})
    given = _as_json(dataclasses.asdict(config))
    members = run_members(config)
    seeds = [member.seed for member in members]
    saved_seeds = saved.get("seeds")
    if (saved_seeds is not None or len(members) > 1) and saved_seeds != seeds:
        kind = (
            "a single-seed checkpoint"
            if saved_seeds is None
            else f"a checkpoint of seeds {saved_seeds}"
        )
        raise ValueError(
            f"--resume: {config.out_dir} holds {kind}, not one of seeds {seeds} (--seed, "
            "--num-seeds, --sweep)"
        )
    differences = [
        f"{name}={recorded[name]!r}, not {given[name]!r} (--{name.replace('_', '-')})"
        for name in given
        if name not in RESUMABLE and name in recorded and recorded[name] != given[name]
    ]
    schedule = saved.get("train_config", {})
    old_offline = schedule.get("offline_steps", config.offline_steps)
    if config.offline_steps != old_offline and saved["step"] > min(
        old_offline, config.offline_steps
    ):
        differences.append(
            f"offline_steps={old_offline}, not {config.offline_steps} (--offline-steps may change "
            f"only before the checkpoint's step {saved['step']} is past either)"
        )
    if not differences and "agent_settings" in saved:
        old, new = _flat(saved["agent_settings"]), _flat(agent_settings(agent_cfg))
        # a setting the library gained after the checkpoint was written trained at its default
        # (the behaviour before the setting existed), so only a non-default value differs
        old = {**_flat(agent_settings(agents.default_config(config.agent))), **old}
        prefix = f"--{config.agent.replace('_', '-')}."
        differences = [
            f"{key}={old.get(key)!r}, not {new.get(key)!r} ({prefix}{key.replace('_', '-')})"
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
        ]
    elif not differences and saved.get("agent_config", repr(agent_cfg)) != repr(agent_cfg):
        differences.append(f"agent configuration {saved['agent_config']}, not {agent_cfg!r}")
    if differences:
        raise ValueError(f"--resume: {config.out_dir} was trained with " + "; ".join(differences))


def agent_config(config: RunConfig):
    """The agent's configuration for the dataset's domain in the QAM study (`--protocol` picks
    the paper's or the reference script's values) or its D4RL Gym task (the agents with
    per-task values there), its defaults elsewhere; resized, with the run's chunk length,
    discount and tau."""
    agent = agents.domain_config(config.agent, agents.domain_of(config.env), config.protocol)
    agent = agents.locomotion_config(config.agent, agents.locomotion_task(config.env), config=agent)
    agent = agents.resize(
        agent,
        width=config.width,
        depth=config.depth,
        num_critics=config.num_critics,
    )
    agent = agents.override(agent, horizon=config.chunk, discount=config.discount)
    if config.tau is not None:
        agent = agents.override(agent, tau=config.tau)
    return agent


def _checkpoint_state(out_dir: Path) -> str:
    path = out_dir / "checkpoint.eqx"
    try:
        step = train.read_checkpoint_header(path)["step"]
    except (ValueError, KeyError):
        return f"no checkpoint was written in {out_dir}: there is nothing to resume"
    return f"the checkpoint in {out_dir} holds step {step} (continue with --resume)"


def stopped(error: BaseException, out_dir: Path) -> int:
    """The exit code and one-line message for a run that stopped early: Ctrl-C (130), a
    non-finite loss (1) or a file that could not be written, e.g. on a full disk (2). The
    message says what the run directory holds now: the step of its checkpoint, read back from
    the file, or that none was written."""
    state = _checkpoint_state(out_dir)
    if isinstance(error, KeyboardInterrupt):
        print(f"run.py: interrupted; {state}", file=sys.stderr)
        return 130
    if isinstance(error, OSError):  # e.g. a full disk: the machine's problem, like bad input
        where = f" {error.filename}" if error.filename else ""
        print(
            f"run.py: error: cannot write{where} ({error.strerror or error}); {state}",
            file=sys.stderr,
        )
        return 2
    print(f"run.py: stopped: {error}; {state}", file=sys.stderr)
    return 1


def _versions() -> dict[str, str]:
    return {p: version(p) for p in ("interpolant_rl", "jax", "ogbench", "mujoco")}


def summarise(config: RunConfig, header: dict, evals: list, wall_time: float):
    """Write each member's `summary.json` (configuration, final metrics, evaluations, wall time,
    versions) into its run directory (`OUT_DIR` for one seed, `OUT_DIR/seed{k}` for several,
    `OUT_DIR/tau=3/seed{k}` in a sweep), for several also an aggregate `OUT_DIR/summary.json`
    (final success, or D4RL normalised score on locomotion tasks: mean, standard deviation, per
    seed; per swept configuration in a sweep), and print one line (per configuration)."""
    members = run_members(config)
    seeds = sorted({member.seed for member in members})
    total = config.offline_steps + config.online_steps
    versions = _versions()
    several = len(members) > 1
    finals = []
    for member, member_evals in zip(members, evals, strict=True):
        run_dir = member_dir(config, member)
        finals.append(member_evals[-1] if member_evals else {})
        summary = dict(
            config=header["run"],
            agent_config=header["agent_config"],
            final=finals[-1],
            evaluations=member_evals,
            steps=finals[-1].get("step", 0),
            # --time-limit ended the run before its last step (--resume continues it)
            time_limit_reached=finals[-1].get("step", 0) < total,
            wall_time_s=wall_time,
        )
        if several:
            summary["config"] = dict(
                header["run"], seed=member.seed, num_seeds=1, sweep=[], out_dir=str(run_dir)
            )
            summary["trained_with"] = dict(
                seeds=seeds, sweep=list(config.sweep), out_dir=str(config.out_dir)
            )
        if member.values:
            summary["sweep_values"] = dict(member.values)
        summary["versions"] = versions
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    metric = headline(config)
    name = metric.replace("_", " ")
    done = min(final.get("step", 0) for final in finals)
    after = f"{total} steps" if done >= total else f"{done} of {total} steps (--time-limit)"
    if not several:
        value = finals[0].get(metric, float("nan"))
        print(
            f"{config.agent} on {config.env}: {name} {value:.2f} after {after} "
            f"({wall_time / 60:.1f} min); run in {config.out_dir}"
        )
        return
    groups: dict[str, list[float]] = {}
    for member, final in zip(members, finals, strict=True):
        groups.setdefault(member.configuration, []).append(final.get(metric, float("nan")))

    aggregate = dict(
        config=header["run"],
        agent_config=header["agent_config"],
        seeds=seeds,
        runs=[member.name for member in members],
    )
    if config.sweep:
        aggregate["final"] = {key: _statistics(metric, vals) for key, vals in groups.items()}
    else:
        aggregate["final"] = _statistics(metric, groups[""])
    aggregate.update(steps=done, time_limit_reached=done < total, wall_time_s=wall_time)
    aggregate["versions"] = versions
    (config.out_dir / "summary.json").write_text(json.dumps(aggregate, indent=2) + "\n")
    for key, values in groups.items():
        stats = _statistics(metric, values)
        where = f"{config.out_dir}/{key}/seed*" if key else f"{config.out_dir}/seed*"
        label = f" with {key}" if key else ""
        print(
            f"{config.agent}{label} on {config.env}: {name} {stats[f'{metric}_mean']:.2f} +- "
            f"{stats[f'{metric}_std']:.2f} over seeds {seeds[0]}-{seeds[-1]} after {after} "
            f"({wall_time / 60:.1f} min); runs in {where}"
        )


def main(config: RunConfig, agent_cfg: Any = None) -> int:
    """Run `config`; `agent_cfg` (default: [`agent_config`](#agent_config) of the resolved
    run) is the agent's configuration.

    Everything that can be checked is checked before any compile, each failure one line on
    stderr and exit code 2: the configuration, the run directory (locked for this process:
    fresh, `--overwrite` or `--resume`; see `interpolant_rl.train.RunDirectory`), on resume the
    checkpoint's recorded configuration ([`check_resume`](#check_resume)) and the metrics files,
    and the dataset's files. A run that stops later says what its directory holds
    ([`stopped`](#stopped))."""
    start = time.perf_counter()
    try:
        config = resolve(config)
        agent_cfg = agent_config(config) if agent_cfg is None else agent_cfg
        check_sweep(config, agent_cfg)
        root = config
        if is_distributed(config):
            config = join_processes(config)
        if config.resume:  # before the directory is touched: a mismatch changes nothing
            check_resume(config, agent_cfg)
        mode = "resume" if config.resume else "overwrite" if config.overwrite else "new"
        run_dir = train.RunDirectory.open(config.out_dir, mode)
    except ValueError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    with run_dir:
        try:
            try:
                prepared = _prepare(config, agent_cfg)
            except ValueError as error:
                print(f"run.py: error: {error}", file=sys.stderr)
                return 2
            evals = _train(config, *prepared)
            summarise(config, prepared[-1], evals, time.perf_counter() - start)
            if config is not root:  # a multi-process run: the aggregate over every process
                summarise_processes(root, prepared[-1], evals, time.perf_counter() - start)
        except train.CheckpointError as error:
            print(f"run.py: error: {error}", file=sys.stderr)
            return 2
        except (train.NonFiniteLossError, KeyboardInterrupt, OSError) as error:
            return stopped(error, config.out_dir)
    return 0


def join_processes(config: RunConfig) -> RunConfig:
    """Join the multi-process run (`jax.distributed.initialize`) and return this process's view
    of it: with several processes, its run directory is `OUT_DIR/process{p}` (holding its
    members' directories and checkpoint, as a run of those members alone would)."""
    train.initialize_distributed(config.coordinator, config.num_processes, config.process_id)
    import jax

    local = len(train.process_block(members_of(config)))  # the processes must divide them
    if local > 1:
        train.seed_sharding(local, jax.local_devices())
    if jax.process_count() == 1:
        return config
    return dataclasses.replace(config, out_dir=config.out_dir / f"process{jax.process_index()}")


def summarise_processes(root: RunConfig, header: dict, evals: list, wall_time: float) -> None:
    """Process 0 of a multi-process run writes `OUT_DIR/summary.json` over every process's
    members (their final metric and step, gathered from the processes) and prints one line per
    configuration; every process waits for it."""
    import jax

    metric = headline(root)
    finals = [rows[-1] if rows else {} for rows in evals]
    values = train.gather_floats([final.get(metric, float("nan")) for final in finals])
    steps = train.gather_floats([final.get("step", 0) for final in finals])
    if jax.process_index() == 0:
        members = members_of(root)
        groups: dict[str, list[float]] = {}
        for member, value in zip(members, values, strict=True):
            groups.setdefault(member.configuration, []).append(value)
        total = root.offline_steps + root.online_steps
        aggregate = dict(
            config=_as_json(dataclasses.asdict(root)),
            agent_config=header["agent_config"],
            processes=jax.process_count(),
            runs=[
                f"process{i * jax.process_count() // len(members)}/{m.name}"
                for i, m in enumerate(members)
            ],
            final={key: _statistics(metric, vals) for key, vals in groups.items()}
            if root.sweep
            else _statistics(metric, values),
            steps=int(min(steps)),
            time_limit_reached=min(steps) < total,
            wall_time_s=wall_time,
            versions=_versions(),
        )
        (root.out_dir / "summary.json").write_text(json.dumps(aggregate, indent=2) + "\n")
        for key, vals in groups.items():
            stats = _statistics(metric, vals)
            label = f" with {key}" if key else ""
            print(
                f"{root.agent}{label} on {root.env}: {metric.replace('_', ' ')} "
                f"{stats[f'{metric}_mean']:.2f} +- {stats[f'{metric}_std']:.2f} over "
                f"{len(vals)} seeds and {jax.process_count()} processes; runs in "
                f"{root.out_dir}/process*"
            )
    train.barrier("run.py: summary written")


def _statistics(metric: str, values: list[float]) -> dict[str, Any]:
    """Mean, standard deviation (n - 1) and the values of a final metric over seeds."""
    mean = sum(values) / len(values)
    std = (sum((x - mean) ** 2 for x in values) / max(len(values) - 1, 1)) ** 0.5
    return {f"{metric}_mean": mean, f"{metric}_std": std, metric: values}


def _prepare(config: RunConfig, agent_cfg: Any):
    """The checks and the set-up before any compile: the metrics files of a resumed run, the
    dataset (generated if missing), one environment per seed, the agents, the training schedule
    and the header every checkpoint records."""
    members = run_members(config)
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    if config.resume:  # the metrics files are read before any compile (one line if corrupt)
        for member in members:
            for stream in ("train", "eval"):
                train.read_rows(member_dir(config, member) / f"{stream}.jsonl")
    locomotion = data.parse_locomotion_name(config.env) is not None
    if locomotion:
        env, dataset = _load_locomotion(config)
        obs_dim = int(env.observation_space.shape[0])
        action_dim = int(env.action_space.shape[0])
        envs = [env] + [data.make_locomotion_env(config.env) for _ in range(len(members) - 1)]
    else:
        env, dataset = _load_ogbench(config)
        obs_dim, action_dim = dataset.obs_dim, dataset.action_dim
        import ogbench

        # one environment per member: `load_ogbench`'s, then more of the same
        envs = [env] + [
            ogbench.make_env_and_datasets(config.env, env_only=True)
            for _ in range(len(members) - 1)
        ]
    schedule = train_config(config)
    header = dict(
        run=_as_json(dataclasses.asdict(config)),
        agent_config=repr(agent_cfg),
        agent_settings=agent_settings(agent_cfg),
    )
    if config.sweep:
        stacked, everyone = train.make_sweep(
            config.agent, obs_dim, action_dim * config.chunk, seeds, agent_cfg, sweep_axes(config)
        )
        first = everyone.index(members[0])  # this process's block (all of them on one)
        stacked = train.select_members(stacked, range(first, first + len(members)))
    else:
        stacked = train.make_agents(
            config.agent, obs_dim, action_dim * config.chunk, [m.seed for m in members], agent_cfg
        )
    return stacked, dataset, envs, schedule, header


@contextlib.contextmanager
def _generation_bar(**tqdm_options):
    """A progress callable for dataset generation whose bar appears only if it is called (a
    cached dataset prints nothing), closed on exit."""
    bars = []

    def update(count):
        if not bars:
            bars.append(tqdm(desc="dataset", leave=False, **tqdm_options))
        bars[0].update(count)

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


def _load_locomotion(config: RunConfig):
    """The locomotion environment and offline data of `config.env` (built from behaviour
    policies if missing)."""
    with _generation_bar(unit="transition", unit_scale=True) as progress:
        return data.load_locomotion(
            config.env,
            config.data_dir,
            num_steps=config.dataset_steps,
            seed=config.data_seed,
            policies_dir=config.behaviour_dir,
            progress=progress,
        )


def _load_ogbench(config: RunConfig):
    """The OGBench environment and offline data of `config.env` (generated if missing)."""
    with _generation_bar(unit="episode") as progress:
        env, dataset, _ = data.load_ogbench(
            config.env,
            config.data_dir,
            num_episodes=config.dataset_episodes,
            seed=config.data_seed,
            workers=config.workers,
            sparse=config.sparse,
            progress=progress,
        )
    return env, dataset


def _train(config: RunConfig, stacked, dataset, envs, schedule, header) -> list:
    members = run_members(config)
    total = config.offline_steps + config.online_steps
    latest = {}
    metric = headline(config)
    several = f" x{len(members)} {'members' if config.sweep else 'seeds'}"
    desc = f"{config.agent} {config.env}" + (several if len(members) > 1 else "")
    with tqdm(total=total * len(members), unit="step", desc=desc) as bar:
        if config.resume:
            saved = train.read_checkpoint_header(config.out_dir / "checkpoint.eqx")
            bar.update(sum(saved.get("seed_steps", [saved["step"]])))

        def progress(steps, info):
            bar.update(steps)
            if metric in info:  # the mean over the seeds of their latest evaluation
                latest[info["member"]] = info[metric]
                mean = sum(latest.values()) / len(latest)
                # strings: tqdm prints numbers in its short format (1e+4 for step 10000)
                bar.set_postfix({f"eval_{metric}": f"{mean:.2f}", "at": str(info["step"])})

        _, evals = train.train_seeds(
            stacked,
            dataset,
            envs,
            schedule,
            config.out_dir,
            header=header,
            resume=config.resume,
            progress=progress,
            eval_metrics=_eval_metrics(config),
            members=members if config.sweep or is_distributed(config) else None,
        )
    return evals


def _eval_metrics(config: RunConfig):
    """D4RL's normalised score of each evaluation on a locomotion task (None elsewhere)."""
    if data.parse_locomotion_name(config.env) is None:
        return None

    def normalized(row):
        return dict(normalized_score=data.d4rl_normalized_score(config.env, row["episode_return"]))

    return normalized


def headline(config: RunConfig) -> str:
    """The metric a run is summarised by: `normalized_score` (D4RL's) on locomotion tasks,
    `success` on OGBench."""
    return "success" if data.parse_locomotion_name(config.env) is None else "normalized_score"


def _agent_given(argv: list[str]) -> bool:
    return any(a == "--agent" or a.startswith("--agent=") for a in argv)


def agent_listing() -> str:
    """`run.py --agent help`: every registered agent with the first paragraph of its
    docstring (a named configuration's own, e.g. `td3bc`'s, else its module's), at most three
    lines."""
    lines = ["Agents (run.py --agent NAME --help: one agent's settings):", ""]
    for name, spec in agents.AGENTS.items():
        source = spec.default_config
        doc = source.__doc__ if inspect.isfunction(source) else None
        doc = doc or sys.modules[spec.create.__module__].__doc__ or ""
        summary = " ".join(doc.strip().split("\n\n")[0].split())
        lines += textwrap.wrap(
            summary,
            100,
            initial_indent=f"{name:<16}",
            subsequent_indent=" " * 16,
            max_lines=3,
            placeholder=" …",
        )
    return "\n".join(lines)


def _asks_for_agent_list(argv: list[str]) -> bool:
    pairs = zip(argv, argv[1:], strict=False)
    return "--agent=help" in argv or any(a == "--agent" and b == "help" for a, b in pairs)


def parse(argv: list[str]) -> tuple[RunConfig, Any]:
    """The command line, parsed in two passes. The run's own flags come first (`RunConfig`);
    they decide the agent's defaults — its paper configuration with the dataset domain's
    values, the preset's sizes, `--chunk`, `--discount` and `--tau`
    ([`agent_config`](#agent_config)) — and every remaining `--AGENT.FIELD VALUE` (e.g.
    `--fql.alpha 30`, `--qam.critic.rho 0`, `--cgql-linex.tau 3`) sets one field of that
    configuration on top. With `--help`: the run's flags, or with `--agent NAME` the agent's
    fields with those defaults and each field's comment (both exit).

    **Returns:** `(config, agent_config)`. Raises `ValueError` for a run flag the checks reject
    (tyro exits with 2 on a malformed flag or an agent value its configuration rejects)."""
    if _asks_for_agent_list(argv):
        print(agent_listing())
        raise SystemExit(0)
    wants_help = any(a in ("-h", "--help") for a in argv)
    if wants_help and not _agent_given(argv):
        tyro.cli(
            RunConfig,
            args=["--help"],
            description=f"{__doc__.split(chr(10) * 2)[0]}\n\nEvery agent setting: "
            "run.py --agent NAME --help.",
        )
    rest = [a for a in argv if a not in ("-h", "--help")]
    config, unknown = tyro.cli(RunConfig, args=rest, return_unknown_args=True)
    defaults = agent_config(resolve(config))
    if not (unknown or wants_help):
        return config, defaults
    fields = [(config.agent, type(defaults), dataclasses.field(default=defaults))]
    settings = dataclasses.make_dataclass("AgentSettings", fields, frozen=True)
    parsed = tyro.cli(
        settings,
        args=unknown + (["--help"] if wants_help else []),
        prog=f"run.py --agent {config.agent}",
        description=f"{config.agent}'s settings; defaults: its paper configuration for "
        f"{config.env} (domain values, the {config.preset} preset's sizes, chunk, discount, "
        "tau). The run's own flags: run.py --help.",
    )
    return config, getattr(parsed, config.agent)


def cli(argv: list[str] | None = None) -> int:
    """`main` on the parsed command line ([`parse`](#parse)); exit code 2 and one line for a
    rejected value."""
    try:
        config, agent_cfg = parse(sys.argv[1:] if argv is None else list(argv))
    except ValueError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return 2
    return main(config, agent_cfg)


if __name__ == "__main__":
    sys.exit(cli())
