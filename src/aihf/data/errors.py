"""The one exception of the data layer: :class:`DataError`, naming file, row and field.

Message format (parts that are unknown are left out)::

    data/prefs.jsonl, line 7, field 'chosen': chosen is identical to rejected
    train.parquet, index 12 (0-based), field 'prompt': prompt is empty

JSONL rows are 1-based line numbers ("line N"); Parquet files, ``datasets.Dataset``
objects, lists of dicts and array sets use 0-based positions ("index N (0-based)").
"""

from __future__ import annotations

from typing import Literal

RowKind = Literal["line", "index"]


class DataError(ValueError):
    """Bad input data. Attributes: ``source``, ``row``, ``row_kind``, ``field``, ``reason``.

    Records and array sets raise it without a location (``source``/``row`` None); the
    readers fill the location in with :meth:`at`, so one validation path serves every
    source.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
        row_kind: RowKind = "index",
    ) -> None:
        self.reason = reason
        self.source = source
        self.row = row
        self.field = field
        self.row_kind = row_kind
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        if self.source is not None:
            parts.append(str(self.source))
        if self.row is not None:
            parts.append(f"line {self.row}" if self.row_kind == "line" else f"index {self.row} (0-based)")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return f"{', '.join(parts)}: {self.reason}" if parts else self.reason

    def at(
        self,
        source: str | None = None,
        row: int | None = None,
        row_kind: RowKind | None = None,
        field: str | None = None,
    ) -> DataError:
        """A copy with the location parts that this error does not know yet filled in."""
        return DataError(
            self.reason,
            source=self.source if self.source is not None else source,
            row=self.row if self.row is not None else row,
            field=self.field if self.field is not None else field,
            row_kind=row_kind if self.row is None and row_kind is not None else self.row_kind,
        )
