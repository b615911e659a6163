"""Robust aggregates: the IQM by hand (and as scipy's trim_mean, rliable's definition), the
stratified bootstrap's coverage and stratification, performance profiles by hand, and
`experiments/plot.py --aggregate` on synthetic run directories."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from interpolant_rl.train import iqm, performance_profile, stratified_bootstrap_ci


def test_iqm_by_hand():
    # 4 scores: drop one from each end
    assert iqm(np.array([[4.0, 1.0], [3.0, 100.0]])) == 3.5
    # 8 scores 1..8: drop two from each end, mean of 3, 4, 5, 6
    assert iqm(np.arange(1.0, 9.0).reshape(4, 2)) == 4.5
    # 10 scores (not a multiple of 4): floor(10 / 4) = 2 from each end, the middle 6 averaged
    scores = np.array([10.0, 1, 7, 3, 100, 2, 5, 4, 6, -50]).reshape(5, 2)
    assert iqm(scores) == pytest.approx((2 + 3 + 4 + 5 + 6 + 7) / 6)
    # 5 scores: floor(5 / 4) = 1 from each end
    assert iqm(np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])) == 2.0
    # 7 scores: one from each end, the middle 5
    assert iqm(np.array([[9.0, 0, 1, 2, 3, 4, -9]])) == 2.0
    # fewer than 4: nothing dropped
    assert iqm(np.array([[1.0, 2.0, 6.0]])) == 3.0


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (5, 2), (3, 3), (7, 5), (10, 4), (6, 7)])
def test_iqm_is_scipys_trim_mean(shape):
    scores = np.random.default_rng(sum(shape)).standard_cauchy(shape)
    assert iqm(scores) == pytest.approx(stats.trim_mean(scores, 0.25, axis=None), rel=1e-12)


def test_bootstrap_covers_the_true_mean_at_about_the_nominal_rate():
    # tasks of different means and spreads; the statistic is the mean over all scores, whose true
    # value is the mean of the task means
    rng = np.random.default_rng(0)
    runs, task_means, task_scales = 20, np.array([0.0, 1.0, 5.0, -2.0]), np.array([1, 2, 1.5, 1])
    truth, trials, level = task_means.mean(), 300, 0.95
    covered = 0
    for trial in range(trials):
        scores = task_means + task_scales * rng.standard_normal((runs, len(task_means)))
        low, high = stratified_bootstrap_ci(scores, np.mean, reps=400, level=level, seed=trial)
        covered += bool(low <= truth <= high)
    # the percentile bootstrap's known small-sample shortfall: its spread is sqrt((n - 1) / n)
    # of the estimate's, and the spread is itself estimated (Welch-Satterthwaite degrees of
    # freedom), so it covers P(|t_df| < z sqrt((n - 1) / n)), about 93.9 % here
    variances = task_scales**2
    df = variances.sum() ** 2 / ((variances**2).sum() / (runs - 1))
    z = stats.norm.ppf(0.5 + level / 2) * math.sqrt((runs - 1) / runs)
    expected = 1 - 2 * stats.t.sf(z, df)
    assert abs(expected - level) < 0.015
    tolerance = 3 * math.sqrt(expected * (1 - expected) / trials)  # three binomial errors
    assert abs(covered / trials - expected) <= tolerance, (covered / trials, expected)


def test_bootstrap_resamples_within_each_task():
    rng = np.random.default_rng(1)
    # task j's scores lie in [10 j, 10 j + 1): any draw across tasks would leave that range
    scores = 10.0 * np.arange(3) + rng.random((6, 3))
    low, high = stratified_bootstrap_ci(scores, lambda s: s.min(axis=0), reps=300)
    assert low.shape == high.shape == (3,)
    assert np.all(low >= scores.min(axis=0)) and np.all(high <= scores.max(axis=0))
    low, high = stratified_bootstrap_ci(scores, lambda s: s.max(axis=0), reps=300)
    assert np.all(low >= scores.min(axis=0)) and np.all(high <= scores.max(axis=0))
    # constant within each task: every replicate's task means are the same, so is their mean
    constant = np.tile(np.array([0.0, 1.0, 5.0]), (4, 1))
    low, high = stratified_bootstrap_ci(constant, np.mean, reps=200)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)
    # every replicate keeps the (runs, tasks) shape
    low, high = stratified_bootstrap_ci(scores, lambda s: np.array(s.shape), reps=20)
    assert list(low) == list(high) == [6, 3]


def test_bootstrap_is_seeded_and_nested():
    scores = np.random.default_rng(2).random((5, 4))
    first = stratified_bootstrap_ci(scores, iqm, reps=500, seed=3)
    assert first == stratified_bootstrap_ci(scores, iqm, reps=500, seed=3)
    assert first != stratified_bootstrap_ci(scores, iqm, reps=500, seed=4)
    low, high = first
    assert low <= iqm(scores) <= high
    narrow = stratified_bootstrap_ci(scores, iqm, reps=500, level=0.5, seed=3)
    assert low <= narrow[0] <= narrow[1] <= high


def test_performance_profile_by_hand():
    scores = np.array([[0.1, 0.5], [0.5, 0.9]])
    thresholds = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
    np.testing.assert_array_equal(
        performance_profile(scores, thresholds), [1.0, 0.75, 0.75, 0.25, 0.0, 0.0]
    )
    ones = performance_profile(np.ones((3, 2)), np.array([0.5, 1.0]))
    np.testing.assert_array_equal(ones, [1.0, 0.0])  # strictly above the threshold


def test_bad_scores_are_refused():
    for bad in (np.ones((2, 0)), np.array([[1.0, np.nan]])):
        with pytest.raises(ValueError, match="scores must be"):
            iqm(bad)
    with pytest.raises((ValueError, TypeError)):  # TypeError: the test suite's jaxtyping checks
        iqm(np.ones(3))
    with pytest.raises(ValueError, match="level must be in"):
        stratified_bootstrap_ci(np.ones((2, 2)), iqm, level=95.0)
    with pytest.raises((ValueError, TypeError)):
        performance_profile(np.ones((2, 2)), np.ones((2, 2)))


def write_run(directory, agent, env, rows):
    directory.mkdir(parents=True)
    (directory / "summary.json").write_text(json.dumps({"config": {"agent": agent, "env": env}}))
    (directory / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_plot_aggregate_table_and_profile(tmp_path, capsys):
    from experiments import plot

    rng = np.random.default_rng(0)
    finals = {}
    runs = []
    for agent, level in (("qam", 0.7), ("fql", 0.3)):
        for task in (1, 2, 3):
            for seed in range(3):
                final = float(np.clip(level + 0.1 * rng.standard_normal(), 0, 1))
                finals.setdefault(agent, np.zeros((3, 3)))[seed, task - 1] = final
                run_dir = tmp_path / f"{agent}-task{task}-seed{seed}"
                rows = [{"step": 10, "success": 0.0}, {"step": 20, "success": final}]
                write_run(run_dir, agent, f"cube-single-play-singletask-task{task}-v0", rows)
                runs.append(str(run_dir))
    out = tmp_path / "figures" / "curves.png"
    argv = [*runs, "--out", str(out), "--aggregate", "--reps", "300"]
    assert plot.main(argv) == 0
    printed = capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the per-run curves, as before
    profile = tmp_path / "figures" / "curves_profile.png"
    assert profile.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = json.loads((tmp_path / "figures" / "curves_aggregate.json").read_text())
    assert table["metric"] == "success" and table["level"] == 0.95
    for agent, scores in finals.items():
        row = table["agents"][agent]
        assert row["runs"] == 3 and row["tasks"] == 3
        assert row["iqm"] == pytest.approx(iqm(scores))
        assert row["mean"] == pytest.approx(scores.mean())
        low, high = stratified_bootstrap_ci(scores, iqm, reps=300, seed=0)
        assert row["iqm_ci"] == pytest.approx([float(low), float(high)])
        assert row["iqm_ci"][0] <= row["iqm"] <= row["iqm_ci"][1]
        assert row["mean_ci"][0] <= row["mean"] <= row["mean_ci"][1]
        assert f"| {agent} | 3 | 3 |" in printed
        profile_values = performance_profile(scores, np.asarray(table["thresholds"]))
        np.testing.assert_allclose(row["profile"], profile_values)
    markdown = (tmp_path / "figures" / "curves_aggregate.md").read_text()
    assert "| agent | tasks | runs per task | IQM [95% CI] | mean [95% CI] |" in markdown
    assert markdown.strip() in printed


def test_plot_aggregate_needs_equal_seeds_per_task(tmp_path, capsys):
    from experiments import plot

    runs = []
    for task, seeds in ((1, 2), (2, 3)):
        for seed in range(seeds):
            run_dir = tmp_path / f"fql-task{task}-seed{seed}"
            write_run(run_dir, "fql", f"task{task}", [{"step": 5, "success": 0.5}])
            runs.append(str(run_dir))
    assert plot.main([*runs, "--out", str(tmp_path / "c.png"), "--aggregate"]) == 2
    err = capsys.readouterr().err
    assert "fql: 2 runs of task1 but 3 of task2" in err and len(err.strip().splitlines()) == 1
    # without --aggregate the same directories still plot
    assert plot.main([*runs, "--out", str(tmp_path / "c.png")]) == 0
