"""The toy known-reward experiment: Algorithm 1 recovers the reward, and the combination
helps exactly where one data kind is degraded."""

import json

import pytest

from aihf.experiments.bandit import (
    ToyConfig,
    ToySetting,
    make_problem,
    normalised_return,
    policy_step,
    run,
    soft_optimal_policy,
)

import torch


def test_policy_step_converges_to_the_soft_optimal_policy():
    rewards = torch.randn(4, 6, dtype=torch.float64)
    logits = policy_step(torch.zeros(4, 6, dtype=torch.float64), rewards, beta=0.5, steps=200, rate=0.2)
    torch.testing.assert_close(torch.softmax(logits, -1), soft_optimal_policy(rewards, 0.5), atol=1e-6, rtol=0)


def test_expert_scores_one_and_reference_zero():
    config = ToyConfig()
    problem = make_problem(config, ToySetting("s", 10, 10), seed=0)
    assert normalised_return(problem.true_theta, problem, config.beta) == pytest.approx(1.0)
    assert normalised_return(torch.zeros_like(problem.true_theta), problem, config.beta) == pytest.approx(0.0)


@pytest.mark.e2e
def test_aihf_wins_where_one_data_kind_is_degraded(tmp_path, figure_texts):
    config = ToyConfig(
        num_prompts=100,
        num_eval_prompts=100,
        iterations=150,
        seeds=[0, 1],
        settings=[
            ToySetting("balanced", 200, 200),
            ToySetting("few-preferences", 200, 10),
            ToySetting("low-quality-demos", 200, 200, demo_temperature=8.0),
        ],
    )
    results = run(config, tmp_path, progress=False)
    score = lambda s, m: results["settings"][s][m]["normalised_return"]["mean"]  # noqa: E731
    for method in ("aihf", "ml-irl", "rlhf-reward"):
        assert score("balanced", method) > 0.9
    assert score("few-preferences", "aihf") > score("few-preferences", "rlhf-reward") + 0.1
    assert score("low-quality-demos", "aihf") > score("low-quality-demos", "ml-irl") + 0.1
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["settings"]["balanced"]["aihf"]["normalised_return"]["n"] == 2
    assert (tmp_path / "normalised_return.png").stat().st_size > 10_000
    assert any(text.endswith("\nerror bars: 95% t-interval over 2 seeds") for text in figure_texts["normalised_return.png"])
    assert "| few-preferences | aihf |" in (tmp_path / "results.md").read_text()
