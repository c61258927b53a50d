"""Bradley-Terry labelling (aihf.data.builders.bradley_terry_first_wins), shared by the IMDb
builders and the toy bandit."""

import math
import warnings

import numpy as np
import pytest
import torch

from aihf.data.builders import bradley_terry_first_wins


def test_the_first_wins_where_the_draw_is_below_sigmoid_of_the_margin():
    sigma = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    a, b = np.array([1.0, 1.0, 0.0, 3.0]), np.array([0.0, 0.0, 2.0, 1.0])
    draws = np.array([sigma(1) - 1e-9, sigma(1) + 1e-9, sigma(-2) - 1e-9, 0.99])
    assert bradley_terry_first_wins(a, b, draws).tolist() == [True, False, True, False]
    # temperature 2: P(a > b) = sigmoid((3 - 1) / 2) = sigmoid(1)
    assert bradley_terry_first_wins([3.0], [1.0], [sigma(1) - 1e-9], temperature=2.0).tolist() == [True]
    assert bradley_terry_first_wins([3.0], [1.0], [sigma(1) + 1e-9], temperature=2.0).tolist() == [False]
    with pytest.raises(ValueError, match="temperature"):
        bradley_terry_first_wins([1.0], [0.0], [0.5], temperature=0.0)


def test_frequencies_follow_the_model_and_large_margins_do_not_overflow():
    rng = np.random.default_rng(0)
    n = 20_000
    label = lambda a, b: bradley_terry_first_wins(np.full(n, a), np.full(n, b), rng.random(n)).mean()  # noqa: E731
    assert abs(label(0.0, 0.0) - 0.5) < 0.015
    assert abs(label(1.0, 0.0) - 1 / (1 + math.exp(-1))) < 0.015
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 1 / (1 + exp(1e4)) would warn of an overflow
        assert label(1e4, 0.0) == 1.0 and label(0.0, 1e4) == 0.0


def test_labels_keep_the_random_streams_of_the_imdb_builders_and_the_toy_bandit():
    # the IMDb builders drew rng.random(n) < 1 / (1 + exp(-(r_a - r_b))) before
    gold_a, gold_b = np.random.default_rng(1).normal(size=(2, 500))
    before = np.random.default_rng(7).random(500) < 1 / (1 + np.exp(-(gold_a - gold_b)))
    assert (bradley_terry_first_wins(gold_a, gold_b, np.random.default_rng(7).random(500)) == before).all()
    # the toy bandit's preference pairs as the code before the shared function drew them
    from aihf.experiments.bandit import ToyConfig, ToySetting, make_problem

    problem = make_problem(ToyConfig(), ToySetting("s", 10, 40), seed=3)
    assert problem.pref_chosen.tolist() == [
        5, 0, 2, 7, 3, 7, 4, 4, 0, 4, 0, 7, 1, 5, 0, 1, 3, 5, 0, 3, 5, 4, 3, 6, 1, 4, 4, 2, 0, 0, 7, 6, 0, 6, 2, 3, 7, 1, 7, 5]
    assert problem.pref_rejected.tolist() == [
        6, 6, 0, 0, 7, 3, 3, 5, 7, 6, 6, 5, 2, 2, 5, 0, 5, 3, 5, 0, 1, 6, 5, 3, 7, 2, 3, 1, 6, 3, 3, 1, 5, 7, 4, 4, 0, 3, 2, 6]
    assert isinstance(problem.pref_chosen, torch.Tensor)
