"""The experiments' start model as a local folder (:func:`base_folder`), and the base policy
built from scratch on an experiment's SFT texts for runs without a pretrained model (every
experiment's ``model.name_or_path: scratch``: IMDb, HH, UltraFeedback).

The run starts from a small GPT-NeoX with random weights and a byte-level BPE tokenizer
trained on the SFT split's texts (prompt + response of each SFT demonstration), so nothing
comes from a hub and nothing has to be installed beyond the package; SFT on the same split
is then its language-model training. On 2 CPU cores the default size (1.3M parameters)
writes review-like IMDb text after about a minute of SFT, enough for the gold reward to
separate its answers (the quick start's setting); it is not a substitute for a pretrained
policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from aihf.lm.models import TINY, local_snapshot
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer, train_tokenizer
from aihf.runtime import atomic_directory

log = logging.getLogger(__name__)
SCRATCH = "scratch"


@dataclass(frozen=True)
class ScratchModelConfig:
    """Size of the from-scratch GPT-NeoX (tied input/output embeddings) and of its BPE vocabulary."""

    vocab_size: int = 4096
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_positions: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        if min(self.hidden_size, self.num_layers, self.intermediate_size, self.max_positions) < 1:
            raise ValueError("the scratch model's sizes must be positive")


def build_scratch_base(config: ScratchModelConfig, texts: Iterable[str], directory: str | Path) -> Path:
    """Train the tokenizer on ``texts``, initialise the model from ``config.seed`` and save both
    to ``directory`` (safetensors, written atomically); an existing complete save is reused."""
    directory = Path(directory)
    if (directory / "config.json").is_file():
        log.info("scratch base model: reusing %s", directory)
        return directory
    tokenizer = train_tokenizer(list(texts), config.vocab_size)
    model = tiny_causal_lm(
        tokenizer,
        seed=config.seed,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
    )
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    count = sum(p.numel() for p in model.parameters())
    log.info("scratch base model: %.2fM parameters, %d-token BPE, saved to %s", count / 1e6, len(tokenizer), directory)
    return directory


def save_tiny_base(directory: str | Path) -> Path:
    """Save the tiny test model (``load_causal_lm("tiny")``'s weights and tokenizer) to
    ``directory`` (safetensors, written atomically); an existing complete save is reused."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        tokenizer = tiny_tokenizer()
        with atomic_directory(directory) as tmp:
            tiny_causal_lm(tokenizer).save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    return directory


def base_folder(name_or_path: str, scratch: ScratchModelConfig, texts: Iterable[str], directory: str | Path) -> Path:
    """The local ``save_pretrained`` folder an experiment starts from, so that every stage reads
    the same files and a unit's key can name the weights by their SHA-256: ``scratch`` built on
    ``texts`` into ``directory`` (:func:`build_scratch_base`), ``tiny`` saved there
    (:func:`save_tiny_base`), any other name ``models.local_snapshot``'s folder (a local folder
    itself, the packaged SmolLM2's conversion, a hub model's snapshot)."""
    if name_or_path == SCRATCH:
        return build_scratch_base(scratch, texts, directory)
    if name_or_path == TINY:
        return save_tiny_base(directory)
    return Path(local_snapshot(name_or_path))
