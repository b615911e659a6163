"""Accuracy of `interpolant_rl.sample` against the step count, on a 1-D Gaussian mixture whose
velocity is exact: the figure and the numbers of the "Choosing a process" guide.

    python docs/scripts/accuracy_vs_steps.py [--samples 65536] [--out docs/images/accuracy_vs_steps.png]

The error is the 2-Wasserstein distance between the samples and the data distribution
(`interpolant_rl.testing.sliced_wasserstein`, the plain W2 in one dimension), measured against
the data's exact quantiles $F^{-1}((i - 1/2)/n)$. The ODE solves start from the normal quantiles $\\Phi^{-1}((i - 1/2)/n)$: the exact flow maps those to the data's
quantiles (one-dimensional transport is monotone), so their error is pure discretisation error,
with no Monte-Carlo noise. The SDE solves (`--sde-batches` times as many samples) keep their
Brownian noise, so their error stops falling at the Monte-Carlo floor (the W2 of as many exact
samples), drawn as a dashed line.

Prints one JSON object: the errors per method and step count, the floor, and the slopes of
log(error) against log(step size), fitted from 8 steps on, over the errors above twice the floor.
Needs matplotlib and scipy (`pip install -e ".[test]"`).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

import interpolant_rl as ir
from interpolant_rl.testing import GaussianMixture, sliced_wasserstein


ROOT = Path(__file__).resolve().parents[2]
STEPS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64)
DATA = GaussianMixture(weights=[0.3, 0.7], means=[[-1.0], [1.0]], covs=[[[0.25]], [[0.5]]])
INTERPOLANT = ir.LinearInterpolant()
VELOCITY = DATA.velocity_field(INTERPOLANT)


def methods() -> dict[str, tuple[ir.AbstractProcess, diffrax.AbstractSolver, int]]:
    """label -> (process, solver, first step count of the slope fit)."""
    return {
        "ODE, Euler": (ir.ProbabilityFlowODE(INTERPOLANT, VELOCITY), diffrax.Euler(), 8),
        "ODE, Heun": (ir.ProbabilityFlowODE(INTERPOLANT, VELOCITY), diffrax.Heun(), 8),
        "memoryless SDE (δ = 0.1), Euler–Maruyama": (
            ir.MemorylessSDE(INTERPOLANT, VELOCITY),
            diffrax.Euler(),
            8,  # h <= 2 delta from 5 steps
        ),
        "memoryless SDE (δ = 0.02), Euler–Maruyama": (
            ir.MemorylessSDE(INTERPOLANT, VELOCITY, regularisation=0.02),
            diffrax.Euler(),
            8,  # h <= 2 delta (25 steps) is the safe bound; measured: stable from 6
        ),
    }


def data_quantiles(probabilities: np.ndarray) -> np.ndarray:
    """$F^{-1}(p)$ of the 1-D mixture, by bisection (in float64)."""
    weights = np.asarray(DATA.weights, dtype=np.float64)
    means = np.asarray(DATA.means, dtype=np.float64)[:, 0]
    stds = np.sqrt(np.asarray(DATA.covs, dtype=np.float64)[:, 0, 0])

    def cdf(x):
        z = (x[:, None] - means) / stds
        return special.ndtr(z) @ weights

    low = np.full_like(probabilities, (means - 12 * stds).min())
    high = np.full_like(probabilities, (means + 12 * stds).max())
    for _ in range(60):
        middle = 0.5 * (low + high)
        below = cdf(middle) < probabilities
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return 0.5 * (low + high)


def w2(samples, exact):
    """W2 in one dimension: `sliced_wasserstein` with its one direction (+1 or -1)."""
    return sliced_wasserstein(samples, exact, num_projections=1)


@eqx.filter_jit
def _solve(process, solver, num_steps, x0s, keys):
    return jax.vmap(
        lambda x0, key: ir.sample(process, x0, key=key, solver=solver, num_steps=num_steps)
    )(x0s, keys)


def fitted_slope(steps, errors, floor, first):
    """Least-squares slope of log(error) against log(1/steps), over the step counts from `first`
    on whose errors are above 2 x floor."""
    points = [(s, e) for s, e in zip(steps, errors, strict=True) if s >= first and e > 2 * floor]
    if len(points) < 2:
        return None
    s, e = np.asarray(points, dtype=np.float64).T
    return float(np.polyfit(np.log(1.0 / s), np.log(e), 1)[0]), [int(s[0]), int(s[-1])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2**16, help="ODE samples")
    parser.add_argument(
        "--sde-batches", type=int, default=4, help="SDE samples: this many times --samples"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "images" / "accuracy_vs_steps.png"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n = args.samples
    probabilities = (np.arange(n) + 0.5) / n
    exact = data_quantiles(probabilities)[:, None]
    x0s = jnp.asarray(special.ndtri(probabilities), dtype=jnp.float32)[:, None]
    # The SDE samples: sde_batches batches of n, each from the same stratified x0s with its own
    # Brownian paths, compared with the quantiles of the larger sample.
    n_sde = n * args.sde_batches
    exact_sde = data_quantiles((np.arange(n_sde) + 0.5) / n_sde)[:, None]
    batch_keys = jax.random.split(jax.random.key(args.seed), (args.sde_batches, n))

    # The Monte-Carlo floor: W2 of n_sde exact samples against the exact quantiles.
    floor_draws = [
        w2(np.asarray(DATA.sample(jax.random.key(1000 + i), n_sde)), exact_sde) for i in range(4)
    ]
    floor = float(np.mean(floor_draws))

    errors = {}
    for label, (process, solver, _) in methods().items():
        errors[label] = []
        stochastic = isinstance(process, ir.AbstractSDE)
        for steps in STEPS:
            if stochastic:
                samples = np.concatenate(
                    [np.asarray(_solve(process, solver, steps, x0s, k)) for k in batch_keys]
                )
                reference = exact_sde
            else:
                samples = np.asarray(_solve(process, solver, steps, x0s, batch_keys[0]))
                reference = exact
            error = w2(samples, reference) if np.all(np.isfinite(samples)) else np.inf
            errors[label].append(float(error))
            print(f"{label:45s} {steps:3d} steps: W2 {error:.2e}", file=sys.stderr)

    slopes = {}
    for label, errs in errors.items():
        process, _, first = methods()[label]
        stochastic = isinstance(process, ir.AbstractSDE)
        fit = fitted_slope(STEPS, errs, floor if stochastic else 0.0, first)
        slopes[label] = None if fit is None else dict(slope=round(fit[0], 2), steps=fit[1])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (label, errs), marker in zip(errors.items(), "os^v", strict=True):
        shown = [(s, e) for s, e in zip(STEPS, errs, strict=True) if np.isfinite(e) and e < 10]
        ax.loglog(*zip(*shown, strict=True), marker=marker, ms=4, lw=1.2, label=label)
    ax.axhline(floor, color="0.5", ls="--", lw=0.8, label=f"SDE Monte-Carlo floor (n = {n_sde})")
    ax.set_ylim(top=2.0)  # the SDE's unstable step counts (h > 2 delta) lie above
    ax.set_xlabel("steps")
    ax.set_ylabel("W2 to the data distribution")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([2, 4, 8, 16, 32, 64]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_title("1-D mixture, exact velocity, linear interpolant", fontsize=10)
    ax.grid(True, which="major", lw=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, pil_kwargs=dict(optimize=True))

    print(
        json.dumps(
            dict(
                data=dict(weights=[0.3, 0.7], means=[-1.0, 1.0], variances=[0.25, 0.5]),
                samples=dict(ode=n, sde=n_sde),
                steps=list(STEPS),
                w2=errors,
                monte_carlo_floor=floor,
                slopes=slopes,
                wall_time_s=round(time.perf_counter() - start, 1),
                versions=dict(interpolant_rl=ir.__version__, jax=jax.__version__),
            ),
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
