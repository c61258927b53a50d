"""What the fitted scorers (gold reward, MiniLM judge) are fitted on, where they are cached,
and under which name.

A cached scorer lives in ``<root>/<prefix>-<key>/``: the root is ``cache_dir`` if given,
else ``$AIHF_CACHE``, else ``~/.cache/aihf``; the key hashes the scorer's settings, the
source file's SHA-256 (:class:`LabelledTexts`) and the on-disk format version, so changing
any of them fits anew.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from aihf.lm.models import aihf_cache_dir


class LabelledTexts(Protocol):
    """Texts with a binary label each (1 = positive), from one source file: what a gold reward
    or a judge is fitted on (the IMDb experiment's ``Reviews``)."""

    texts: Sequence[str]
    labels: np.ndarray  # int64, texts[i] has label labels[i]
    source_sha256: str  # of the file the texts came from: part of the cache key


def cached_scorer_dir(
    prefix: str, settings: Any, source_sha256: str, version: int, cache_dir: str | Path | None
) -> Path:
    """``<root>/<prefix>-<16 hex digits>`` for a dataclass of ``settings`` (see the module docstring)."""
    blob = json.dumps({"config": asdict(settings), "source": source_sha256, "format": version}, sort_keys=True)
    root = Path(cache_dir) if cache_dir is not None else aihf_cache_dir()
    return root / f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
