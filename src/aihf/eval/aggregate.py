"""Aggregates over several tasks with few seeds each: the interquartile mean, the score
distribution and the probability of improvement, with stratified bootstrap intervals.

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
  task's share of the aggregate stays fixed; the interval is the 2.5th and 97.5th percentiles
  of the statistic over the resamples.

One addition to rliable's bootstrap: tasks that hold *the same runs* (a method that does not
read the data two settings differ in has one run per seed, copied into both tasks) can be
given one ``groups`` label, and are then resampled with the same indices, seed i of one task
always drawn with seed i of the other. Resampling them independently, as if the copy were a
second set of seeds, would narrow the method's interval. The resampling is therefore written
here (a few lines of NumPy) rather than taken from ``scipy.stats.bootstrap``, which resamples
every sample on its own; rliable itself is not a dependency: its bootstrap comes from
``arch`` < 8, which does not import with pandas 3 (this project's pin).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np

Scores = Sequence[Sequence[float]]  # one entry per task: that task's runs
Groups = Sequence[Hashable] | None  # per task: tasks with one label hold the same runs (None: every task its own)


def interquartile_mean(tasks: Scores) -> float:
    """IQM of every run of every task pooled: ``trim_mean(all scores, 0.25)``."""
    return float(_iqm(*_arrays(tasks)))


def score_distribution(tasks: Scores, thresholds: Sequence[float]) -> np.ndarray:
    """F(tau) for each threshold tau: the share of runs scoring above it, averaged over tasks."""
    return _distribution(np.asarray(thresholds, dtype=np.float64))(*_arrays(tasks))


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """Mean over tasks of P(X > Y) + P(X = Y)/2 (module docstring); ``x`` and ``y`` list the
    same tasks in the same order, each task's runs (their numbers may differ)."""
    x, y = _arrays(x), _arrays(y)
    if len(x) != len(y):
        raise ValueError(f"probability of improvement: {len(x)} tasks for X but {len(y)} for Y")
    return float(_improvement(len(x))(*x, *y))


def stratified_interval(statistic: Callable[..., Any], samples: Scores, resamples: int, seed: int,
                        confidence: float = 0.95, groups: Groups = None) -> tuple[Any, Any]:
    """Percentile-bootstrap interval of ``statistic(*samples)``: each sample (a task's runs of
    one method) resampled on its own, except that samples with one ``groups`` label share their
    resampled indices (module docstring). ``statistic`` reduces the last axis of its arrays and
    keeps the leading ones (the resamples); a statistic of several values puts them first, and
    the bounds are then arrays. A sample of one run has nothing to resample: each needs two or more."""
    arrays = _arrays(samples)
    labels = list(range(len(arrays))) if groups is None else list(groups)
    if len(labels) != len(arrays):
        raise ValueError(f"{len(labels)} group labels for {len(arrays)} samples")
    if any(len(a) < 2 for a in arrays):
        raise ValueError("a bootstrap interval needs two or more runs in each task, for each method")
    rng, indices = np.random.default_rng(seed), {}
    for label in dict.fromkeys(labels):  # in order of first appearance, so a seed gives one draw
        sizes = {len(a) for a, other in zip(arrays, labels) if other == label}
        if len(sizes) != 1:
            raise ValueError(f"group {label!r}: its tasks hold different numbers of runs {sorted(sizes)}")
        runs = sizes.pop()
        indices[label] = rng.integers(0, runs, size=(resamples, runs))
    values = statistic(*[a[indices[label]] for a, label in zip(arrays, labels)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=-1)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def iqm_with_interval(tasks: Scores, resamples: int, seed: int, groups: Groups = None,
                      confidence: float = 0.95) -> tuple[float, float, float]:
    """The IQM of ``tasks`` and its stratified bootstrap interval (95% by default): (iqm, low, high)."""
    return (interquartile_mean(tasks), *stratified_interval(_iqm, tasks, resamples, seed, confidence, groups))


def distribution_with_band(tasks: Scores, thresholds: Sequence[float], resamples: int, seed: int,
                           groups: Groups = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F at each threshold and its pointwise stratified 95% bootstrap band: (F, low, high)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    low, high = stratified_interval(_distribution(thresholds), tasks, resamples, seed, groups=groups)
    return score_distribution(tasks, thresholds), low, high


def improvement_with_interval(x: Scores, y: Scores, resamples: int, seed: int, x_groups: Groups = None,
                              y_groups: Groups = None, confidence: float = 0.95) -> tuple[float, float, float]:
    """P(X > Y) over the tasks and its stratified bootstrap interval (95% by default; X's and Y's
    runs resampled independently of each other, within each task or group): (probability, low, high)."""
    point = probability_of_improvement(x, y)
    groups = [("x", g) for g in (range(len(x)) if x_groups is None else x_groups)] + \
             [("y", g) for g in (range(len(y)) if y_groups is None else y_groups)]
    return (point, *stratified_interval(_improvement(len(x)), [*x, *y], resamples, seed, confidence, groups))


def verdict_power(x: Scores, y: Scores, seeds: int, simulations: int, resamples: int, seed: int,
                  x_groups: Groups = None, y_groups: Groups = None) -> tuple[float, float, float]:
    """How often ``improvement_with_interval``'s 95% interval would decide between X and Y with
    ``seeds`` runs per task: (share of simulated experiments whose interval lies wholly above 0.5,
    share wholly below, median width of the interval).

    Each simulated experiment draws, for every set of runs (a task, or tasks of one group
    label: the same runs), ``seeds`` scores from a normal with the mean and standard deviation
    (n - 1 in the denominator) of that set's observed runs, then takes the interval with
    ``resamples`` resamples as the rule does. A planning estimate: it treats the observed means
    and spreads as the true ones (with 3 runs a set, the spread itself is uncertain) and normal
    (bimodal outcomes, such as a run that falls over and one that does not, are smoothed)."""
    x, y = _arrays(x), _arrays(y)
    labels = {"x": list(range(len(x))) if x_groups is None else list(x_groups),
              "y": list(range(len(y))) if y_groups is None else list(y_groups)}
    rng = np.random.default_rng(seed)
    above = below = 0
    widths = []
    for simulation in range(simulations):
        drawn: dict[tuple[str, Hashable], np.ndarray] = {}
        tasks = {"x": [], "y": []}
        for side, observed in (("x", x), ("y", y)):
            for runs, label in zip(observed, labels[side]):
                if (side, label) not in drawn:
                    drawn[side, label] = rng.normal(runs.mean(), runs.std(ddof=1), seeds)
                tasks[side].append(drawn[side, label])
        _, low, high = improvement_with_interval(tasks["x"], tasks["y"], resamples, simulation, labels["x"],
                                                 labels["y"])
        above += low > 0.5
        below += high < 0.5
        widths.append(high - low)
    return above / simulations, below / simulations, float(np.median(widths))


def _arrays(tasks: Scores) -> list[np.ndarray]:
    arrays = [np.asarray(runs, dtype=np.float64) for runs in tasks]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("an aggregate needs at least one task and at least one run in each task")
    return arrays


def _iqm(*tasks: np.ndarray) -> np.ndarray:
    from scipy import stats

    return stats.trim_mean(np.concatenate(tasks, axis=-1), 0.25, axis=-1)


def _distribution(thresholds: np.ndarray) -> Callable[..., np.ndarray]:
    """F(tau) as a statistic of the tasks' runs: the thresholds on the result's first axis."""

    def statistic(*tasks: np.ndarray) -> np.ndarray:
        column = thresholds.reshape(-1, *[1] * tasks[0].ndim)
        return np.mean([(runs[None] > column).mean(axis=-1) for runs in tasks], axis=0)

    return statistic


def _improvement(n_tasks: int) -> Callable[..., np.ndarray]:
    """The probability of improvement as a statistic of 2 x ``n_tasks`` samples: X's tasks, then Y's."""

    def statistic(*samples: np.ndarray) -> np.ndarray:
        per_task = [((x[..., :, None] > y[..., None, :]) + 0.5 * (x[..., :, None] == y[..., None, :])).mean(axis=(-2, -1))
                    for x, y in zip(samples[:n_tasks], samples[n_tasks:])]
        return np.mean(per_task, axis=0)

    return statistic
