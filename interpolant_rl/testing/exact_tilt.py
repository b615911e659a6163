r"""The exact-tilt benchmark's machinery: single-state problems whose optimal policy is known.

Behaviour actions come from a Gaussian mixture $\pi_\beta$, the critic is the quadratic
$Q(a) = -\tfrac12 a^\top A a + b^\top a$, and the optimal behaviour-regularised policy is the
exact tilt $\pi^*(a) \propto \pi_\beta(a)\,e^{\tau Q(a)}$, another Gaussian mixture
([`GaussianMixture.tilt`][interpolant_rl.testing.GaussianMixture.tilt]). The command line is
`experiments/toy_tilt.py`; the table over agents and problems `benchmarks/toy_tilt_table.py`.
"""

import json
import math
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .._interpolant import LinearInterpolant
from .._kernels import mmd_squared, RBFKernel
from ..agents import (
    adam,
    default_config,
    ExpectileCritic,
    FixedCritic,
    FixedExpectileCritic,
    flow_actions,
    flow_matching_step,
    make_agent,
    override,
    resize,
    Trained,
)
from ..data import Batch
from ..nn import VelocityField
from ._critic import QuadraticCritic
from ._mixture import GaussianMixture
from ._statistics import sliced_wasserstein


PROBLEMS_DIR = Path(__file__).resolve().parent / "problems"
"""Where the built-in problems live (`BUILT_IN_PROBLEMS`)."""
BUILT_IN_PROBLEMS = ("unimodal_linear", "bimodal", "anisotropic_4d")
"""The built-in problems, in the order the benchmark tables list them."""
DATASET_SIZE = 100_000
NUM_SAMPLES = 8192
BATCH_SIZE = 256
UPDATES_PER_CALL = 100
WIDTH, DEPTH = 128, 3  # CPU-sized networks; every agent gets the same
EVAL_FLOW_STEPS = 10

MIN_EIGENVALUE_FRACTION = 0.25
"""Covariance check: the policy keeps at least this share of the behaviour's smallest variance."""
SUPPORT_LEVEL = 0.99
"""Support check: the mass of each behaviour component's ellipsoid."""
SUPPORT_FRACTION = 0.9
"""Support check: the share of the policy's samples required inside some ellipsoid."""


class ProblemError(ValueError):
    """A malformed or unreadable problem file (the message names the file and the problem)."""


def _library_version() -> str:
    from .. import __version__  # (set once the package has finished importing)

    return __version__


def load_problem(path_or_name: str) -> tuple[GaussianMixture, QuadraticCritic, float, str]:
    r"""Read and validate an exact-tilt problem: a JSON file, or the name of a built-in one.

    The file holds `base` (`weights`, `means`, `covs` of a Gaussian mixture), `critic` (`A`,
    `b` of $Q(a) = -\tfrac12 a^\top A a + b^\top a$) and `tau` $\ge 0$; the tilt
    $\pi_\beta e^{\tau Q}$ must be normalisable.

    **Returns:** `(base, critic, tau, path)`. Raises
    [`ProblemError`][interpolant_rl.testing.exact_tilt.ProblemError] naming the file and what is wrong.
    """
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
    if not isinstance(problem, dict):
        raise ProblemError(
            f"{path}: must hold a JSON object with base, critic and tau, not a "
            f"{type(problem).__name__}"
        )
    try:
        base_spec, critic_spec, tau = problem["base"], problem["critic"], problem["tau"]
        for name, spec in (("base", base_spec), ("critic", critic_spec)):
            if not isinstance(spec, dict):
                raise ProblemError(f"{path}: {name} must be a JSON object, not {spec!r}")
        weights = _numbers(path, "base.weights", base_spec["weights"], 1)
        k = weights.shape[0]
        means = _numbers(path, "base.means", base_spec["means"], 2, (k, None))
        d = means.shape[1]
        covs = _numbers(path, "base.covs", base_spec["covs"], 3, (k, d, d))
        matrix = _numbers(path, "critic.A", critic_spec["A"], 2)
        vector = _numbers(path, "critic.b", critic_spec["b"], 1)
        if abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ProblemError(
                f"{path}: base.weights must sum to 1, they sum to {float(weights.sum()):.6g}"
            )
        base = GaussianMixture(weights, means, covs)
        critic = QuadraticCritic(matrix, vector)
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


def _numbers(path: Path, name: str, value, ndim: int, shape: tuple = ()) -> np.ndarray:
    """`value` as a float array of `ndim` dimensions whose sizes match `shape` (`None`: any),
    or a `ProblemError` naming the entry and the expected shape."""
    letters = {1: "[...]", 2: "[[...], ...]", 3: "[[[...], ...], ...]"}[ndim]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    sizes = tuple(shape) + (None,) * (ndim - len(shape))
    if (
        array is None
        or array.ndim != ndim
        or any(
            want is not None and got != want for got, want in zip(array.shape, sizes, strict=True)
        )
    ):
        expected = " x ".join("?" if size is None else str(size) for size in sizes)
        got = "ragged" if array is None else " x ".join(map(str, array.shape)) or "a number"
        raise ProblemError(
            f"{path}: {name} must be a {expected} array of numbers {letters}, got {got}"
        )
    return array


def toy_config(name: str, tau: float):
    """Agent `name`'s configuration for the exact-tilt problems: every network `WIDTH` x
    `DEPTH`, one critic, and the problem's `tau` where the agent has one (the QAM family);
    agents whose regularisation is not a tilt keep their defaults."""
    config = resize(default_config(name), width=WIDTH, depth=DEPTH, num_critics=1)
    try:
        return override(config, tau=tau)
    except ValueError:  # not a tilt objective: it keeps its own regularisation
        return config


def _batches(data, key, num_updates):
    index = jr.randint(key, (num_updates, BATCH_SIZE), 0, data.shape[0])
    actions = data[index]
    zeros = jnp.zeros((num_updates, BATCH_SIZE))
    obs = jnp.zeros((num_updates, BATCH_SIZE, 1))
    return Batch(obs, actions, zeros, zeros, obs, jnp.ones((num_updates, BATCH_SIZE)))


def train_behaviour_flow(data, dim, steps, key):
    """A `WIDTH` x `DEPTH` velocity field fitted by flow matching on `data` for `steps` updates
    (rounded up to whole calls of `UPDATES_PER_CALL`): the behaviour-cloning reference."""
    init_key, train_key = jr.split(key)
    field = VelocityField(dim, 1, WIDTH, DEPTH, key=init_key)
    trained = Trained.create(field, adam(3e-4))

    @eqx.filter_jit
    def run(trained, key):
        arrays, static = eqx.partition(trained, eqx.is_array)

        def body(arrays, key):
            batch_key, step_key = jr.split(key)
            batch = jax.tree.map(lambda x: x[0], _batches(data, batch_key, 1))
            new, _ = flow_matching_step(eqx.combine(arrays, static), batch, step_key)
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
    mmd = mmd_squared(
        RBFKernel(math.sqrt(dim)), jnp.asarray(samples), jnp.asarray(reference), unbiased=True
    )
    return dict(
        sliced_wasserstein=sliced_wasserstein(samples, reference, seed=seed),
        mmd=float(mmd),
        mean_error=float(np.linalg.norm(samples.mean(0) - reference.mean(0))),
    )


def run_exact_tilt(
    agent_name: str,
    problem: str,
    seed: int,
    steps: int,
    *,
    config: Any = None,
    behaviour_flows: dict | None = None,
) -> tuple[dict, np.ndarray]:
    """Run one agent's policy extraction on one exact-tilt problem against its fixed critic.

    The agent's ordinary `update` runs `steps` times with its critic replaced by
    `FixedCritic(QuadraticCritic(A, b))` (no TD), on batches of a fixed 100k-sample behaviour
    dataset; a behaviour flow is fitted on the same data for the same number of steps as the
    reference. **Returns:** `(result, policy_samples)`: `result` holds the policy's
    `sliced_wasserstein`, `mmd` and `mean_error` against the exact tilt, the same for the
    behaviour flow (`base_*`) and its own error against the base (`bc_*`), the means, the final
    training metrics, the configuration and the wall time; `policy_samples` are `NUM_SAMPLES`
    actions. Raises `ValueError` for `steps < 0`, `ProblemError` for a bad problem and
    `FloatingPointError` when a training metric becomes non-finite.

    `config` replaces [`toy_config`][interpolant_rl.testing.exact_tilt.toy_config]`(agent_name,
    tau)`; a `behaviour_flows` dict memoises the fitted behaviour flow per (problem, seed,
    steps), for runs of several agents or variants on the same data."""
    if steps < 0:
        raise ValueError(f"--steps must be >= 0, got {steps}")
    base, critic, tau, path = load_problem(problem)
    config = toy_config(agent_name, tau) if config is None else config
    exact = base.tilt(critic.A, critic.b, tau)
    dim = base.dim
    start = time.perf_counter()
    key = jr.key(seed)
    data_key, agent_key, train_key, flow_key, sample_key, ref_key = jr.split(key, 6)
    data = base.sample(data_key, DATASET_SIZE)

    agent = make_agent(agent_name, 1, dim, agent_key, config)
    # policy extraction alone: the known critic replaces the learned one (its TD step is a no-op)
    if isinstance(agent.critic, ExpectileCritic):  # IQL reads V: it keeps learning it on Q
        fixed = FixedExpectileCritic(critic, agent.critic.value, agent.critic.expectile)
    else:
        fixed = FixedCritic(critic)
    agent = eqx.tree_at(lambda a: a.critic, agent, fixed)
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
    memo = {} if behaviour_flows is None else behaviour_flows
    if (path, seed, steps) not in memo:
        memo[(path, seed, steps)] = train_behaviour_flow(data, dim, steps, flow_key)
    behaviour = memo[(path, seed, steps)]
    behaviour_samples = np.asarray(
        flow_actions(
            LinearInterpolant(),
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
        versions=dict(interpolant_rl=_library_version(), jax=jax.__version__),
    )
    return result, policy_samples


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
    r"""Whether a policy's `samples` `(n, dim)` stay regularised, by three checks whose
    thresholds come from the problem, not from a run:

    - **covariance**: `min_eigenvalue_ratio`, the smallest eigenvalue of the samples' covariance
      over the smallest of the behaviour's component covariances, at least
      `MIN_EIGENVALUE_FRACTION` = 1/4 (a point mass has 0; the exact tilts keep 87-101 %);
    - **support**: `support_fraction`, the share of samples inside the `SUPPORT_LEVEL` = 99 %
      ellipsoid (the $\chi^2_d$ quantile of the squared Mahalanobis distance) of some behaviour
      component, at least `SUPPORT_FRACTION` = 90 % (the behaviour puts 99 % there, the exact
      tilts 95-99 %);
    - **improvement**: `policy_mean_q` above `behaviour_mean_q` (in closed form).
    """
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
    """All three checks of [`regularisation`][interpolant_rl.testing.exact_tilt.regularisation] pass."""
    return (
        stats["min_eigenvalue_ratio"] >= MIN_EIGENVALUE_FRACTION
        and stats["support_fraction"] >= SUPPORT_FRACTION
        and stats["policy_mean_q"] > stats["behaviour_mean_q"]
    )
