"""Seed summaries: the 95% Student-t interval against tabulated quantiles."""

import math

import pytest

from aihf.eval.stats import mean_interval


def test_three_seeds_use_t_with_two_degrees_of_freedom():
    out = mean_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975, 2} = 4.302653 (tables)
    assert out["mean"] == 2.0 and out["n"] == 3
    assert out["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)


def test_single_seed_has_no_interval():
    out = mean_interval([0.5])
    assert out["mean"] == 0.5 and math.isnan(out["ci95"])


def test_interval_caption_names_the_interval_and_the_seeds():
    from aihf.eval.stats import interval_caption

    assert interval_caption([3, 3]) == "error bars: 95% t-interval over 3 seeds"
    assert interval_caption([2, 3]) == "error bars: 95% t-interval over 2-3 seeds"
    assert interval_caption([1]) == "error bars: none (1 seed)"


def test_difference_interval_is_welchs():
    """mean(a) - mean(b) with the Welch interval, against scipy's own Welch test (its confidence interval)."""
    from scipy import stats

    from aihf.eval.stats import difference_interval

    a, b = [1.40, 1.71, 1.69, 1.2], [1.28, 0.70, 2.47]
    out = difference_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert out["mean"] == pytest.approx(sum(a) / 4 - sum(b) / 3, rel=1e-12)
    assert out["mean"] - out["ci95"] == pytest.approx(ci.low, rel=1e-9)
    assert out["mean"] + out["ci95"] == pytest.approx(ci.high, rel=1e-9)
    assert math.isnan(difference_interval([1.0], b)["ci95"])
    assert difference_interval([1.0, 1.0], [0.5, 0.5]) == {"mean": 0.5, "ci95": 0.0, "df": float("inf")}
