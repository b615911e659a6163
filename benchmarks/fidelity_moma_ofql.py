"""MoMa QL and OFQL on the three exact-tilt problems: do the one-step policies stay regularised?

    python benchmarks/fidelity_moma_ofql.py [--steps 3000] [--seeds 1] [--problems ...] [--sweep]

For each variant (eta 0.01 or 1, MeanFlow's ImageNet or CIFAR-10 time sampling) and problem,
`interpolant_rl.testing.exact_tilt.run_exact_tilt` trains the agent against the problem's fixed
critic and `exact_tilt.regularisation` checks its samples (covariance, behaviour support,
improvement; thresholds from the problem). Writes `benchmarks/results/fidelity_moma_ofql.{json,md}`;
`--sweep` runs the smaller Q weights `SWEEP_ETAS` instead and writes
`benchmarks/results/fidelity_moma_ofql_eta_sweep.{json,md}`.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax

from interpolant_rl.testing import exact_tilt


ROOT = Path(__file__).resolve().parents[1]
TOY_ETA = 0.01  # the main table's small Q weight (the sweep: both regularised everywhere at 0.007)
SWEEP_ETAS = (0.003, 0.005, 0.007)


def _variants():
    """(label, agent, changes to the toy configuration)."""
    return [
        ("moma_ql eta=0.01", "moma_ql", dict(eta=TOY_ETA)),
        ("moma_ql eta=1", "moma_ql", dict(eta=1.0)),
        ("ofql eta=0.01 imagenet", "ofql", dict(eta=TOY_ETA, meanflow_preset="imagenet")),
        ("ofql eta=0.01 cifar10", "ofql", dict(eta=TOY_ETA, meanflow_preset="cifar10")),
        ("ofql eta=1 imagenet", "ofql", dict(eta=1.0, meanflow_preset="imagenet")),
        ("ofql eta=1 cifar10", "ofql", dict(eta=1.0, meanflow_preset="cifar10")),
    ]


def _sweep_variants():
    """`--sweep`: smaller Q weights than TOY_ETA, both agents (and both OFQL time laws)."""
    return [(f"moma_ql eta={eta}", "moma_ql", dict(eta=eta)) for eta in SWEEP_ETAS] + [
        (f"ofql eta={eta} {preset}", "ofql", dict(eta=eta, meanflow_preset=preset))
        for eta in SWEEP_ETAS
        for preset in ("imagenet", "cifar10")
    ]


def _measure(args):
    flows = {}  # one behaviour flow per (problem, seed), shared by every variant
    rows = []
    start = time.perf_counter()
    variants = _sweep_variants() if args.sweep else _variants()
    selected = [v for v in variants if args.variants is None or v[0] in args.variants]
    for problem in args.problems:
        base, critic, _, _ = exact_tilt.load_problem(problem)
        for label, name, changes in selected:
            _, _, tau, _ = exact_tilt.load_problem(problem)
            config = dataclasses.replace(exact_tilt.toy_config(name, tau), **changes)
            for seed in range(args.seeds):
                result, samples = exact_tilt.run_exact_tilt(
                    name, problem, seed, args.steps, config=config, behaviour_flows=flows
                )
                stats = exact_tilt.regularisation(samples, base, critic)
                row = dict(
                    variant=label,
                    agent=name,
                    problem=problem,
                    seed=seed,
                    steps=args.steps,
                    sliced_wasserstein=result["sliced_wasserstein"],
                    base_sliced_wasserstein=result["base_sliced_wasserstein"],
                    mean_error=result["mean_error"],
                    **stats,
                    regularised=exact_tilt.is_regularised(stats),
                    wall_time_s=result["wall_time_s"],
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows, time.perf_counter() - start


def _markdown(rows, steps, seeds):
    lines = [
        f"Exact-tilt problems, {steps} updates, {seeds} seed(s), networks 3x128 (toy_tilt.py). "
        "SW: sliced W2 to the exact tilt (behaviour flow in brackets). Regularised: "
        f"min-eigenvalue ratio >= {exact_tilt.MIN_EIGENVALUE_FRACTION}, >= {exact_tilt.SUPPORT_FRACTION:.0%} of samples "
        f"in the {exact_tilt.SUPPORT_LEVEL:.0%} ellipsoid of a behaviour component, mean Q above the "
        "behaviour's.",
        "",
        "| variant | problem | SW (behaviour) | min-eig ratio | in support | mean Q (behaviour) "
        "| regularised |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['problem']} | {r['sliced_wasserstein']:.3f} "
            f"({r['base_sliced_wasserstein']:.3f}) | {r['min_eigenvalue_ratio']:.2f} | "
            f"{r['support_fraction']:.3f} | {r['policy_mean_q']:.3f} "
            f"({r['behaviour_mean_q']:.3f}) | {'yes' if r['regularised'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--problems", nargs="+", default=list(exact_tilt.BUILT_IN_PROBLEMS))
    parser.add_argument("--variants", nargs="+", default=None, help="labels of _variants()")
    parser.add_argument(
        "--sweep", action="store_true", help=f"the variants with eta in {SWEEP_ETAS} instead"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.out is None:
        name = "fidelity_moma_ofql_eta_sweep" if args.sweep else "fidelity_moma_ofql"
        args.out = ROOT / "benchmarks/results" / name
    rows, wall = _measure(args)
    summary = dict(
        steps=args.steps,
        seeds=args.seeds,
        thresholds=dict(
            min_eigenvalue_fraction=exact_tilt.MIN_EIGENVALUE_FRACTION,
            support_level=exact_tilt.SUPPORT_LEVEL,
            support_fraction=exact_tilt.SUPPORT_FRACTION,
        ),
        devices=[str(d) for d in jax.devices()],
        total_wall_time_s=wall,
        rows=rows,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(rows, args.steps, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
