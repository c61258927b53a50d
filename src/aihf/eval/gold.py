"""The gold reward: a sentiment classifier trained on labelled texts (the IMDb labels in the
IMDb experiment; :class:`aihf.eval.cache.LabelledTexts`).

The gold reward of a text is the classifier's logit for "positive" (docs/method.md section 6
uses a sentiment classifier as the ground truth that labels preferences and scores the
policies). It is TF-IDF features (word uni- and bigrams, sublinear term frequency, l2
normalised rows) with a logistic regression, fitted with scikit-learn on a seeded part of
the 25,000 training reviews; its accuracy is measured on the reviews held out from the fit.

The fitted scorer is cached without pickle: the vocabulary and settings as JSON, the idf
weights and coefficients as ``.npz`` (read with ``allow_pickle=False``), and scoring is
rebuilt from them: counts from a ``CountVectorizer`` with that fixed vocabulary, then idf,
l2 normalisation and a dot product, all on sparse matrices for a whole batch at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from aihf.eval.cache import LabelledTexts, cached_scorer_dir
from aihf.runtime import atomic_directory

_META = "gold.json"
_ARRAYS = "gold.npz"
_FORMAT = 1


@dataclass(frozen=True)
class GoldConfig:
    """How the gold classifier is fitted: which reviews, which features, which regularisation."""

    seed: int = 0
    heldout_fraction: float = 0.2
    max_train: int | None = None  # fit on at most this many reviews (a quick, weaker gold)
    max_heldout: int | None = None
    ngram_max: int = 2
    min_df: int = 2
    max_features: int | None = 100_000
    C: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")


@dataclass(frozen=True, eq=False)
class GoldScorer:
    """Gold reward r*(text) = logit P(positive | text), rebuilt from plain arrays."""

    vocabulary: tuple[str, ...]
    idf: np.ndarray
    coef: np.ndarray
    intercept: float
    ngram_max: int
    heldout_accuracy: float
    num_train: int
    num_heldout: int

    def __post_init__(self) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        if not len(self.vocabulary) == len(self.idf) == len(self.coef):
            raise ValueError(
                f"vocabulary, idf and coef lengths differ: {len(self.vocabulary)}, {len(self.idf)}, {len(self.coef)}"
            )
        counter = CountVectorizer(vocabulary=self.vocabulary, ngram_range=(1, self.ngram_max), dtype=np.float64)
        object.__setattr__(self, "_counter", counter)

    def features(self, texts: Sequence[str]):
        """TF-IDF rows (sparse, l2 normalised), as scikit-learn's TfidfVectorizer(sublinear_tf=True) makes them."""
        from sklearn.preprocessing import normalize

        counts = self._counter.transform(list(texts)).tocsr()
        np.log(counts.data, out=counts.data)
        counts.data += 1.0
        return normalize(counts.multiply(self.idf).tocsr(), norm="l2", copy=False)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Gold rewards of ``texts`` (float64, one per text), in one sparse product."""
        if not len(texts):
            return np.zeros(0, dtype=np.float64)
        return np.asarray(self.features(texts) @ self.coef).ravel() + self.intercept

    def save(self, directory: str | Path) -> None:
        """``gold.json`` (vocabulary, settings, accuracy) and ``gold.npz`` (idf, coef) in ``directory``."""
        directory = Path(directory)
        meta = {
            "format": _FORMAT,
            "vocabulary": list(self.vocabulary),
            "intercept": self.intercept,
            "ngram_max": self.ngram_max,
            "heldout_accuracy": self.heldout_accuracy,
            "num_train": self.num_train,
            "num_heldout": self.num_heldout,
        }
        (directory / _META).write_text(json.dumps(meta), encoding="utf-8")
        np.savez(directory / _ARRAYS, idf=self.idf, coef=self.coef)

    @classmethod
    def load(cls, directory: str | Path) -> GoldScorer:
        """Rebuild a scorer from what :meth:`save` wrote (no pickle anywhere)."""
        directory = Path(directory)
        meta = json.loads((directory / _META).read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{directory}: gold scorer format {meta.get('format')}, expected {_FORMAT}")
        with np.load(directory / _ARRAYS, allow_pickle=False) as arrays:
            idf, coef = arrays["idf"], arrays["coef"]
        return cls(
            vocabulary=tuple(meta["vocabulary"]),
            idf=idf,
            coef=coef,
            intercept=float(meta["intercept"]),
            ngram_max=int(meta["ngram_max"]),
            heldout_accuracy=float(meta["heldout_accuracy"]),
            num_train=int(meta["num_train"]),
            num_heldout=int(meta["num_heldout"]),
        )


def gold_split(num_reviews: int, config: GoldConfig) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): a seeded permutation, cut at ``heldout_fraction``."""
    order = np.random.default_rng([config.seed, 0x601D]).permutation(num_reviews)
    n_heldout = round(config.heldout_fraction * num_reviews)
    heldout, train = order[:n_heldout], order[n_heldout:]
    return train[: config.max_train], heldout[: config.max_heldout]


def fit_gold(reviews: LabelledTexts, config: GoldConfig) -> GoldScorer:
    """Fit TF-IDF + logistic regression on the fit part; measure accuracy on the held-out part."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train, heldout = gold_split(len(reviews), config)
    vectorizer = TfidfVectorizer(
        ngram_range=(1, config.ngram_max),
        min_df=config.min_df,
        max_features=config.max_features,
        sublinear_tf=True,
        dtype=np.float64,
    )
    features = vectorizer.fit_transform([reviews.texts[i] for i in train])
    classifier = LogisticRegression(C=config.C, max_iter=2000).fit(features, reviews.labels[train])
    vocabulary = [""] * len(vectorizer.vocabulary_)
    for term, index in vectorizer.vocabulary_.items():
        vocabulary[index] = term
    scorer = GoldScorer(
        vocabulary=tuple(vocabulary),
        idf=np.asarray(vectorizer.idf_, dtype=np.float64),
        coef=np.asarray(classifier.coef_[0], dtype=np.float64),
        intercept=float(classifier.intercept_[0]),
        ngram_max=config.ngram_max,
        heldout_accuracy=float("nan"),
        num_train=len(train),
        num_heldout=len(heldout),
    )
    accuracy = accuracy_of(scorer, [reviews.texts[i] for i in heldout], reviews.labels[heldout])
    return replace(scorer, heldout_accuracy=accuracy)


def accuracy_of(scorer: GoldScorer, texts: Sequence[str], labels: np.ndarray) -> float:
    """Fraction of ``texts`` whose sign of the gold logit matches the label (1 = positive)."""
    return float(np.mean((scorer.score(texts) > 0).astype(np.int64) == np.asarray(labels)))


def gold_cache_dir(config: GoldConfig, source_sha256: str, cache_dir: str | Path | None = None) -> Path:
    """``<cache>/imdb-gold-<hash>`` (``cache.cached_scorer_dir``)."""
    return cached_scorer_dir("imdb-gold", config, source_sha256, _FORMAT, cache_dir)


def load_gold(reviews: LabelledTexts, config: GoldConfig, cache_dir: str | Path | None = None) -> GoldScorer:
    """The cached scorer for these reviews and settings, fitted and cached (atomically) on first use."""
    directory = gold_cache_dir(config, reviews.source_sha256, cache_dir)
    if not (directory / _META).is_file():
        scorer = fit_gold(reviews, config)
        with atomic_directory(directory) as tmp:
            scorer.save(tmp)
    return GoldScorer.load(directory)
