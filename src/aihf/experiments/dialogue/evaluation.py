"""Scoring the policies of a dialogue experiment on held-out prompts.

Per policy and seed, on the held-out prompts (docs/method.md section 6):

* judge reward: the mean score of the judge (:mod:`.judge`) on the policy's answers;
* win rate against the baseline (pi_SFT for HH, the base model for UltraFeedback): the share
  of prompts whose answer the judge scores above the baseline's answer to the same prompt,
  ties one half (``aihf.eval.metrics.win_rate``);
* KL(pi || pi_base): mean over prompts of log pi(y|x) - log pi_base(y|x) on samples y ~ pi,
  summed over response tokens (``kl_to_reference``; unbiased for temperature-1 sampling).

Prompts are encoded as training encodes them (``aihf.lm.batching.Encoder``: the chat
template with its generation prompt for chat prompts), answers are drawn at temperature 1
from ``seed`` (batch b from the seed mixed with b), and the baseline answers with the same
seed (common random numbers, as in the IMDb experiment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from aihf.data import PromptRecord
from aihf.eval.generations import write_generations
from aihf.eval.metrics import kl_to_reference, win_rate
from aihf.experiments.dialogue.judge import Judge, prompt_text
from aihf.lm.batching import Encoder
from aihf.lm.batching import Sequence as TokenSequence
from aihf.lm.generation import HFSampler
from aihf.lm.models import load_causal_lm
from aihf.runtime import mix_seeds

log = logging.getLogger(__name__)
METRICS = ("judge", "kl", "win_rate")  # the judge's reward, KL to the baseline, win rate against it


@dataclass(frozen=True)
class SamplingSection:
    """How the evaluation answers are drawn."""

    max_new_tokens: int
    batch_size: int
    max_length: int
    max_prompt_length: int
    dtype: str
    device: str


@dataclass(frozen=True)
class Answers:
    """One answer per prompt: its (prompt ids, response ids) and its decoded text."""

    sequences: list[TokenSequence]
    responses: list[str]


def sample_answers(model, tokenizer, prompts: list[PromptRecord], sampling: SamplingSection, seed: int, what: str) -> Answers:
    """One y ~ model(.|x) per prompt at temperature 1, reproducible from ``seed``."""
    encoder = Encoder(tokenizer, sampling.max_length, sampling.max_prompt_length)
    ids = [encoder.prompt_record(p) for p in prompts]
    sampler, size, responses = HFSampler(model, tokenizer), sampling.batch_size, []
    for start in tqdm(range(0, len(ids), size), desc=what, unit="batch", leave=False):
        seed_b = mix_seeds(seed, start // size)
        responses += sampler.generate(ids[start : start + size], sampling.max_new_tokens, temperature=1.0, seed=seed_b)
    return Answers(list(zip(ids, responses)), tokenizer.batch_decode(responses, skip_special_tokens=True))


class Evaluator:
    """Scores policies against one baseline policy on ``prompts`` (one baseline answer set per seed).

    Every scored answer is kept in ``generations[(name, seed)]`` as ``{"prompt", "response",
    "judge"}`` rows for :meth:`write_generations`.
    """

    def __init__(self, baseline: Path, baseline_name: str, prompts: list[PromptRecord], judge: Judge,
                 sampling: SamplingSection, seeds: list[int]):
        self.prompts, self.texts, self.judge, self.sampling = prompts, [prompt_text(p) for p in prompts], judge, sampling
        self.baseline_name, self.seeds = baseline_name, seeds
        self.base_model, self.tokenizer = load_causal_lm(baseline, sampling.dtype, device=sampling.device)
        self.base_model.eval()
        self.baselines = {s: self.answer(self.base_model, s, f"{baseline_name} answers eval prompts (seed {s})") for s in seeds}
        self.baseline_scores = {s: np.asarray(self.judge.score(self.texts, a.responses)) for s, a in self.baselines.items()}
        self.generations: dict[tuple[str, int], list[dict]] = {}

    def answer(self, model, seed: int, what: str) -> Answers:
        return sample_answers(model, self.tokenizer, self.prompts, self.sampling, seed, what)

    def score(self, name: str, model, answers: Answers, seed: int) -> dict[str, float]:
        """Judge reward, KL to the baseline (from ``answers``, samples of ``model``) and win rate."""
        kl = kl_to_reference(model, self.base_model, answers.sequences, self.tokenizer.pad_token_id, self.sampling.batch_size)
        rewards = np.asarray(self.judge.score(self.texts, answers.responses))
        self.generations[(name, seed)] = [
            {"prompt": p, "response": r, "judge": float(s)} for p, r, s in zip(self.texts, answers.responses, rewards)
        ]
        return {"judge": float(rewards.mean()), "kl": float(kl), "win_rate": win_rate(rewards, self.baseline_scores[seed])}

    def baseline_runs(self) -> list[dict[str, float]]:
        """The baseline's own row: KL 0 and win rate 1/2 by construction."""
        return [{"seed": s, **self.score(self.baseline_name, self.base_model, self.baselines[s], s)} for s in self.seeds]

    def policy_run(self, name: str, policy_dir: Path, seed: int) -> dict[str, float]:
        """A saved policy's metrics with its answers drawn from ``seed``."""
        model, _ = load_causal_lm(policy_dir, self.sampling.dtype, device=self.sampling.device)
        model.eval()
        return {"seed": seed, **self.score(name, model, self.answer(model, seed, f"{name} seed {seed} answers eval prompts"), seed)}

    def write_generations(self, folder: Path, num_samples: int = 8) -> Path:
        """Every scored answer as ``<name>-seed-<s>.jsonl`` and ``samples.md`` (the first
        ``num_samples`` prompts with each policy's first-seed answer and its judge reward);
        the trained policies' answers are then dropped (the baseline's stay)."""
        path = write_generations(folder, self.generations, self.seeds[0], self.texts,
                                 f"{self.judge.name} judge reward", ("judge",), num_samples, fenced_prompts=True)
        self.generations = {key: rows for key, rows in self.generations.items() if key[0] == self.baseline_name}
        return path
