"""Evaluation of one policy on the held-out prompts, and summaries over seeds.

* gold reward: mean gold reward of the generations (prompt + response);
* judge: mean score of the independent judge (:mod:`aihf.eval.judge`);
* KL(pi || pi_SFT): the Monte Carlo estimate mean_i [log pi(y_i|x_i) - log pi_SFT(y_i|x_i)]
  over samples y_i ~ pi(.|x_i), each log-prob summed over the response tokens
  (``objective.sequence_logprobs``). It is unbiased only for samples from pi itself:
  temperature 1, no nucleus cut;
* win rate against SFT: the fraction of prompts where the method's response gets a higher
  gold reward than the SFT policy's response to the same prompt, ties counting one half.

Over seeds, each metric is reported as a mean and the half-width of a 95% Student-t
interval (:func:`aihf.eval.stats.mean_interval`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aihf.eval.stats import mean_interval
from aihf.lm.batching import Sequence as TokenSequence
from aihf.lm.evaluate import sequence_scores

METRICS = ("gold_reward", "judge", "kl", "win_rate")


def win_rate(method_gold: Sequence[float], sft_gold: Sequence[float]) -> float:
    """P(method's gold reward > SFT's) over paired prompts, ties counted as one half."""
    method, sft = np.asarray(method_gold, dtype=np.float64), np.asarray(sft_gold, dtype=np.float64)
    if method.shape != sft.shape or method.ndim != 1 or not len(method):
        raise ValueError(f"need two equally long non-empty 1-d arrays, got shapes {method.shape} and {sft.shape}")
    return float(np.mean((method > sft) + 0.5 * (method == sft)))


def kl_to_reference(
    policy, reference, samples: list[TokenSequence], pad_id: int, batch_size: int = 16
) -> float:
    """KL(pi || pi_ref) estimated from ``samples`` of the policy: mean of log pi - log pi_ref per sequence.

    Both models in eval mode; log-probs summed over response tokens (``lm.evaluate.sequence_scores``).
    """
    if not samples:
        raise ValueError("the KL estimate needs at least one sample")
    log_ratio = (
        sequence_scores(policy, samples, pad_id, batch_size)[0]
        - sequence_scores(reference, samples, pad_id, batch_size)[0]
    )
    return float(log_ratio.mean())


def generation_metrics(
    gold: np.ndarray, judge: np.ndarray, sft_gold: np.ndarray, kl: float
) -> dict[str, float]:
    """One run's metrics from per-prompt gold and judge scores of its generations and SFT's gold on those prompts."""
    return {
        "gold_reward": float(np.mean(gold)),
        "judge": float(np.mean(judge)),
        "kl": float(kl),
        "win_rate": win_rate(gold, sft_gold),
    }


def summarise_runs(runs: list[dict[str, float]], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, float]]:
    """``metric -> {"mean", "ci95", "n"}`` over runs (seeds)."""
    return {metric: mean_interval([run[metric] for run in runs]) for metric in metrics}
