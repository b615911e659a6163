"""Train the behaviour policies of D4RL-style locomotion datasets (SAC online, as D4RL did), then
optionally build datasets from them.

    python experiments/train_behaviour.py --env hopper --out-dir behaviour/   # SAC, 1M steps
    python experiments/train_behaviour.py --env hopper --out-dir behaviour/ \\
        --online-steps 2000 --evaluation-interval 1000 --width 32 --depth 1   # a tiny trial
    python experiments/run.py --env hopper-medium-v2 --behaviour-dir behaviour/ --agent moma_ql

Writes OUT_DIR/{env}-behaviour.json (the run's configuration, and each snapshot's step and D4RL
normalised score; which snapshot is medium, which expert) and the snapshots
OUT_DIR/{env}-step{N}.eqx; the SAC run's logs and checkpoint go to OUT_DIR/sac-{env}. With
`--datasets medium expert ...` the named D4RL-style datasets are then built into `--data-dir`;
with `--ship-to DIR` the index and snapshots are copied there (the package's shipped set:
`--finish --ship-to interpolant_rl/data/behaviour`), thinned after the medium step to every
`--ship-every` steps (default 50 000; see `data.ship_behaviour_policies`).
At the full budget (1M steps) a 2-core CPU needs hours per environment.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from tqdm import tqdm

from interpolant_rl import agents, data, train


DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, choices=list(data.LOCOMOTION_ENV_IDS))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--online-steps", type=int, default=1_000_000)
    parser.add_argument("--evaluation-interval", type=int, default=10_000)
    parser.add_argument("--evaluation-episodes", type=int, default=10)
    parser.add_argument("--random-action-steps", type=int, default=10_000)
    parser.add_argument("--medium-score", type=float, default=None, help="default: MEDIUM_SCORES")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="*", default=[], choices=DATASETS)
    parser.add_argument("--dataset-steps", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after this many seconds of training (continue later with --resume)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the SAC run in --out-dir (same options)"
    )
    parser.add_argument(
        "--finish",
        action="store_true",
        help="train no further: write the index of the interrupted SAC run in --out-dir from "
        "the snapshots it kept (same options; expert = the last snapshot)",
    )
    parser.add_argument(
        "--expert-step",
        type=int,
        default=None,
        help="the snapshot (a step) the index names expert (default: the last, as D4RL)",
    )
    parser.add_argument(
        "--ship-to",
        type=Path,
        default=None,
        help="then copy the run's index and snapshots there (e.g. interpolant_rl/data/behaviour)",
    )
    parser.add_argument(
        "--ship-every",
        type=int,
        default=50_000,
        help="with --ship-to: after the medium step, keep the snapshots at multiples of this "
        "(0: all)",
    )
    args = parser.parse_args(argv)
    try:
        network = agents.NetworkConfig(args.width, args.depth)
        config = dataclasses.replace(
            train.SAC_CONFIG,
            actor=network,
            critic=dataclasses.replace(train.SAC_CONFIG.critic, width=args.width, depth=args.depth),
        )
        if min(args.online_steps, args.evaluation_interval, args.evaluation_episodes) < 1:
            raise ValueError(
                "--online-steps, --evaluation-interval, --evaluation-episodes must be >= 1"
            )
        # no bar for --finish, which trains nothing; a resumed run's bar starts where it stopped
        checkpoint = train.behaviour_run_dir(args.out_dir, args.env) / "checkpoint.eqx"
        start = (
            train.read_checkpoint_header(checkpoint)["step"]
            if args.resume and checkpoint.exists()
            else 0
        )
        bar = tqdm(
            total=args.online_steps,
            initial=start,
            unit="step",
            desc=f"SAC {args.env}",
            disable=args.finish,
        )
        with bar:
            index = train.train_behaviour_policy(
                args.env,
                args.out_dir,
                online_steps=args.online_steps,
                evaluation_interval=args.evaluation_interval,
                evaluation_episodes=args.evaluation_episodes,
                random_action_steps=args.random_action_steps,
                medium_score=args.medium_score,
                seed=args.seed,
                config=config,
                progress=lambda steps, info: bar.update(steps),
                resume=args.resume,
                time_limit_s=args.time_limit,
                finish=args.finish,
                expert_step=args.expert_step,
            )
        if index is None:
            print(
                f"{args.env}: stopped by --time-limit before step {args.online_steps}; "
                "continue with the same options and --resume"
            )
            return 0
        scores = ", ".join(f"{s.step}: {s.normalized_score:.1f}" for s in index.snapshots)
        print(f"{args.env}: normalised score by step {{{scores}}}")
        print(f"medium = step {index.medium_step}, expert = step {index.expert_step}")
        if args.ship_to is not None:
            shipped = data.ship_behaviour_policies(
                args.out_dir, args.env, args.ship_to, keep_every=args.ship_every or None
            )
            print(f"shipped {len(shipped.snapshots)} snapshots and the index to {args.ship_to}")
        for dataset in args.datasets:
            name = f"{args.env}-{dataset}-v2"
            with tqdm(unit="transition", unit_scale=True, desc=name) as bar:
                path = data.generate_locomotion_dataset(
                    name,
                    args.data_dir if args.data_dir is not None else data.default_d4rl_dir(),
                    num_steps=args.dataset_steps,
                    seed=args.seed,
                    policies_dir=args.out_dir,
                    progress=bar.update,
                )
            print(f"{name}: {path}")
    except ValueError as error:
        print(f"train_behaviour.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
