"""Aggregates over several tasks with few seeds each: the interquartile mean and the probability
of improvement, with stratified bootstrap intervals.

A benchmark of M tasks (here: an environment and a data setting) with n runs each (seeds)
gives a method a score matrix; per-task t-intervals over 3 seeds are too wide to order
methods, so, following Agarwal et al., "Deep Reinforcement Learning at the Edge of the
Statistical Precipice" (NeurIPS 2021; their library is rliable):

* interquartile mean (IQM): the mean of the middle 50% of all n x M scores pooled,
  ``scipy.stats.trim_mean(scores, 0.25)`` (a quarter cut from each end);
* score distribution (performance profile) at thresholds tau: the share of runs with a score
  above tau, averaged over tasks, F(tau) = 1/M sum_m 1/n sum_i [x_mi > tau];
* probability of improvement of X over Y: the mean over tasks m of
  P(X_m > Y_m) = 1/(n_x n_y) sum_i sum_j ( [x_mi > y_mj] + 1/2 [x_mi = y_mj] ),
  the Mann-Whitney U statistic over n_x n_y per task;
* 95% intervals by the stratified percentile bootstrap: every resample draws, within each
  task and for each method separately, n runs with replacement from that task's runs, so a
  task's share of the aggregate stays fixed (``scipy.stats.bootstrap`` with one sample per
  task and method, ``paired=False``: it resamples each sample independently).

rliable itself is not a dependency: its bootstrap comes from ``arch`` < 8, which does not
import with pandas 3 (this project's pin).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

Scores = Sequence[Sequence[float]]  # one entry per task: that task's runs


def interquartile_mean(tasks: Scores) -> float:
    """IQM of every run of every task pooled: ``trim_mean(all scores, 0.25)``."""
    return float(_iqm(*[np.asarray(runs, dtype=np.float64) for runs in _checked(tasks)]))


def score_distribution(tasks: Scores, thresholds: Sequence[float]) -> np.ndarray:
    """F(tau) for each threshold tau: the share of runs scoring above it, averaged over tasks."""
    return _distribution(np.asarray(thresholds, dtype=np.float64))(
        *[np.asarray(runs, dtype=np.float64) for runs in _checked(tasks)])


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """Mean over tasks of P(X > Y) + P(X = Y)/2 (module docstring); ``x`` and ``y`` list the
    same tasks in the same order, each task's runs (their numbers may differ)."""
    x, y = _checked(x), _checked(y)
    if len(x) != len(y):
        raise ValueError(f"probability of improvement: {len(x)} tasks for X but {len(y)} for Y")
    return float(_improvement(len(x))(*[np.asarray(runs, dtype=np.float64) for runs in (*x, *y)]))


def stratified_interval(statistic: Callable[..., np.ndarray], samples: Sequence[Sequence[float]], resamples: int,
                        seed: int, confidence: float = 0.95) -> tuple[Any, Any]:
    """Percentile-bootstrap interval of ``statistic(*samples)``, each sample (a task's runs of
    one method) resampled on its own (stratified: module docstring). ``statistic`` takes the
    samples as arrays and reduces their last axis (``scipy.stats.bootstrap``'s vectorised form);
    a statistic of several values puts them on its result's first axis, and the bounds are then
    arrays. A sample of one run has nothing to resample: each needs two or more."""
    from scipy import stats

    arrays = tuple(np.asarray(s, dtype=np.float64) for s in samples)
    if any(len(a) < 2 for a in arrays):
        raise ValueError("a bootstrap interval needs two or more runs in each task, for each method")
    result = stats.bootstrap(arrays, statistic, n_resamples=resamples, vectorized=True, paired=False, axis=-1,
                             confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def iqm_with_interval(tasks: Scores, resamples: int, seed: int) -> tuple[float, float, float]:
    """The IQM of ``tasks`` and its stratified 95% bootstrap interval: (iqm, low, high)."""
    tasks = _checked(tasks)
    return (interquartile_mean(tasks), *stratified_interval(_iqm, tasks, resamples, seed))


def distribution_with_band(tasks: Scores, thresholds: Sequence[float], resamples: int,
                           seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F at each threshold and its pointwise stratified 95% bootstrap band: (F, low, high)."""
    tasks, thresholds = _checked(tasks), np.asarray(thresholds, dtype=np.float64)
    low, high = stratified_interval(_distribution(thresholds), tasks, resamples, seed)
    return score_distribution(tasks, thresholds), low, high


def improvement_with_interval(x: Scores, y: Scores, resamples: int, seed: int) -> tuple[float, float, float]:
    """P(X > Y) over the tasks and its stratified 95% bootstrap interval (X's and Y's runs
    resampled independently within each task): (probability, low, high)."""
    point = probability_of_improvement(x, y)
    return (point, *stratified_interval(_improvement(len(x)), [*x, *y], resamples, seed))


def _checked(tasks: Scores) -> list[Sequence[float]]:
    tasks = list(tasks)
    if not tasks or any(len(runs) == 0 for runs in tasks):
        raise ValueError("an aggregate needs at least one task and at least one run in each task")
    return tasks


def _iqm(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy import stats

    return stats.trim_mean(np.concatenate(tasks, axis=axis), 0.25, axis=axis)


def _distribution(thresholds: np.ndarray) -> Callable[..., np.ndarray]:
    """F(tau) as a statistic of the tasks' samples: thresholds on the result's first axis."""

    def statistic(*tasks: np.ndarray, axis: int = -1) -> np.ndarray:
        shares = []
        for runs in tasks:
            runs = np.moveaxis(runs, axis, -1)
            shares.append((runs[None] > thresholds.reshape(-1, *[1] * runs.ndim)).mean(axis=-1))
        return np.mean(shares, axis=0)

    return statistic


def _improvement(n_tasks: int) -> Callable[..., np.ndarray]:
    """The probability of improvement as a statistic of 2 x ``n_tasks`` samples: X's tasks, then Y's."""

    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        per_task = []
        for x, y in zip(samples[:n_tasks], samples[n_tasks:]):
            x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
            per_task.append(((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1)))
        return np.mean(per_task, axis=0)

    return statistic
