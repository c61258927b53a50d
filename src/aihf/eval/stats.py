"""Summaries over seeds shared by every experiment."""

from __future__ import annotations

import math

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
