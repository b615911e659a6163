r"""Robust aggregates of final scores over tasks and seeds (Agarwal et al., 2021, "Deep
reinforcement learning at the edge of the statistical precipice"): the interquartile mean,
stratified bootstrap confidence intervals and performance profiles, in NumPy.

Scores are arranged as a `(runs, tasks)` matrix: column $j$ holds the final scores of the seeds
of task $j$. Every function here agrees with the `rliable` package's definitions (its
`aggregate_iqm`, its `StratifiedBootstrap` with percentile intervals, and its run-score
distributions), without its dependencies.
"""

from collections.abc import Callable

import numpy as np
from jaxtyping import Float, Real


def _scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(
            f"scores must be a non-empty (runs, tasks) matrix, got shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return scores


def iqm(scores: Real[np.ndarray, "runs tasks"]) -> float:
    r"""The interquartile mean of all `runs x tasks` scores: the mean of the scores left after
    dropping the lowest and the highest quarter.

    With $n$ scores, $\lfloor n/4 \rfloor$ are dropped from each end (so when $n$ is not a
    multiple of 4 slightly more than the middle half is averaged, with no fractional weights):
    the definition of `scipy.stats.trim_mean(scores, 0.25, axis=None)`, which `rliable`'s
    `aggregate_iqm` is. For $n < 4$ nothing is dropped.

    **Arguments:**

    - `scores`: `(runs, tasks)`.

    **Returns:** the IQM, a float.
    """
    flat = np.sort(_scores(scores), axis=None)
    cut = flat.size // 4
    return float(np.mean(flat[cut : flat.size - cut]))


def stratified_bootstrap_ci(
    scores: Real[np.ndarray, "runs tasks"],
    statistic: Callable[[np.ndarray], float | np.ndarray] = iqm,
    *,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""A percentile bootstrap confidence interval for `statistic(scores)`, resampling runs
    *within each task* (the stratified bootstrap): each replicate draws, for every task
    independently, as many runs as it has, with replacement, so every replicate keeps every task.

    **Arguments:**

    - `scores`: `(runs, tasks)` final scores.
    - `statistic`: a function of a `(runs, tasks)` matrix returning a float or an array (e.g.
      [`iqm`][interpolant_rl.train.iqm], `np.mean`, or a performance
      profile at fixed thresholds: the interval is then taken element-wise).
    - `reps`: the number of bootstrap replicates.
    - `level`: the coverage, e.g. `0.95`: the interval runs from the $(1 - \text{level})/2$ to the
      $(1 + \text{level})/2$ quantile of the replicates.
    - `seed`: the seed of the NumPy generator that draws the replicates.

    **Returns:** `(low, high)`, each of `statistic`'s output shape (0-d arrays for a float).
    """
    scores = _scores(scores)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    columns = np.arange(tasks)
    replicates = np.stack(
        [
            np.asarray(statistic(scores[rng.integers(0, runs, size=(runs, tasks)), columns]))
            for _ in range(reps)
        ]
    )
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    return np.asarray(low), np.asarray(high)


def performance_profile(
    scores: Real[np.ndarray, "runs tasks"], thresholds: Real[np.ndarray, " thresholds"]
) -> Float[np.ndarray, " thresholds"]:
    r"""The run-score distribution: for each threshold $\tau$, the fraction of all
    `runs x tasks` scores strictly above $\tau$, $\hat F(\tau) = \frac{1}{NM}\sum_{i,j}
    \mathbb 1[x_{ij} > \tau]$ (`rliable`'s performance profile of score distributions).

    **Arguments:**

    - `scores`: `(runs, tasks)`.
    - `thresholds`: the $\tau$ values, 1-D.

    **Returns:** the fractions, one per threshold (non-increasing in $\tau$).
    """
    scores = _scores(scores)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1:
        raise ValueError(f"thresholds must be 1-D, got shape {thresholds.shape}")
    return np.mean(scores.reshape(-1, 1) > thresholds, axis=0)
