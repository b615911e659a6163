"""Pictures of every agent's policy extraction on the built-in bimodal exact-tilt problem.

    python experiments/tilt_pictures.py [--agents qam fql ...] [--steps 3000] [--seed 0]
        [--problem bimodal] [--out-dir docs/images/tilt]

For each agent, `interpolant_rl.testing.exact_tilt.run_exact_tilt(agent, problem, seed, steps)` trains the agent
against the fixed quadratic critic, and this script draws one PNG, OUT_DIR/{agent}.png, with three
2-D histograms on the same axes (square-root colour scale, the mean marked by a red cross): the
behaviour data (the dataset the agent trained on), samples of the exact tilt
pi* ∝ pi_beta exp(tau Q) (the ones the distances are measured against), and the agent's policy
samples. The numbers of every run (sliced W2, mean error, ...) are merged into
OUT_DIR/results.json, so agents can be (re)drawn a few at a time. Needs matplotlib
(`pip install -e ".[plot]"`).

The behaviour and exact-tilt samples are redrawn here with `run`'s own key split
(`data_key, _, _, _, _, ref_key = split(key(seed), 6)`), so they are the very samples `run` used.
"""

import argparse
import json
import sys
from pathlib import Path

import jax.random as jr
import numpy as np

from interpolant_rl import agents
from interpolant_rl.testing import exact_tilt


ROOT = Path(__file__).resolve().parents[1]


LIMIT = 1.1  # actions live in [-1, 1]; every panel shows [-LIMIT, LIMIT]^2
BINS = 88
DPI = 90
RESULT_KEYS = (
    "sliced_wasserstein",
    "mmd",
    "mean_error",
    "base_sliced_wasserstein",
    "bc_sliced_wasserstein",
    "exact_mean",
    "policy_mean",
    "wall_time_s",
)


def reference_samples(problem: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(behaviour, exact)`: the first `NUM_SAMPLES` rows of `run`'s dataset and `run`'s
    exact-tilt samples, drawn with `run`'s keys."""
    base, critic, tau, _ = exact_tilt.load_problem(problem)
    data_key, _, _, _, _, ref_key = jr.split(jr.key(seed), 6)
    data = np.asarray(base.sample(data_key, exact_tilt.DATASET_SIZE))[: exact_tilt.NUM_SAMPLES]
    exact = np.asarray(base.tilt(critic.A, critic.b, tau).sample(ref_key, exact_tilt.NUM_SAMPLES))
    return data, exact


def draw(path: Path, agent: str, panels: list[tuple[str, np.ndarray]], result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(-LIMIT, LIMIT, BINS + 1)
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.25), sharex=True, sharey=True)
    for ax, (title, samples) in zip(axes, panels, strict=True):
        counts, _, _ = np.histogram2d(samples[:, 0], samples[:, 1], bins=(edges, edges))
        ax.imshow(
            np.sqrt(counts.T),  # square root: the low-density tails stay visible
            origin="lower",
            extent=(-LIMIT, LIMIT, -LIMIT, LIMIT),
            cmap="Blues",
            interpolation="nearest",
            aspect="equal",
        )
        ax.add_patch(
            plt.Rectangle((-1, -1), 2, 2, fill=False, lw=0.6, ls="--", color="0.5")
        )  # the action box
        mean = samples.mean(axis=0)
        ax.plot(*mean, marker="x", color="tab:red", ms=8, mew=1.5, ls="none")  # the mean
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    fig.suptitle(
        f"{agent}: sliced W2 to the exact tilt {result['sliced_wasserstein']:.3f} "
        f"(behaviour flow {result['base_sliced_wasserstein']:.3f}), "
        f"mean error {result['mean_error']:.3f}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pil_kwargs=dict(optimize=True))
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(agents.available_agents()))
    parser.add_argument("--problem", default="bimodal", help="a 2-D problem (name or JSON file)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000, help="agent updates")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images" / "tilt")
    args = parser.parse_args(argv)
    try:
        unknown = [name for name in args.agents if name not in agents.available_agents()]
        if unknown:
            raise ValueError(
                f"unknown agent {unknown[0]!r}; available: {', '.join(agents.available_agents())}"
            )
        if args.steps < 0:
            raise ValueError(f"--steps must be >= 0, got {args.steps}")
        base, _, _, _ = exact_tilt.load_problem(args.problem)
        if base.dim != 2:
            raise ValueError(f"--problem must be 2-D to be drawn, {args.problem} is {base.dim}-D")
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "tilt_pictures.py: error: needs matplotlib (pip install -e '.[plot]')", file=sys.stderr
        )
        return 2
    except ValueError as error:
        print(f"tilt_pictures.py: error: {error}", file=sys.stderr)
        return 2

    behaviour, exact = reference_samples(args.problem, args.seed)
    results_path = args.out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.agents:
        result, policy = exact_tilt.run_exact_tilt(name, args.problem, args.seed, args.steps)
        panels = [("behaviour data", behaviour), ("exact tilt", exact), (f"{name} policy", policy)]
        draw(args.out_dir / f"{name}.png", name, panels, result)
        results[name] = dict(
            problem=Path(result["problem"]).stem,
            seed=args.seed,
            steps=args.steps,
            **{key: result[key] for key in RESULT_KEYS},
        )
        args.out_dir.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        print(
            f"{name}: sliced W2 {result['sliced_wasserstein']:.3f} (behaviour flow "
            f"{result['base_sliced_wasserstein']:.3f}), mean error {result['mean_error']:.3f}, "
            f"{result['wall_time_s']:.0f} s -> {args.out_dir / f'{name}.png'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
