"""Summaries over seeds shared by every experiment."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def mean_interval(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of a 95% Student-t interval over seeds.

        ci95 = t_{0.975, n-1} * s / sqrt(n),  s the sample standard deviation (ddof = 1);
    NaN for a single seed, where no interval exists.
    """
    from scipy import stats

    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return {"mean": float(array.mean()), "ci95": float("nan"), "n": len(array)}
    half = stats.t.ppf(0.975, len(array) - 1) * array.std(ddof=1) / math.sqrt(len(array))
    return {"mean": float(array.mean()), "ci95": float(half), "n": len(array)}


def read_results(folder: str | Path) -> dict:
    """An experiment's ``results.json`` in ``folder`` (the toy's, IMDb's: ``settings`` -> method -> ``runs``)."""
    return json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))


def seed_scores(results: dict, metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """(setting, method) -> seed -> ``metric`` of an experiment's results (every entry with ``runs``)."""
    return {(setting, method): {run["seed"]: run[metric] for run in entry["runs"]}
            for setting, methods in results["settings"].items() for method, entry in methods.items()}


def paired_difference(base: dict[int, float], other: dict[int, float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds of other - base, seed by seed (runs that share each seed's draws)."""
    if set(base) != set(other):
        raise ValueError(f"the two ran other seeds: {sorted(base)} and {sorted(other)}")
    return mean_interval([other[seed] - base[seed] for seed in sorted(base)])


def difference_interval(first: list[float], second: list[float]) -> dict[str, float]:
    """Difference of two means over independent seeds, mean(first) - mean(second), and the half-width of
    its 95% Welch interval (unequal variances; Welch 1947):

        se^2 = s_1^2 / n_1 + s_2^2 / n_2,  df = se^4 / ((s_1^2 / n_1)^2 / (n_1 - 1) + (s_2^2 / n_2)^2 / (n_2 - 1)),
        ci95 = t_{0.975, df} * se.

    NaN interval with fewer than 2 seeds on a side; an exact interval of 0 when both sides are constant.
    """
    from scipy import stats

    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    mean = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return {"mean": mean, "ci95": float("nan"), "df": float("nan")}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return {"mean": mean, "ci95": 0.0, "df": float("inf")}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"mean": mean, "ci95": float(stats.t.ppf(0.975, df) * math.sqrt(va + vb)), "df": float(df)}


def interval_caption(ns: list[int]) -> str:
    """What a plot's error bars are, to print on it: ``error bars: 95% t-interval over 3 seeds``
    (:func:`mean_interval` over ``n`` seeds; ``2-3 seeds`` when entries differ; ``none
    (1 seed)`` when no entry has an interval)."""
    from aihf.logs import count

    low, high = min(ns), max(ns)
    if high < 2:
        return f"error bars: none ({count(high, 'seed')})"
    seeds = count(low, "seed") if low == high else f"{low}-{high} seeds"
    return f"error bars: 95% t-interval over {seeds}"
