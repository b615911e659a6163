"""The one-step MoMa QL and OFQL policies stay regularised on the exact-tilt problems.

On a single-state problem with a known critic (experiments/toy_tilt.py) a behaviour-regularised
policy must keep a non-degenerate covariance, stay on the behaviour's support and still move to
higher Q. The thresholds come from the problem, not from a run:

- **covariance**: the smallest eigenvalue of the policy's covariance is at least a quarter of the
  smallest eigenvalue of the behaviour's component covariances (a point mass has 0; the exact
  tilts keep 87-101 %);
- **support**: at least 90 % of the samples lie inside the 99 % ellipsoid (the $\\chi^2_d$
  quantile of the squared Mahalanobis distance) of some behaviour component — the behaviour
  itself puts 99 % there, the exact tilts 95-99 %;
- **improvement**: the policy's mean Q exceeds the behaviour's (computed in closed form).

Run as a script, the module measures the agents on the three built-in problems and writes
`benchmarks/results/fidelity_moma_ofql.{json,md}`:

    python tests/test_fidelity_moma_ofql.py [--steps 3000] [--seeds 1]
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from interpolant_rl import agents
from interpolant_rl.agents import Batch, FixedCritic
from interpolant_rl.testing import exact_tilt, GaussianMixture, QuadraticCritic


ROOT = Path(__file__).resolve().parents[1]

MIN_EIGENVALUE_FRACTION = 0.25
SUPPORT_LEVEL = 0.99  # the behaviour ellipsoid's mass
SUPPORT_FRACTION = 0.9  # the policy's samples required inside it
TOY_ETA = 0.01  # the Q weight that keeps both regularised on these problems (measured)


def chi2_quantile(level: float, dim: int) -> float:
    """The `level` quantile of the chi-squared law with `dim` degrees of freedom (bisection on
    the regularised lower incomplete gamma function's series)."""

    def cdf(x):
        # P(dim/2, x/2) = e^{-x/2} sum_k (x/2)^{dim/2 + k} / Gamma(dim/2 + k + 1)
        a, y = dim / 2.0, x / 2.0
        term = math.exp(-y + a * math.log(y) - math.lgamma(a + 1.0))
        total, k = term, 0
        while term > 1e-15 * total:
            k += 1
            term *= y / (a + k)
            total += term
        return total

    low, high = 1e-9, 1e3
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if cdf(mid) < level else (low, mid)
    return 0.5 * (low + high)


def behaviour_mean_q(base: GaussianMixture, critic: QuadraticCritic) -> float:
    """E_beta[Q] for Q(a) = -1/2 a^T A a + b^T a: per component -1/2 (tr(A C) + m^T A m) + b^T m."""
    A, b = np.asarray(critic.A), np.asarray(critic.b)
    total = 0.0
    for w, m, c in zip(
        np.asarray(base.weights), np.asarray(base.means), np.asarray(base.covs), strict=True
    ):
        total += w * (-0.5 * (np.trace(A @ c) + m @ A @ m) + b @ m)
    return float(total)


def regularisation(samples, base: GaussianMixture, critic: QuadraticCritic) -> dict:
    """The three checks' statistics for the policy's `samples` `(n, dim)` (see the module
    docstring), with their problem-derived thresholds."""
    samples = np.asarray(samples, dtype=np.float64)
    dim = samples.shape[1]
    covs = np.asarray(base.covs, dtype=np.float64)
    behaviour_min = min(float(np.linalg.eigvalsh(c).min()) for c in covs)
    policy_min = float(np.linalg.eigvalsh(np.atleast_2d(np.cov(samples.T))).min())
    radius = chi2_quantile(SUPPORT_LEVEL, dim)
    inside = np.zeros(len(samples), dtype=bool)
    for mean, cov in zip(np.asarray(base.means), covs, strict=True):
        d = samples - mean
        inside |= np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d) <= radius
    q = np.asarray(jax.vmap(lambda a: critic(None, a)[0])(jnp.asarray(samples, jnp.float32)))
    return dict(
        min_eigenvalue_ratio=policy_min / behaviour_min,
        support_fraction=float(inside.mean()),
        policy_mean_q=float(q.mean()),
        behaviour_mean_q=behaviour_mean_q(base, critic),
    )


def is_regularised(stats: dict) -> bool:
    return (
        stats["min_eigenvalue_ratio"] >= MIN_EIGENVALUE_FRACTION
        and stats["support_fraction"] >= SUPPORT_FRACTION
        and stats["policy_mean_q"] > stats["behaviour_mean_q"]
    )


def _train(name, config, base, critic, steps, key, batch_size=256, per_call=100):
    """`steps` updates of agent `name` against the fixed critic on behaviour samples; returns
    8192 policy samples."""
    data_key, agent_key, train_key, sample_key = jr.split(key, 4)
    data = base.sample(data_key, 20_000)
    agent = agents.make_agent(name, 1, base.dim, agent_key, config)
    agent = eqx.tree_at(lambda a: a.critic, agent, FixedCritic(critic))
    for index in range(steps // per_call):
        batch_key, update_key = jr.split(jr.fold_in(train_key, index))
        rows = jr.randint(batch_key, (per_call, batch_size), 0, data.shape[0])
        zeros = jnp.zeros((per_call, batch_size))
        obs = jnp.zeros((per_call, batch_size, 1))
        batch = Batch(obs, data[rows], zeros, zeros, obs, jnp.ones((per_call, batch_size)))
        agent, _ = agent.update(batch, update_key)
    return agent.act(jnp.zeros((8192, 1)), sample_key)


def test_thresholds_come_from_the_problem():
    base, critic, tau, _ = exact_tilt.load_problem("bimodal")
    assert chi2_quantile(0.99, 2) == pytest.approx(-2.0 * math.log(0.01), rel=1e-6)
    assert chi2_quantile(0.99, 4) == pytest.approx(13.2767, rel=1e-4)
    # the behaviour passes the covariance and support checks; its mean Q matches sampling
    behaviour = regularisation(base.sample(jr.key(0), 20_000), base, critic)
    assert behaviour["min_eigenvalue_ratio"] > 0.9
    assert behaviour["support_fraction"] > SUPPORT_LEVEL - 0.005
    assert behaviour["policy_mean_q"] == pytest.approx(behaviour["behaviour_mean_q"], abs=0.01)
    # so does the exact tilt, which also has the higher Q
    tilt = base.tilt(critic.A, critic.b, tau)
    assert is_regularised(regularisation(tilt.sample(jr.key(1), 20_000), base, critic))
    # the collapse of the old defaults: every sample at the critic's maximiser (1, 0), which is
    # 2.5 standard deviations from the right mode (inside its ellipsoid): the covariance check
    # is the one that catches it
    collapsed = jnp.array([1.0, 0.0]) + 1e-3 * jr.normal(jr.key(2), (1000, 2))
    stats = regularisation(collapsed, base, critic)
    assert stats["min_eigenvalue_ratio"] < 1e-3
    assert not is_regularised(stats)


@pytest.mark.parametrize(("name", "batch_size"), [("moma_ql", 64), ("ofql", 256)])
def test_one_step_policies_stay_regularised(name, batch_size):
    """The default configuration with eta = 0.01 (the default 1, Diffusion-QL's Gym value, is
    too strong where Q is centred near 0: the normalised Q term pulls with eta |grad Q| / mean|Q|)
    at the exact-tilt benchmark's network size (3 x 128) on `bimodal`, 1000 updates: regularised,
    higher Q. (MoMa QL's batch is cut to 64 states, each with its M = 4 particles, to keep the
    test short.)"""
    base, critic, tau, _ = exact_tilt.load_problem("bimodal")
    config = agents.resize(
        agents.default_config(name), width=exact_tilt.WIDTH, depth=exact_tilt.DEPTH, num_critics=1
    )
    config = dataclasses.replace(config, eta=TOY_ETA)
    samples = _train(name, config, base, critic, 1000, jr.key(0), batch_size=batch_size)
    stats = regularisation(samples, base, critic)
    assert stats["min_eigenvalue_ratio"] >= MIN_EIGENVALUE_FRACTION, stats
    assert stats["support_fraction"] >= SUPPORT_FRACTION, stats
    assert stats["policy_mean_q"] > stats["behaviour_mean_q"], stats


# ----------------------------------------------------------------------------------------------
# Measurement (python tests/test_fidelity_moma_ofql.py)


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


def _measure(args):
    original_config = exact_tilt.toy_config
    flows = {}
    original_flow = exact_tilt.train_behaviour_flow

    def cached_flow(data, dim, steps, key):  # the same for every variant of a (problem, seed)
        index = (dim, steps, tuple(np.asarray(jr.key_data(key)).ravel()), float(data[0, 0]))
        if index not in flows:
            flows[index] = original_flow(data, dim, steps, key)
        return flows[index]

    exact_tilt.train_behaviour_flow = cached_flow
    rows = []
    start = time.perf_counter()
    selected = [v for v in _variants() if args.variants is None or v[0] in args.variants]
    for problem in args.problems:
        base, critic, _, _ = exact_tilt.load_problem(problem)
        for label, name, changes in selected:
            exact_tilt.toy_config = lambda n, tau, c=changes: dataclasses.replace(
                original_config(n, tau), **c
            )
            for seed in range(args.seeds):
                result, samples = exact_tilt.run_exact_tilt(name, problem, seed, args.steps)
                stats = regularisation(samples, base, critic)
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
                    regularised=is_regularised(stats),
                    wall_time_s=result["wall_time_s"],
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
    exact_tilt.toy_config = original_config
    exact_tilt.train_behaviour_flow = original_flow
    return rows, time.perf_counter() - start


def _markdown(rows, steps, seeds):
    lines = [
        f"Exact-tilt problems, {steps} updates, {seeds} seed(s), networks 3x128 (toy_tilt.py). "
        "SW: sliced W2 to the exact tilt (behaviour flow in brackets). Regularised: "
        f"min-eigenvalue ratio >= {MIN_EIGENVALUE_FRACTION}, >= {SUPPORT_FRACTION:.0%} of samples "
        f"in the {SUPPORT_LEVEL:.0%} ellipsoid of a behaviour component, mean Q above the "
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
    parser.add_argument(
        "--problems", nargs="+", default=["unimodal_linear", "bimodal", "anisotropic_4d"]
    )
    parser.add_argument("--variants", nargs="+", default=None, help="labels of _variants()")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fidelity_moma_ofql")
    args = parser.parse_args(argv)
    rows, wall = _measure(args)
    summary = dict(
        steps=args.steps,
        seeds=args.seeds,
        thresholds=dict(
            min_eigenvalue_fraction=MIN_EIGENVALUE_FRACTION,
            support_level=SUPPORT_LEVEL,
            support_fraction=SUPPORT_FRACTION,
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
