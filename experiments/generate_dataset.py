"""Generate an OGBench manipulation dataset locally with the oracles shipped in the ogbench wheel.

    python experiments/generate_dataset.py --dataset cube-double-play-v0 --episodes 1000 \
        [--seed 0] [--workers 2] [--dir DIR] [--overwrite]

Writes DIR/{dataset}.npz, DIR/{dataset}-val.npz (episodes // 10 validation episodes, generated
after the training ones) and DIR/{dataset}.meta.json; DIR defaults to the library's cache
(`$INTERPOLANT_RL_DATA`, else ~/.cache/interpolant_rl/ogbench). Full sizes: 1000 episodes
(cube-triple 3000) of 1001 steps, about 35 minutes per 1M steps per process on a 2-core machine.
The files load with `ogbench.make_env_and_datasets(..., dataset_dir=DIR)`.
"""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from interpolant_rl import data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="e.g. cube-double-play-v0, scene-noisy-v0")
    parser.add_argument("--episodes", type=int, default=1000, help="training episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (by episode)")
    parser.add_argument("--dir", type=Path, default=None, help="output directory")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        spec = data.GenerationSpec(args.dataset, args.episodes, args.seed)
        total = spec.num_episodes + spec.num_val_episodes
        with tqdm(total=total, unit="episode", desc=spec.dataset) as bar:
            paths = data.generate_dataset(
                spec, args.dir, workers=args.workers, progress=bar.update, overwrite=args.overwrite
            )
    except ValueError as error:
        print(f"generate_dataset.py: error: {error}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
