"""Hub datasets and models, or the local copies that stand in for them.

Every ``data.*`` file key and ``model.name_or_path`` (and ``judge.name_or_path``) takes a
local copy: a JSONL (``.jsonl``, ``.jsonl.gz``, ...) or Parquet file in the hub's row format,
or a ``save_pretrained`` folder. What is not local is fetched from the Hugging Face hub
(``datasets.load_dataset``, ``huggingface_hub``); when the hub cannot be reached (no
network, ``HF_HUB_OFFLINE=1``) :func:`resolve` stops with one line naming every missing
file and the key that takes its local copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aihf.config import ConfigError
from aihf.lm.models import SMOLLM2, TINY

LOCAL_MODELS = (TINY, SMOLLM2, "scratch")


@dataclass(frozen=True)
class Need:
    """One input of an experiment: a dataset split or a model, and the config key that names it."""

    key: str
    kind: Literal["dataset", "model"]
    name: str
    split: str | None = None

    def describe(self) -> str:
        if self.kind == "dataset":
            return f"{self.key}=FILE (split {self.split!r} of the dataset {self.name}, as .jsonl[.gz] or .parquet)"
        return f"{self.key}=DIR (a save_pretrained folder of {self.name})"


def is_local(need: Need) -> bool:
    """Whether ``need`` names a local file or folder (or a model aihf builds itself)."""
    if need.kind == "model" and need.name in LOCAL_MODELS:
        return True
    return Path(need.name).exists()


def _fetch(need: Need) -> Any:
    """The hub dataset split (a ``datasets.Dataset``), or None for a model found on the hub or in its cache."""
    if need.kind == "dataset":
        import datasets

        return datasets.load_dataset(need.name, split=need.split)
    from huggingface_hub import hf_hub_download

    hf_hub_download(need.name, "config.json")
    return None


def resolve(needs: list[Need]) -> dict[str, Any]:
    """``{key: local path, hub Dataset or model name}`` for every need, checked before any
    stage runs; one ConfigError naming every input that is neither local nor reachable."""
    out: dict[str, Any] = {}
    missing: list[str] = []
    reason = ""
    for need in needs:
        if is_local(need):
            out[need.key] = need.name
            continue
        if need.kind == "dataset" and (need.name.endswith((".jsonl", ".gz", ".bz2", ".xz", ".parquet")) or "/" not in need.name):
            raise ConfigError(f"{need.key}: {need.name} is not a file")
        try:
            fetched = _fetch(need)
        except (OSError, ValueError) as err:  # ConnectionError, LocalEntryNotFoundError, DatasetNotFoundError ...
            missing.append(need.describe())
            reason = reason or type(err).__name__
            continue
        out[need.key] = fetched if fetched is not None else need.name
    if missing:
        raise ConfigError(f"the Hugging Face hub is unreachable ({reason}); place local copies and give "
                          + "; ".join(missing))
    return out
