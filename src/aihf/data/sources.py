"""Where rows come from: JSONL (plain or compressed), Parquet, a ``datasets.Dataset``, or a list of dicts.

:func:`open_rows` gives a :class:`Rows`: the source's name, how rows are numbered, and
an iterator of ``(row, value)`` where ``value`` is the row's ``dict`` or, for a row that
cannot be read at all, a :class:`~aihf.data.errors.DataError` (the reader decides
whether to raise or skip it).

* ``*.jsonl``: one JSON object per line, UTF-8, streamed line by line; rows are 1-based
  line numbers; blank lines are not rows. Errors: invalid UTF-8, invalid or truncated
  JSON, a line that is not an object.
* ``*.jsonl.gz``, ``*.jsonl.bz2``, ``*.jsonl.xz``: the same, decompressed while streaming
  (``gzip``, ``bz2``, ``lzma`` from the standard library); line numbers are those of the
  decompressed text.
* ``*.parquet``: read in record batches with pyarrow; rows are 0-based indices.
* ``datasets.Dataset`` / ``IterableDataset`` (anything with ``column_names``) and lists
  of dicts: 0-based indices.

A path is checked when it is opened, before any row is read: a missing file, a directory,
an unreadable file, or a file whose first bytes say it is something else than its name
(a compressed file named ``.jsonl``, a Parquet file named ``.jsonl``, JSON named
``.parquet``) is a :class:`~aihf.data.errors.DataError` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Union

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


# Compressed JSONL read directly: suffix -> (format name, opener of a binary stream).
COMPRESSED: dict[str, tuple[str, Callable[[Path], IO[bytes]]]] = {
    ".gz": ("gzip", lambda p: gzip.open(p, "rb")),
    ".bz2": ("bzip2", lambda p: bz2.open(p, "rb")),
    ".xz": ("xz", lambda p: lzma.open(p, "rb")),
}
# First bytes of formats that are not JSONL text: (magic, what it is, the suffix that reads it or None).
MAGIC: tuple[tuple[bytes, str, str | None], ...] = (
    (b"\x1f\x8b", "a gzip-compressed file", ".jsonl.gz"),
    (b"BZh", "a bzip2-compressed file", ".jsonl.bz2"),
    (b"\xfd7zXZ\x00", "an xz-compressed file", ".jsonl.xz"),
    (b"(\xb5/\xfd", "a zstd-compressed file", None),
    (b"PK\x03\x04", "a zip archive", None),
    (b"PAR1", "a Parquet file", ".parquet"),
)
DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def _sniff(head: bytes) -> str | None:
    """What the first bytes of a file say it is, as a hint, or None for anything else."""
    for magic, what, suffix in MAGIC:
        if head.startswith(magic):
            if suffix == ".parquet":
                return f"looks like {what}, not JSONL text; name it .parquet"
            if suffix is None:
                return (f"looks like {what}, not JSONL text; decompress it to .jsonl "
                        "(gzip, bzip2 and xz files are read directly as .jsonl.gz, .jsonl.bz2, .jsonl.xz)")
            return f"looks like {what}, not JSONL text; decompress it or name it {suffix} (read directly)"
    return None


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, RowValue]]:
    for number, raw in enumerate(stream, start=1):
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


def _jsonl(path: Path) -> Iterator[tuple[int, RowValue]]:
    with open(path, "rb") as f:
        yield from _lines(f)


def _compressed_jsonl(path: Path, suffix: str, name: str) -> Iterator[tuple[int, RowValue]]:
    kind, opener = COMPRESSED[suffix]
    line = 0
    try:
        with opener(path) as f:
            for line, value in _lines(f):
                yield line, value
    except DECOMPRESS_ERRORS as err:
        after = f" after line {line}" if line else ""
        raise DataError(f"cannot decompress the {kind} data{after} ({err}): truncated or not {kind}?",
                        source=name) from None


def _parquet(path: Path, name: str) -> Iterator[tuple[int, RowValue]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        hint = _json_hint(path)
        raise DataError(f"not a readable Parquet file ({err}){hint}", source=name) from None
    index = 0
    try:
        for batch in file.iter_batches():
            for row in batch.to_pylist():
                yield index, row
                index += 1
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read the Parquet data after {index} rows ({err})", source=name) from None


def _json_hint(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return ""
    return "; it looks like JSON text: name it .jsonl" if head[:1] in (b"{", b"[") else ""


def _check_file(path: Path, name: str) -> bytes:
    """The first bytes of ``path``, after checking it is a readable file (errors name it ``name``)."""
    if not path.exists():
        raise DataError("no such file", source=name)
    if path.is_dir():
        raise DataError(
            "is a directory, not a data file (for a datasets.save_to_disk directory, pass "
            "datasets.load_from_disk(path) instead)",
            source=name,
        )
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as err:
        raise DataError(f"cannot be read ({err.strerror or err})", source=name) from None


def _path_rows(path: Path, name: str) -> Rows:
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if path.is_dir():
        _check_file(path, name)
    if suffixes[-1:] == [".jsonl"]:
        hint = _sniff(_check_file(path, name))
        if hint:
            raise DataError(hint, source=name)
        return Rows(name, "line", _jsonl(path))
    if len(suffixes) == 2 and suffixes[0] == ".jsonl" and suffixes[1] in COMPRESSED:
        head = _check_file(path, name)
        kind = COMPRESSED[suffixes[1]][0]
        magic = next(m for m, _, suffix in MAGIC if suffix == ".jsonl" + suffixes[1])
        if head and not head.startswith(magic):  # an empty file reads as no rows
            plain = " (it looks like plain JSON text: name it .jsonl)" if _json_hint(path) else ""
            raise DataError(f"is named {suffixes[1]} but is not {kind}-compressed{plain}", source=name)
        return Rows(name, "line", _compressed_jsonl(path, suffixes[1], name))
    if suffixes[-1:] == [".parquet"]:
        _check_file(path, name)
        return Rows(name, "index", _parquet(path, name))
    shown = "".join(path.suffixes[-2:]) if suffixes[-1:] and suffixes[-1] in COMPRESSED else path.suffix
    raise DataError(
        f"unsupported file type {shown!r}; expected .jsonl, .jsonl.gz, .jsonl.bz2, .jsonl.xz or .parquet",
        source=name,
    )


def _mappings(rows: Iterable[Any]) -> Iterator[tuple[int, RowValue]]:
    for index, row in enumerate(rows):
        if isinstance(row, Mapping):
            yield index, dict(row)
        else:
            yield index, DataError(f"a row must be a mapping, got {type(row).__name__}")


def open_rows(source: Source) -> Rows:
    """Rows of a ``.jsonl`` (or ``.jsonl.gz``/``.bz2``/``.xz``) or ``.parquet`` path, a
    ``datasets.Dataset``, or a list of dicts."""
    if isinstance(source, (str, Path)):
        return _path_rows(Path(source), str(source))
    if hasattr(source, "column_names"):  # datasets.Dataset or IterableDataset
        info = getattr(source, "info", None)
        name = getattr(info, "dataset_name", None)
        return Rows(f"dataset {name!r}" if name else f"<{type(source).__name__}>", "index", _mappings(source))
    if isinstance(source, (list, tuple)):
        return Rows("<list>", "index", _mappings(source))
    raise DataError(
        f"unsupported source of type {type(source).__name__}: "
        "expected a .jsonl/.jsonl.gz/.parquet path, a datasets.Dataset or a list of dicts"
    )
