"""Where rows come from: JSONL, Parquet, a ``datasets.Dataset``, or a list of dicts.

:func:`open_rows` gives a :class:`Rows`: the source's name, how rows are numbered, and
an iterator of ``(row, value)`` where ``value`` is the row's ``dict`` or, for a row that
cannot be read at all, a :class:`~aihf.data.errors.DataError` (the reader decides
whether to raise or skip it).

* ``*.jsonl``: one JSON object per line, UTF-8, streamed line by line; rows are 1-based
  line numbers; blank lines are not rows. Errors: invalid UTF-8, invalid or truncated
  JSON, a line that is not an object.
* ``*.parquet``: read in record batches with pyarrow; rows are 0-based indices.
* ``datasets.Dataset`` / ``IterableDataset`` (anything with ``column_names``) and lists
  of dicts: 0-based indices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import datasets

from aihf.data.errors import DataError, RowKind

Source = Union[str, Path, Sequence[Mapping[str, Any]], "datasets.Dataset", "datasets.IterableDataset"]
RowValue = Union[dict, DataError]


@dataclass
class Rows:
    """A source's ``name``, its ``row_kind`` ("line" or "index"), and its ``(row, value)`` pairs."""

    name: str
    row_kind: RowKind
    items: Iterator[tuple[int, RowValue]]


def _jsonl(path: Path) -> Iterator[tuple[int, RowValue]]:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                yield number, DataError(f"invalid UTF-8 at byte {err.start} of the line")
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                hint = "" if raw.endswith(b"\n") else " (the file ends mid-line: truncated?)"
                yield number, DataError(f"invalid JSON: {err.msg} at column {err.colno}{hint}")
                continue
            if isinstance(value, dict):
                yield number, value
            else:
                yield number, DataError(f"a JSONL line must be a JSON object, got {type(value).__name__}")


def _parquet(path: Path) -> Iterator[tuple[int, RowValue]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"not a readable Parquet file ({err})", source=str(path)) from None
    index = 0
    for batch in file.iter_batches():
        for row in batch.to_pylist():
            yield index, row
            index += 1


def _mappings(rows: Iterable[Any]) -> Iterator[tuple[int, RowValue]]:
    for index, row in enumerate(rows):
        if isinstance(row, Mapping):
            yield index, dict(row)
        else:
            yield index, DataError(f"a row must be a mapping, got {type(row).__name__}")


def open_rows(source: Source) -> Rows:
    """Rows of a ``.jsonl``/``.parquet`` path, a ``datasets.Dataset``, or a list of dicts."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".jsonl":
            return Rows(str(source), "line", _jsonl(path))
        if path.suffix == ".parquet":
            return Rows(str(source), "index", _parquet(path))
        raise DataError(f"unsupported file type {path.suffix!r}; expected .jsonl or .parquet", source=str(source))
    if hasattr(source, "column_names"):  # datasets.Dataset or IterableDataset
        info = getattr(source, "info", None)
        name = getattr(info, "dataset_name", None)
        return Rows(f"dataset {name!r}" if name else f"<{type(source).__name__}>", "index", _mappings(source))
    if isinstance(source, (list, tuple)):
        return Rows("<list>", "index", _mappings(source))
    raise DataError(
        f"unsupported source of type {type(source).__name__}: "
        "expected a .jsonl/.parquet path, a datasets.Dataset or a list of dicts"
    )
