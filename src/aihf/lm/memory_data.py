"""Training data held in memory (a ``datasets.Dataset``, a list of dicts or of records), stored
as content-addressed JSONL files so that a run's config names a file like any other.

``aihf.lm.train.train(name, config, preferences=dataset)`` reads ``dataset`` with the reader of
its kind (``aihf.data.read_preferences``: the same checks, and errors naming the dataset, the
row and the field, as for a file), writes the records it kept with ``aihf.data.write_jsonl``'s
encoding to ``<directory>/<kind>-<sha256 of the bytes, 16 hex digits>.jsonl`` and puts that
path into ``config.data``. So the run folder's ``config.yaml`` names real files (the run can be
repeated or resumed from the command line), the same rows always give the same file and the
same run (``aihf.run_folder``: a finished run is returned, a stopped one resumed), and other
rows give another file, hence another run, which a folder holding the first refuses. A file
read back gives records equal to those written (``write_jsonl``), so training from the
dataset and from the file are the same run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from aihf import runtime
from aihf.data import Demonstration, Preference, PromptRecord, read_demonstrations, read_preferences, read_prompts
from aihf.data.sources import Source

# data kind (the ``DataConfig`` field, also with ``eval_``) -> (reader, record type)
KINDS = {
    "demonstrations": (read_demonstrations, Demonstration),
    "preferences": (read_preferences, Preference),
    "prompts": (read_prompts, PromptRecord),
}
FIELDS = (*KINDS, *(f"eval_{kind}" for kind in KINDS))
Data = Union[Source, Sequence[Demonstration], Sequence[Preference], Sequence[PromptRecord]]


def encoded(field: str, data: Data) -> bytes:
    """The records of ``data`` for ``DataConfig`` field ``field`` as JSONL bytes (one
    ``record.to_dict()`` per line, as ``write_jsonl`` writes them). A list of records of the
    field's type is taken as it is; anything else goes through the field's reader."""
    read, record_type = KINDS[field.removeprefix("eval_")]
    if isinstance(data, Sequence) and data and all(isinstance(r, record_type) for r in data):
        records: Sequence[Any] = data
    else:
        records = read(data)
    return "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def store(field: str, data: Data, directory: Path) -> Path:
    """The content-addressed JSONL file holding ``data``'s records (module docstring), written
    atomically unless it exists already."""
    body = encoded(field, data)
    path = Path(directory) / f"{field.removeprefix('eval_')}-{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
    if not path.is_file():
        with runtime.atomic_file(path) as tmp:
            tmp.write_bytes(body)
    return path


def with_stored_data(config: Any, data: Mapping[str, Data | None], directory: Path) -> Any:
    """A copy of the ``TrainConfig`` ``config`` whose ``data.<field>`` names, for each field given
    in ``data``, a path as it is or the stored file of in-memory rows."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown data field(s) {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    config = copy.deepcopy(config)
    for field, value in data.items():
        if value is not None:
            path = value if isinstance(value, (str, Path)) else store(field, value, directory)
            setattr(config.data, field, str(path))
    return config
