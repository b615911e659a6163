"""Exact-tilt benchmark: one agent's policy extraction against a fixed quadratic critic.

    python experiments/toy_tilt.py --agent NAME --problem PROBLEM.json --seed S --steps N \
        --out RESULT.json [--samples-out SAMPLES.npy]

A single-state problem whose answer is known. Behaviour actions come from the Gaussian mixture
`base` of PROBLEM.json, the critic is Q(a) = -1/2 a^T A a + b^T a, and the optimal
behaviour-constrained policy is the exact tilt  pi*(a) ∝ pi_beta(a) exp(tau Q(a))  (computed in
closed form by `interpolant_rl.testing.GaussianMixture.tilt`). The agent runs its usual update
with the critic replaced by `FixedCritic(QuadraticCritic(A, b))` (no TD learning): `N` updates
on batches drawn from a fixed dataset of behaviour samples. A separate behaviour flow is fitted
by flow matching on the same data for the same number of steps, as the reference point.

PROBLEM may also be the name of a built-in problem (unimodal_linear, bimodal, anisotropic_4d, in
`interpolant_rl/testing/problems/`). The machinery is the library's
(`interpolant_rl.testing.exact_tilt`); this file is its command line.

RESULT.json holds `sliced_wasserstein`, `mmd`, `mean_error` of the policy's samples against
samples of the exact tilt, the same three for the behaviour flow (`base_*`), the behaviour flow's
own fitting error against the base (`bc_*`), `exact_mean`, `policy_mean`, the configuration and
the wall time. Agents whose configuration has an inverse temperature `tau` (the QAM family) get
the problem's tau; the others keep their paper defaults (their regularisation is not a tilt).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from interpolant_rl import agents
from interpolant_rl._files import atomic_write
from interpolant_rl.testing.exact_tilt import run_exact_tilt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--agent", required=True, help=f"one of {', '.join(agents.available_agents())}"
    )
    parser.add_argument("--problem", required=True, help="PROBLEM.json, or a built-in problem name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000, help="agent updates")
    parser.add_argument("--out", required=True, type=Path, help="RESULT.json")
    parser.add_argument(
        "--samples-out", type=Path, help="SAMPLES.npy: the policy's actions (n, dim)"
    )
    args = parser.parse_args(argv)
    try:
        if args.agent not in agents.available_agents():
            raise ValueError(
                f"unknown agent {args.agent!r}; available: {', '.join(agents.available_agents())}"
            )
        result, samples = run_exact_tilt(args.agent, args.problem, args.seed, args.steps)
    except (ValueError, FloatingPointError) as error:
        print(f"toy_tilt.py: error: {error}", file=sys.stderr)
        return 2
    atomic_write(args.out, lambda file: file.write((json.dumps(result, indent=2) + "\n").encode()))
    if args.samples_out is not None:
        atomic_write(args.samples_out, lambda file: np.save(file, samples))
    print(
        f"{args.agent} on {Path(result['problem']).stem}: sliced W2 {result['sliced_wasserstein']:.4f} "
        f"(behaviour flow {result['base_sliced_wasserstein']:.4f}, BC fit {result['bc_sliced_wasserstein']:.4f}), "
        f"mean error {result['mean_error']:.4f}, {result['wall_time_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
