"""aihf.eval.aggregate: the IQM and the probability of improvement against hand arithmetic and
scipy's Mann-Whitney U, and the stratified bootstrap against the exact enumeration of its
resamples (where an unstratified bootstrap would reach further)."""

import itertools

import numpy as np
import pytest
from scipy import stats

from aihf.eval.aggregate import (
    distribution_with_band, improvement_with_interval, interquartile_mean, iqm_with_interval, verdict_power,
    probability_of_improvement, score_distribution, stratified_interval,
)


def test_iqm_is_the_mean_of_the_middle_half_of_all_scores_pooled():
    # 8 scores pooled and sorted: 0, 1, 2, 3, 4, 5, 6, 100; a quarter (2) cut from each end: mean(2, 3, 4, 5)
    assert interquartile_mean([[0, 5, 100, 2], [3, 1, 6, 4]]) == pytest.approx(3.5)


def test_probability_of_improvement_counts_pairs_and_half_ties():
    # task 1: x = (1, 3) against y = (2, 2): pairs 1>2 no, 1>2 no, 3>2 yes, 3>2 yes: 2/4;
    # task 2: x = (5,) against y = (5, 4): a tie (1/2) and a win: 1.5/2; mean (0.5 + 0.75) / 2
    assert probability_of_improvement([[1, 3], [5]], [[2, 2], [5, 4]]) == pytest.approx(0.625)


def test_probability_of_improvement_is_the_mann_whitney_u_per_pair():
    rng = np.random.default_rng(3)
    x = [rng.normal(size=3), rng.normal(size=4), np.round(rng.normal(size=3), 1)]
    y = [rng.normal(size=3), rng.normal(0.5, size=2), np.round(rng.normal(size=5), 1)]
    u = [stats.mannwhitneyu(a, b, alternative="greater").statistic / (len(a) * len(b)) for a, b in zip(x, y)]
    assert probability_of_improvement(x, y) == pytest.approx(np.mean(u))


def test_the_score_distribution_is_the_share_above_each_threshold_averaged_over_tasks():
    # above 0.5: 2 of 3 runs in task 1, 1 of 2 in task 2: (2/3 + 1/2) / 2; above 0: all; above 1: none
    assert score_distribution([[0.1, 0.9, 1.0], [0.6, 0.2]], [0.0, 0.5, 1.0]) == pytest.approx([1.0, 7 / 12, 0.0])


def test_the_score_distributions_band_resamples_within_each_task():
    """Each task's runs equal: every stratified resample gives the same shares, so the band is
    the line itself; on spread runs it holds the line and is reproducible."""
    share, low, high = distribution_with_band([[1.0, 1.0, 1.0], [0.0, 0.0]], [-1.0, 0.5, 2.0], resamples=2000, seed=0)
    assert share.tolist() == low.tolist() == high.tolist() == [1.0, 0.5, 0.0]
    rng = np.random.default_rng(1)
    tasks, thresholds = [rng.uniform(size=3) for _ in range(4)], np.linspace(0, 1, 11)
    share, low, high = distribution_with_band(tasks, thresholds, resamples=2000, seed=3)
    assert np.all(low <= share) and np.all(share <= high) and np.any(low < high)
    assert all(np.array_equal(a, b) for a, b in zip(distribution_with_band(tasks, thresholds, 2000, 3), (share, low, high)))


def test_the_bootstrap_resamples_within_each_task_only():
    """Task A = (0, 1), task B = (10, 11): a stratified resample keeps two scores of each task, so
    the pooled IQM (middle two of four) is (max A' + min B') / 2, between 5 and 6, each of the
    16 resamples having probability 1/16 > 2.5%: the percentile interval is exactly [5, 6].
    Resampling the four pooled scores (not stratified) would reach 0 (all four from A's 0)."""
    tasks = [[0.0, 1.0], [10.0, 11.0]]
    exact = [interquartile_mean([a, b]) for a in itertools.product(tasks[0], repeat=2)
             for b in itertools.product(tasks[1], repeat=2)]
    assert (min(exact), max(exact)) == (5.0, 6.0)
    assert iqm_with_interval(tasks, resamples=4000, seed=0) == (5.5, 5.0, 6.0)


def test_the_improvement_interval_resamples_each_method_and_task_on_its_own():
    """One task, x = (1, 3), y = (2, 2): a resample of x is one of (1,1), (1,3), (3,1), (3,3), so
    P(X > Y) is 0, 1/2 or 1 (y resamples to itself), each end with probability 1/4."""
    assert improvement_with_interval([[1.0, 3.0]], [[2.0, 2.0]], resamples=4000, seed=0) == (0.5, 0.0, 1.0)


def test_an_interval_is_reproducible_from_its_seed_and_holds_the_point():
    rng = np.random.default_rng(0)
    tasks = [rng.normal(size=3) for _ in range(5)]
    point, low, high = iqm_with_interval(tasks, resamples=2000, seed=7)
    assert low < point < high
    assert iqm_with_interval(tasks, resamples=2000, seed=7) == (point, low, high)
    other_seed = iqm_with_interval(tasks, resamples=2000, seed=8)
    assert other_seed != (point, low, high) and other_seed[1:] == pytest.approx((low, high), abs=0.05)


def _pooled_mean(*tasks):
    return np.concatenate(tasks, axis=-1).mean(axis=-1)


def test_tasks_holding_the_same_runs_are_resampled_together():
    """Two tasks with one run per seed copied into both, (0, 1) and (0, 1). Grouped, a resample
    draws seeds (i, j) once for both: the mean of x_i, x_j, x_i, x_j is 0, 1/2 or 1 with
    probabilities 1/4, 1/2, 1/4, so its 20th and 80th percentiles are 0 and 1. Drawn as
    independent tasks, the mean of four draws is 0 or 1 with probability 1/16 each, 1/4 or 3/4
    with 1/4 each: the percentiles are 1/4 and 3/4, an interval half as wide."""
    copies = [[0.0, 1.0], [0.0, 1.0]]
    assert stratified_interval(_pooled_mean, copies, 20_000, 0, confidence=0.6, groups=["a", "a"]) == (0.0, 1.0)
    assert stratified_interval(_pooled_mean, copies, 20_000, 0, confidence=0.6) == (0.25, 0.75)
    with pytest.raises(ValueError, match="group 'a': its tasks hold different numbers of runs"):
        stratified_interval(_pooled_mean, [[0.0, 1.0], [0.0, 1.0, 2.0]], 100, 0, groups=["a", "a"])
    with pytest.raises(ValueError, match="1 group labels for 2 samples"):
        stratified_interval(_pooled_mean, copies, 100, 0, groups=["a"])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2 tasks for X but 1 for Y"):
        probability_of_improvement([[1.0], [2.0]], [[1.0]])
    with pytest.raises(ValueError, match="at least one run in each task"):
        interquartile_mean([[1.0], []])
    with pytest.raises(ValueError, match="two or more runs in each task"):
        iqm_with_interval([[1.0, 2.0], [3.0]], resamples=100, seed=0)


def test_verdict_power_finds_a_clear_difference_in_its_direction():
    better, worse = [[1.0, 1.1, 0.9]] * 3, [[0.0, 0.1, -0.1]] * 3
    assert verdict_power(better, worse, 3, 20, 500, 0) == (1.0, 0.0, 0.0)
    assert verdict_power(worse, better, 3, 20, 500, 0) == (0.0, 1.0, 0.0)


def test_verdict_power_rarely_decides_between_equal_methods():
    """Two methods with one distribution: the rule's 95% interval excludes 0.5 in about 5% of
    experiments (measured 0.04 + 0.015 at 3 seeds, 0.02 + 0.02 at 8)."""
    for seeds in (3, 8):
        ahead, behind, _ = verdict_power([[0.0, 1.0, 2.0]] * 5, [[0.0, 1.0, 2.0]] * 5, seeds, 200, 1000, 0)
        assert ahead + behind <= 0.1
    assert verdict_power([[0.0, 1.0, 2.0]] * 5, [[0.0, 1.0, 2.0]] * 5, 3, 50, 500, 7) == \
        verdict_power([[0.0, 1.0, 2.0]] * 5, [[0.0, 1.0, 2.0]] * 5, 3, 50, 500, 7)


def test_verdict_power_draws_a_run_set_copied_into_several_tasks_once():
    """Y's three tasks hold one set of runs: drawn once and resampled together, its interval is
    wider than three independent sets' (0.56 against 0.43 here)."""
    _, _, apart = verdict_power([[0.0, 1.0, 2.0]] * 3, [[0.0, 1.0, 2.0]] * 3, 5, 100, 1000, 0)
    _, _, together = verdict_power([[0.0, 1.0, 2.0]] * 3, [[0.0, 1.0, 2.0]] * 3, 5, 100, 1000, 0, None, ["a"] * 3)
    assert together > apart + 0.08
