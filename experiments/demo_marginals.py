"""Demo (the main job until the RL issues land): sample a Gaussian mixture with the memoryless SDE
and report how far its marginals are from the closed form.

    python experiments/demo_marginals.py [--steps 10 50 200] [--samples 8192] [--seed 0]

For every step count it prints, at t = 0.5 and t = 1, the largest mean and covariance error in
Monte-Carlo standard errors (|z|; below ~4 is indistinguishable from exact), the squared MMD
against exact samples with its distribution-free acceptance threshold, and Corr(X0, X1) (near 0:
the SDE is memoryless). The last line is a JSON summary.
"""

import argparse
import json
import sys
import time

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

import interpolant_rl as ir
from interpolant_rl.testing import GaussianMixture, mmd_two_sample_threshold, moment_errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--regularisation",
        type=float,
        default=0.02,
        help="memoryless-schedule regularisation delta (needs steps >~ 1/(2 delta))",
    )
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.steps) or args.samples < 16 or args.regularisation < 0:
        parser.error("steps must be >= 1, samples >= 16 and regularisation >= 0")

    data = GaussianMixture(
        weights=[0.25, 0.45, 0.3],
        means=[[-1.5, 1.0], [1.2, 0.8], [0.0, -1.5]],
        covs=[
            [[0.10, 0.03], [0.03, 0.15]],
            [[0.20, -0.05], [-0.05, 0.10]],
            [[0.3, 0.0], [0.0, 0.05]],
        ],
    )
    interpolant = ir.LinearInterpolant()
    sde = ir.MemorylessSDE(interpolant, data.velocity_field(interpolant), args.regularisation)
    key_noise, key_paths, key_exact = jax.random.split(jax.random.key(args.seed), 3)
    x0 = jax.random.normal(key_noise, (args.samples, 2))
    keys = jax.random.split(key_paths, args.samples)
    threshold = mmd_two_sample_threshold(args.samples)
    summary = []
    print(f"memoryless SDE (delta={args.regularisation}), Euler-Maruyama, {args.samples} samples")
    print(
        f"{'steps':>6} {'t':>5} {'max|z|':>8} {'MMD^2':>9} {'accept<':>9} {'corr(X0,X1)':>12} {'s':>6}"
    )
    for num_steps in args.steps:
        start = time.perf_counter()
        draw = jax.jit(
            jax.vmap(
                lambda k, z, n=num_steps: ir.sample(
                    sde, z, key=k, solver=diffrax.Euler(), num_steps=n, save_trajectory=True
                )[1]
            )
        )
        paths = np.asarray(draw(keys, x0))
        seconds = time.perf_counter() - start
        for t in (0.5, 1.0):
            index = round(t * num_steps)
            samples = paths[:, index]
            marginal = data.marginal(interpolant, t)
            z = moment_errors(samples, marginal.mean(), marginal.covariance()).max_z()
            exact = marginal.sample(jax.random.fold_in(key_exact, index), args.samples)
            mmd2 = float(ir.mmd_squared(ir.RBFKernel(1.0), jnp.asarray(samples), exact))
            corr = np.corrcoef(np.concatenate([np.asarray(x0), samples], axis=1).T)[:2, 2:]
            max_corr = float(np.max(np.abs(corr)))
            print(
                f"{num_steps:>6} {t:>5.2f} {z:>8.2f} {mmd2:>9.5f} {threshold:>9.5f} {max_corr:>12.3f} {seconds:>6.2f}"
            )
            summary.append(
                dict(
                    steps=num_steps,
                    t=t,
                    max_abs_z=round(z, 3),
                    mmd2=mmd2,
                    mmd2_threshold=threshold,
                    max_abs_corr_x0=max_corr,
                )
            )
    print(json.dumps({"demo": "memoryless_sde_marginals", "results": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
