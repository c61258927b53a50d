"""Read and write language records: :func:`read_demonstrations`, :func:`read_preferences`,
:func:`read_prompts`, :func:`write_jsonl`.

Sources and row numbering: :mod:`aihf.data.sources`. Accepted row layouts (plain,
chat ``messages``, UltraFeedback and HH conversations): :mod:`aihf.data.rows`.

Strict by default: the first bad row raises :class:`~aihf.data.errors.DataError` with the
source, row and field. Nothing is dropped silently: ``on_error="skip"``, ``dedupe`` and
``max_chars`` drop rows, and every drop is counted by reason in the :class:`ReadReport`
attached to the result (``records.report``) and logged as a warning. An empty source, or
one where every row was dropped, is an error.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union

from aihf.data.errors import DataError
from aihf.data.records import Demonstration, Preference, PromptRecord
from aihf.data.rows import demonstration_from_row, preference_from_row, prompt_from_row
from aihf.data.sources import Source, open_rows
from aihf.data.split import record_key

logger = logging.getLogger("aihf.data")
R = TypeVar("R", Demonstration, Preference, PromptRecord)
OnError = Literal["raise", "skip"]
MAX_EXAMPLES = 5


@dataclass
class ReadReport:
    """What a read kept and dropped. ``dropped`` maps a reason to a count; reasons are
    ``"invalid field 'F'"`` (list indices in F shown as ``[]``) and ``"invalid row"`` (with
    ``on_error="skip"``), ``"duplicate"`` and ``"longer than max_chars"``. ``examples``
    keeps the first few messages (DataError format)."""

    source: str
    rows: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common()) or "none"
        return f"{self.source}: read {self.rows} rows, kept {self.kept}; dropped: {reasons}"


class Records(list, Generic[R]):
    """A plain ``list`` of records with the :class:`ReadReport` of the read as ``.report``."""

    def __init__(self, items: Iterable[R], report: ReadReport) -> None:
        super().__init__(items)
        self.report = report


def _chars(record: Demonstration | Preference | PromptRecord) -> int:
    """Prompt characters (message contents summed) plus the longest response's (none for a prompt record)."""
    prompt = record.prompt if isinstance(record.prompt, str) else "".join(m.content for m in record.prompt)
    if isinstance(record, Demonstration):
        responses = [record.response]
    elif isinstance(record, Preference):
        responses = [record.chosen, record.rejected]
    else:
        responses = []
    return len(prompt) + max(map(len, responses), default=0)


def _read(
    source: Source,
    parse: Callable[[Mapping[str, Any]], R],
    on_error: OnError,
    dedupe: bool,
    max_chars: int | None,
) -> Records[R]:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_chars is not None and max_chars < 1:
        raise ValueError(f"max_chars must be a positive number of characters, got {max_chars}")
    rows = open_rows(source)
    report = ReadReport(rows.name)
    kept: list[R] = []
    seen: set = set()

    def drop(reason: str, message: str) -> None:
        report.dropped[reason] += 1
        if len(report.examples) < MAX_EXAMPLES:
            report.examples.append(message)

    for row, value in rows.items:
        report.rows += 1
        try:
            if isinstance(value, DataError):
                raise value
            record = parse(value)
        except DataError as err:
            err = err.at(source=rows.name, row=row, row_kind=rows.row_kind)
            if on_error == "raise":
                raise err from None
            column = re.sub(r"\[\d+\]", "[]", err.field) if err.field else None  # one key per column
            drop(f"invalid field '{column}'" if column else "invalid row", str(err))
            continue
        where = partial(DataError, source=rows.name, row=row, row_kind=rows.row_kind)
        if max_chars is not None and _chars(record) > max_chars:
            drop("longer than max_chars", str(where(f"{_chars(record)} characters > max_chars={max_chars}")))
        elif dedupe and record_key(record) in seen:
            drop("duplicate", str(where("duplicate of an earlier record")))
        else:
            if dedupe:
                seen.add(record_key(record))
            kept.append(record)
    report.kept = len(kept)
    if report.rows == 0:
        raise DataError("no rows: the source is empty", source=rows.name)
    if not kept:
        reason = f"no rows left after filtering ({report.summary()}); e.g. {report.examples[0]}"
        raise DataError(reason, source=rows.name)
    if report.dropped:
        logger.warning("%s; e.g. %s", report.summary(), report.examples[0])
    else:
        logger.info(report.summary())
    return Records(kept, report)


def read_demonstrations(
    source: Source,
    *,
    prompt_field: str = "prompt",
    response_field: str = "response",
    messages_field: str = "messages",
    strict: bool = False,
    on_error: OnError = "raise",
    dedupe: bool = False,
    max_chars: int | None = None,
) -> Records[Demonstration]:
    """Demonstrations (x, y_E) from a ``.jsonl`` (or ``.jsonl.gz``/``.bz2``/``.xz``) or
    ``.parquet`` path, a ``datasets.Dataset`` or a list of dicts. Rows are ``{prompt, response}`` or ``{messages}`` (UltraChat), with an
    optional boolean ``finished`` (default true; false: the response was cut at a length cap
    and is encoded without EOS).

    ``strict``: unknown columns are errors (default: ignored as metadata). ``on_error="skip"``
    drops bad rows instead of raising; ``dedupe`` drops exact repeats (same prompt and
    response texts, :func:`aihf.data.split.record_key`); ``max_chars`` drops
    records whose prompt plus response is longer (characters, not tokens). Drops are counted
    in ``result.report``.
    """
    parse = partial(
        demonstration_from_row, prompt=prompt_field, response=response_field, messages=messages_field, strict=strict
    )
    return _read(source, parse, on_error, dedupe, max_chars)


def read_preferences(
    source: Source,
    *,
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    strict: bool = False,
    on_error: OnError = "raise",
    dedupe: bool = False,
    max_chars: int | None = None,
) -> Records[Preference]:
    """Preferences (x, y_w, y_l) from the same sources. Rows are ``{prompt, chosen, rejected}``
    or, with no ``prompt`` column, full conversations or texts in ``chosen``/``rejected``
    (UltraFeedback message lists, HH text, or trl's implicit-prompt texts) whose shared
    start becomes the prompt (:mod:`aihf.data.rows`), with optional booleans ``chosen_finished`` /
    ``rejected_finished`` (default true, as ``finished`` for demonstrations). Options as in :func:`read_demonstrations`;
    ``max_chars`` applies to the prompt plus the longer response.
    """
    parse = partial(
        preference_from_row, prompt=prompt_field, chosen=chosen_field, rejected=rejected_field, strict=strict
    )
    return _read(source, parse, on_error, dedupe, max_chars)


def read_prompts(
    source: Source,
    *,
    prompt_field: str = "prompt",
    strict: bool = False,
    on_error: OnError = "raise",
    dedupe: bool = False,
    max_chars: int | None = None,
) -> Records[PromptRecord]:
    """Prompts x alone (the RL prompt set, docs/method.md section 6) from the same sources.

    Rows are ``{prompt}``, the prompt a string or chat messages ending with a user turn (as
    for demonstrations); other columns are metadata unless ``strict``, so demonstration and
    preference files read as prompts too. Options as in :func:`read_demonstrations`;
    ``max_chars`` applies to the prompt.
    """
    return _read(source, partial(prompt_from_row, prompt=prompt_field, strict=strict), on_error, dedupe, max_chars)


def write_jsonl(records: Iterable[Union[Demonstration, Preference, PromptRecord]], path: str | Path) -> int:
    """Write records as JSONL (UTF-8, one ``record.to_dict()`` per line); returns the count.

    The output reads back with :func:`read_demonstrations` / :func:`read_preferences` /
    :func:`read_prompts` into equal records.
    """
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count
