"""Exact duplicates, and a train/eval split that never puts copies of one record on both sides.

Two records are **duplicates** when :func:`record_key` gives the same key:

* :class:`~aihf.data.records.Demonstration`: the same prompt and the same ``response``;
* :class:`~aihf.data.records.Preference`: the same prompt, the same ``chosen`` and the same
  ``rejected`` (ordered: ``(x, a, b)`` and ``(x, b, a)`` are opposite labels, not copies);
* :class:`~aihf.data.records.PromptRecord`: the same prompt.

"The same prompt" is exact: equal text for a plain prompt, equal (role, content) turns for a
chat prompt; a plain ``"q"`` and a chat ``[user: "q"]`` differ (they are encoded differently).
Text is compared as stored (never stripped or case-folded). The ``finished`` flags are not
part of the key: two rows with the same texts are the same example whether or not one was
marked cut. Records of different kinds never match.

:func:`split_without_leaks` holds out an eval split the way ``aihf train`` does
(``data.eval_fraction``, seeded) and, with ``dedupe`` (``data.dedupe``, default true),
drops every copy after the first; without it, it keeps the copies but puts all copies of a
record on the same side. A preference and its reversal (``(x, a, b)`` and ``(x, b, a)``)
also stay on one side: the eval comparison would otherwise have been seen in training. The
counts are logged (logger ``aihf.data``) and returned in a :class:`SplitReport`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar, Union

from aihf.data.errors import DataError
from aihf.data.records import Demonstration, Preference, PromptRecord

logger = logging.getLogger("aihf.data")
Record = Union[Demonstration, Preference, PromptRecord]
R = TypeVar("R", Demonstration, Preference, PromptRecord)


def record_key(record: Record) -> tuple[Hashable, ...]:
    """The duplicate key of a record: its kind, prompt and response text(s), without the finished flags."""
    if isinstance(record, Preference):
        return ("preference", record.prompt, record.chosen, record.rejected)
    if isinstance(record, Demonstration):
        return ("demonstration", record.prompt, record.response)
    if isinstance(record, PromptRecord):
        return ("prompt", record.prompt)
    raise TypeError(f"expected a Demonstration, Preference or PromptRecord, got {type(record).__name__}")


def _group_key(record: Record) -> tuple[Hashable, ...]:
    """Records with one group key must share a side of the split: copies, and reversed preferences."""
    if isinstance(record, Preference):
        return ("preference", record.prompt, frozenset((record.chosen, record.rejected)))
    return record_key(record)


@dataclass
class SplitReport:
    """What :func:`split_without_leaks` found and did.

    ``dedupe``: whether copies were dropped; ``records``: records given for training; ``duplicates``: copies among them beyond the
    first of each record; ``dropped``: copies removed (``duplicates`` with ``dedupe``, else 0);
    ``reversed``: preferences whose reversed pair is also present (kept, kept together);
    ``eval_records`` / ``eval_duplicates`` / ``overlap``: with an eval file, its records, the
    copies within it, and the training records that are also in it (``overlap_dropped``:
    whether they were removed from training); ``train`` / ``held``: the sizes returned.
    """

    source: str
    dedupe: bool
    records: int
    duplicates: int
    dropped: int
    reversed: int
    train: int = 0
    held: int = 0
    eval_records: int | None = None
    eval_duplicates: int = 0
    overlap: int = 0
    overlap_dropped: bool = False

    @property
    def clean(self) -> bool:
        """No duplicates, reversed pairs or train/eval overlap were found."""
        return not (self.duplicates or self.reversed or self.eval_duplicates or self.overlap)

    def summary(self) -> str:
        action = "dropped" if self.dedupe else "kept, all copies on one side"
        parts = [f"{self.source}: {self.records} records, {self.duplicates} exact duplicates"
                 + (f" ({action})" if self.duplicates else "")]
        if self.reversed:
            parts.append(f"{self.reversed} preferences also present reversed (kept, on one side)")
        if self.eval_records is not None:
            parts.append(f"eval file: {self.eval_records} records, {self.eval_duplicates} exact duplicates"
                         + (f" ({'dropped' if self.dedupe else 'kept'})" if self.eval_duplicates else ""))
            if self.overlap:
                parts.append(f"{self.overlap} training records are also in the eval file "
                             f"({'dropped from training' if self.overlap_dropped else 'kept in both'})")
        parts.append(f"train {self.train}, eval {self.held}")
        return "; ".join(parts)


def _first_copies(records: Sequence[R]) -> tuple[list[R], int]:
    seen: set = set()
    kept = []
    for record in records:
        key = record_key(record)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept, len(records) - len(kept)


def _reversed_count(records: Sequence[Record]) -> int:
    """Preferences whose group holds another exact record, i.e. the reversed pair (copies excluded)."""
    exact: dict[Hashable, set] = {}
    for record in records:
        if isinstance(record, Preference):
            exact.setdefault(_group_key(record), set()).add(record_key(record))
    counts = {g: len(keys) for g, keys in exact.items()}
    return sum(1 for r in records if isinstance(r, Preference) and counts[_group_key(r)] > 1)


def split_without_leaks(
    records: Sequence[R],
    fraction: float,
    seed: int,
    *,
    dedupe: bool = True,
    eval_records: Sequence[R] | None = None,
    drop_overlap: bool = False,
    name: str | None = None,
) -> tuple[list[R], list[R], SplitReport]:
    """``(train, held, report)``: ``records`` split into training and eval records with no
    record (or copy of one) on both sides.

    ``fraction`` of the records (at least one) is held out, in a shuffle seeded by ``seed``;
    ``fraction=0`` holds out nothing. With no duplicates and no reversed preferences the split
    is exactly ``aihf train``'s earlier one (same shuffle, same cut). ``dedupe=True`` first
    drops every exact copy after the first (see :func:`record_key`); ``dedupe=False`` keeps
    them, and shuffles groups (a record with its copies, and a preference with its reversal)
    instead of records: held-out groups are taken until at least the held-out count is
    reached, so the eval side can be slightly larger than ``fraction``.

    ``eval_records`` (an eval file's records): nothing is split off (``fraction`` is ignored);
    the eval records are returned as ``held`` and the training records as ``train`` (each
    deduplicated with ``dedupe``). Training records that are also in the eval file (same
    group) are counted and logged as a warning: both files were chosen, so they are kept,
    unless ``drop_overlap=True``, which drops them from ``train``.

    ``name`` names the source in the log and errors (default: the ``Records`` report's
    source, else ``"records"``). Raises :class:`DataError` if the held-out part would leave
    nothing to train on.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    report_of = getattr(records, "report", None)
    source = name or getattr(report_of, "source", None) or "records"
    unique, duplicates = _first_copies(records)
    pool = unique if dedupe else list(records)
    report = SplitReport(source, dedupe, len(records), duplicates, duplicates if dedupe else 0, _reversed_count(pool))

    if eval_records is not None:
        held_unique, report.eval_duplicates = _first_copies(eval_records)
        held = held_unique if dedupe else list(eval_records)
        report.eval_records = len(eval_records)
        held_groups = {_group_key(r) for r in held}
        in_eval = [r for r in pool if _group_key(r) in held_groups]
        report.overlap, report.overlap_dropped = len(in_eval), drop_overlap
        train = [r for r in pool if _group_key(r) not in held_groups] if drop_overlap else pool
        if not train:
            raise DataError(
                f"every one of the {len(pool)} training records is also in the eval file "
                f"({len(eval_records)} records): nothing left to train on with drop_overlap=True",
                source=source,
            )
    elif not fraction or not pool:
        train, held = list(pool), []
    else:
        groups: dict[Hashable, list[R]] = {}
        for record in pool:
            groups.setdefault(_group_key(record), []).append(record)
        members = list(groups.values())
        order = list(range(len(members)))
        random.Random(seed).shuffle(order)
        cut = max(1, round(fraction * len(pool)))
        held, train = [], []
        for i in order:
            (held if len(held) < cut else train).extend(members[i])
        if not train:
            raise DataError(
                f"{len(pool)} records in {len(members)} distinct groups: too few to hold out "
                f"eval_fraction={fraction} and keep any for training",
                source=source,
            )
    report.train, report.held = len(train), len(held)
    if report.clean:
        logger.info(report.summary())
    else:
        logger.warning(report.summary())
    return train, held, report
