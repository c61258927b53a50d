"""Small offline stand-ins for the hub datasets, in their exact row formats, and the scorer
that judges them.

Made by a seeded generator (never committed as data): the fixture presets of
``aihf experiment hh`` and ``aihf experiment ultra`` call :func:`write_fixture`, which writes
the files their real presets would read from the hub, so a CPU runs the same code path.

* Anthropic/hh-rlhf rows: ``{"chosen": str, "rejected": str}``, each a whole conversation
  of ``"\\n\\nHuman: ..."`` and ``"\\n\\nAssistant: ..."`` turns that differ in the last
  assistant turn (one in three has an earlier exchange);
* HuggingFaceH4/ultrafeedback_binarized rows: ``prompt``, ``prompt_id``, ``chosen`` and
  ``rejected`` (message lists: the user turn, then the assistant's answer), ``messages``
  (the chosen list), ``score_chosen``, ``score_rejected``;
* HuggingFaceH4/ultrachat_200k rows: ``prompt``, ``prompt_id``, ``messages`` (user and
  assistant turns, ending with the assistant's).

The chosen answer is the helpful one, except for a ``label_noise`` share of pairs, swapped
as real annotators disagree. :class:`KeywordScorer` is the fixtures' judge: helpful words
minus unhelpful words of a response; no method trains on it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aihf.config import Settings, setting
from aihf.runtime import atomic_file

TASKS = (
    "bake bread", "fix a bike", "learn python", "plant a tree", "write a letter", "save money",
    "train a dog", "clean a room", "cook rice", "paint a wall", "find a job", "sleep better",
)
STEPS = ("gather what you need", "read the steps", "start small", "ask a friend", "take notes", "check your work")
HELPFUL = ("sure", "here", "first", "then", "glad", "help", "steps", "safe", "happy")
UNHELPFUL = ("no", "idea", "whatever", "stupid", "refuse", "bother")
OPENERS = ("How do I {}?", "Can you help me {}?", "What is the best way to {}?")
RUDE = ("I have no idea.", "Whatever, do it yourself.", "That is a stupid question.", "I refuse to bother with that.")


def _helpful(rng: random.Random, task: str) -> str:
    first, then = rng.sample(STEPS, 2)
    return f"Sure, here is how to {task}: first {first}, then {then}. Glad to help."


def _question(rng: random.Random, task: str) -> str:
    return rng.choice(OPENERS).format(task)


def _ordered(rng: random.Random, good, bad, label_noise: float):
    return (bad, good) if rng.random() < label_noise else (good, bad)


def hh_rows(count: int, seed: int, label_noise: float = 0.1) -> list[dict]:
    """``count`` Anthropic/hh-rlhf rows (``chosen``, ``rejected`` conversations as text)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        task = rng.choice(TASKS)
        context = "\n\nHuman: Hi there.\n\nAssistant: Hello, how can I help?" if rng.random() < 1 / 3 else ""
        prompt = f"{context}\n\nHuman: {_question(rng, task)}\n\nAssistant:"
        chosen, rejected = _ordered(rng, _helpful(rng, task), rng.choice(RUDE), label_noise)
        rows.append({"chosen": f"{prompt} {chosen}", "rejected": f"{prompt} {rejected}"})
    return rows


def _prompt_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ultrafeedback_rows(count: int, seed: int, label_noise: float = 0.1) -> list[dict]:
    """``count`` HuggingFaceH4/ultrafeedback_binarized rows."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        task = rng.choice(TASKS)
        prompt = _question(rng, task)
        good, bad = (_helpful(rng, task), 8.0 + rng.random()), (rng.choice(RUDE), 2.0 + rng.random())
        (chosen, score_chosen), (rejected, score_rejected) = _ordered(rng, good, bad, label_noise)
        user = {"role": "user", "content": prompt}
        chosen_messages = [user, {"role": "assistant", "content": chosen}]
        rows.append({
            "prompt": prompt, "prompt_id": _prompt_id(prompt),
            "chosen": chosen_messages, "rejected": [user, {"role": "assistant", "content": rejected}],
            "messages": chosen_messages, "score_chosen": round(score_chosen, 2), "score_rejected": round(score_rejected, 2),
        })
    return rows


def ultrachat_rows(count: int, seed: int) -> list[dict]:
    """``count`` HuggingFaceH4/ultrachat_200k rows (one or two exchanges, helpful answers)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        task = rng.choice(TASKS)
        prompt = _question(rng, task)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": _helpful(rng, task)}]
        if rng.random() < 1 / 3:
            other = rng.choice(TASKS)
            messages += [{"role": "user", "content": f"And how do I {other}?"},
                         {"role": "assistant", "content": _helpful(rng, other)}]
        rows.append({"prompt": prompt, "prompt_id": _prompt_id(prompt), "messages": messages})
    return rows


@dataclass
class FixtureSection(Settings):
    """Sizes of the generated files (``data.fixture``); None: the preset reads real data."""

    train_rows: int = setting(160, ge=4, help="training rows of each file")
    test_rows: int = setting(40, ge=2, help="test rows of each file")
    label_noise: float = setting(0.1, ge=0, le=1, help="share of pairs whose chosen is the unhelpful answer")
    seed: int = setting(0, ge=0, help="seed of the generator")


def _write_jsonl_gz(rows: list[dict], path: Path) -> None:
    with atomic_file(path) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


SPLITS = {"hh": ("train", "test"), "ultra": ("train_prefs", "test_prefs", "train_sft", "test_sft")}


def fixture_paths(kind: Literal["hh", "ultra"], folder: Path) -> dict[str, str]:
    """``{split: folder/<split>.jsonl.gz}``: the files :func:`write_fixture` writes, named as the
    hub's splits: ``train``/``test`` (Anthropic/hh-rlhf rows) or ``train_prefs``, ``test_prefs``,
    ``train_sft``, ``test_sft`` (UltraFeedback and UltraChat rows)."""
    return {split: str(folder / f"{split}.jsonl.gz") for split in SPLITS[kind]}


def write_fixture(config: FixtureSection, kind: Literal["hh", "ultra"], folder: Path) -> dict[str, str]:
    """Write the fixture's files (:func:`fixture_paths`) and return their paths. Test rows
    come from another stream of the seed."""
    n, m, noise, seed = config.train_rows, config.test_rows, config.label_noise, config.seed
    if kind == "hh":
        rows = [hh_rows(n, seed, noise), hh_rows(m, seed + 1, noise)]
    else:
        rows = [ultrafeedback_rows(n, seed, noise), ultrafeedback_rows(m, seed + 1, noise),
                ultrachat_rows(n, seed + 2), ultrachat_rows(m, seed + 3)]
    paths = fixture_paths(kind, folder)
    for path, split_rows in zip(paths.values(), rows):
        _write_jsonl_gz(split_rows, Path(path))
    return paths


class KeywordScorer:
    """The fixtures' judge: r(x, y) = #helpful words - #unhelpful words of the response y
    (lower-cased words of :data:`HELPFUL` and :data:`UNHELPFUL`); the prompt is not read."""

    name = "keywords"

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        del prompts
        out = []
        for response in responses:
            words = [w.strip(".,:;!?") for w in response.lower().split()]
            out.append(float(sum(w in HELPFUL for w in words) - sum(w in UNHELPFUL for w in words)))
        return out
