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

PROBLEM may also be the name of a built-in problem in experiments/problems/
(unimodal_linear, bimodal, anisotropic_4d).

RESULT.json holds `sliced_wasserstein`, `mmd`, `mean_error` of the policy's samples against
samples of the exact tilt, the same three for the behaviour flow (`base_*`), the behaviour flow's
own fitting error against the base (`bc_*`), `exact_mean`, `policy_mean`, the configuration and
the wall time. Agents whose configuration has an inverse temperature `tau` (the QAM family) get
the problem's tau; the others keep their paper defaults (their regularisation is not a tilt).
"""

import argparse
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

import interpolant_rl as ir
from interpolant_rl import agents
from interpolant_rl._files import atomic_write
from interpolant_rl.agents import Batch, FixedCritic
from interpolant_rl.nn import VelocityField
from interpolant_rl.testing import GaussianMixture, QuadraticCritic, sliced_wasserstein


PROBLEMS_DIR = Path(__file__).resolve().parent / "problems"
DATASET_SIZE = 100_000
NUM_SAMPLES = 8192
BATCH_SIZE = 256
UPDATES_PER_CALL = 100
WIDTH, DEPTH = 128, 3  # CPU-sized networks; every agent gets the same
EVAL_FLOW_STEPS = 10


class ProblemError(ValueError):
    """A malformed problem file."""


def load_problem(path_or_name: str) -> tuple[GaussianMixture, QuadraticCritic, float, str]:
    """Read and validate PROBLEM.json; returns `(base, critic, tau, path)`."""
    path = Path(path_or_name)
    if not path.exists() and (PROBLEMS_DIR / f"{path_or_name}.json").exists():
        path = PROBLEMS_DIR / f"{path_or_name}.json"
    try:
        text = path.read_text()
    except OSError as error:
        builtin = ", ".join(sorted(p.stem for p in PROBLEMS_DIR.glob("*.json")))
        raise ProblemError(
            f"{path}: cannot read ({error.strerror}); built-in problems: {builtin}"
        ) from None
    try:
        problem = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProblemError(f"{path}: not valid JSON ({error})") from None
    try:
        base_spec, critic_spec, tau = problem["base"], problem["critic"], problem["tau"]
        base = GaussianMixture(base_spec["weights"], base_spec["means"], base_spec["covs"])
        critic = QuadraticCritic(critic_spec["A"], critic_spec["b"])
    except KeyError as error:
        raise ProblemError(f"{path}: missing key {error}") from None
    except (TypeError, ValueError) as error:
        raise ProblemError(f"{path}: {error}") from None
    if not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
        raise ProblemError(f"{path}: tau must be a finite number >= 0, got {tau!r}")
    if critic.b.shape[0] != base.dim:
        raise ProblemError(
            f"{path}: critic has dimension {critic.b.shape[0]} but base has dimension {base.dim}"
        )
    try:
        base.tilt(critic.A, critic.b, tau)
    except ValueError as error:
        raise ProblemError(f"{path}: {error}") from None
    return base, critic, float(tau), str(path)


def toy_config(name: str, tau: float):
    config = agents.resize(agents.default_config(name), width=WIDTH, depth=DEPTH, num_critics=1)
    try:
        return agents.override(config, tau=tau)
    except ValueError:  # not a tilt objective: it keeps its own regularisation
        return config


def _batches(data, key, num_updates):
    index = jr.randint(key, (num_updates, BATCH_SIZE), 0, data.shape[0])
    actions = data[index]
    zeros = jnp.zeros((num_updates, BATCH_SIZE))
    obs = jnp.zeros((num_updates, BATCH_SIZE, 1))
    return Batch(obs, actions, zeros, zeros, obs, jnp.ones((num_updates, BATCH_SIZE)))


def _train_behaviour_flow(data, dim, steps, key):
    init_key, train_key = jr.split(key)
    field = VelocityField(dim, 1, WIDTH, DEPTH, key=init_key)
    trained = agents.Trained.create(field, agents.adam(3e-4))

    @eqx.filter_jit
    def run(trained, key):
        arrays, static = eqx.partition(trained, eqx.is_array)

        def body(arrays, key):
            batch_key, step_key = jr.split(key)
            batch = jax.tree.map(lambda x: x[0], _batches(data, batch_key, 1))
            new, _ = agents.flow_matching_step(eqx.combine(arrays, static), batch, step_key)
            return eqx.filter(new, eqx.is_array), None

        arrays = jax.lax.scan(body, arrays, jr.split(key, UPDATES_PER_CALL))[0]
        return eqx.combine(arrays, static)

    # whole calls of UPDATES_PER_CALL steps: `steps` rounded up to a multiple of it
    for k in jr.split(train_key, -(-steps // UPDATES_PER_CALL)):
        trained = run(trained, k)
    return trained.model


def _distances(samples, reference, seed):
    samples, reference = np.asarray(samples), np.asarray(reference)
    dim = samples.shape[1]
    mmd = ir.mmd_squared(
        ir.RBFKernel(math.sqrt(dim)), jnp.asarray(samples), jnp.asarray(reference), unbiased=True
    )
    return dict(
        sliced_wasserstein=sliced_wasserstein(samples, reference, seed=seed),
        mmd=float(mmd),
        mean_error=float(np.linalg.norm(samples.mean(0) - reference.mean(0))),
    )


def run(agent_name: str, problem: str, seed: int, steps: int) -> tuple[dict, np.ndarray]:
    """Run one agent on one problem; returns `(result, policy_samples)`."""
    if steps < 0:
        raise ValueError(f"--steps must be >= 0, got {steps}")
    base, critic, tau, path = load_problem(problem)
    config = toy_config(agent_name, tau)
    exact = base.tilt(critic.A, critic.b, tau)
    dim = base.dim
    start = time.perf_counter()
    key = jr.key(seed)
    data_key, agent_key, train_key, flow_key, sample_key, ref_key = jr.split(key, 6)
    data = base.sample(data_key, DATASET_SIZE)

    agent = agents.make_agent(agent_name, 1, dim, agent_key, config)
    # policy extraction alone: the known critic replaces the learned one (its TD step is a no-op)
    agent = eqx.tree_at(lambda a: a.critic, agent, FixedCritic(critic))
    calls, remainder = divmod(steps, UPDATES_PER_CALL)
    chunks = [UPDATES_PER_CALL] * calls + ([remainder] if remainder else [])
    metrics = {}
    for index, size in enumerate(chunks):
        batch_key, update_key = jr.split(jr.fold_in(train_key, index))
        agent, metrics = agent.update(_batches(data, batch_key, size), update_key)
    final_metrics = {k: float(v[-1]) for k, v in metrics.items()}
    for name, value in final_metrics.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"{agent_name}: {name} became {value} during training")

    observations = jnp.zeros((NUM_SAMPLES, 1))
    policy_samples = np.asarray(agent.act(observations, sample_key))
    reference = np.asarray(exact.sample(ref_key, NUM_SAMPLES))
    behaviour = _train_behaviour_flow(data, dim, steps, flow_key)
    behaviour_samples = np.asarray(
        agents.flow_actions(
            ir.LinearInterpolant(),
            behaviour,
            observations,
            jr.normal(jr.fold_in(sample_key, 1), (NUM_SAMPLES, dim)),
            EVAL_FLOW_STEPS,
        )
    )
    base_reference = np.asarray(base.sample(jr.fold_in(ref_key, 1), NUM_SAMPLES))
    wall = time.perf_counter() - start

    result = dict(
        agent=agent_name,
        problem=path,
        seed=seed,
        steps=steps,
        tau=tau,
        dim=dim,
        num_samples=NUM_SAMPLES,
        **_distances(policy_samples, reference, seed),
        **{f"base_{k}": v for k, v in _distances(behaviour_samples, reference, seed).items()},
        **{f"bc_{k}": v for k, v in _distances(behaviour_samples, base_reference, seed).items()},
        exact_mean=np.asarray(exact.mean()).tolist(),
        policy_mean=policy_samples.mean(0).tolist(),
        behaviour_mean=behaviour_samples.mean(0).tolist(),
        final_metrics=final_metrics,
        config=repr(config),
        wall_time_s=wall,
        versions=dict(interpolant_rl=ir.__version__, jax=jax.__version__),
    )
    return result, policy_samples


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
        result, samples = run(args.agent, args.problem, args.seed, args.steps)
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
