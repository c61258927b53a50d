"""Inputs held in memory, stored as content-addressed files so that a run's config names a
file or a folder like any other: training data (a ``datasets.Dataset``, a list of dicts or of
records) and a model with its tokenizer.

``aihf.lm.train.train(name, config, preferences=dataset)`` reads ``dataset`` with the reader of
its kind (``aihf.data.read_preferences``: the same checks, and errors naming the dataset, the
row and the field, as for a file), writes the records it kept with ``aihf.data.write_jsonl``'s
encoding to ``<directory>/<kind>-<sha256 of the bytes, 16 hex digits>.jsonl`` and puts that
path into ``config.data``. ``train(..., model=model, tokenizer=tokenizer)`` saves both with
``save_pretrained`` (safetensors) into ``<directory>/model-<sha256 of the saved files>`` and
puts that folder into ``config.model.name_or_path``; ``reward_model=..., reward_tokenizer=...``
(an ``aihf.lm.models.RewardModel``, saved with its own ``save``, or a one-label sequence
classifier such as a TRL reward model) go the same way into ``config.model.reward_model``. So the run folder's ``config.yaml`` names
real files (the run can be repeated or resumed from the command line), the same rows or
weights always give the same path and the same run (``aihf.run_folder``: a finished run is
returned, a stopped one resumed), and other rows or weights give another path, hence another
run, which a folder holding the first refuses. A data file read back gives records equal to
those written (``write_jsonl``), so training from the dataset and from the file are the same run.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from aihf import runtime
from aihf.config import ConfigError
from aihf.data import Demonstration, Preference, PromptRecord, read_demonstrations, read_preferences, read_prompts
from aihf.data.sources import Source

log = logging.getLogger(__name__)

# data kind (the ``DataConfig`` field, also with ``eval_``) -> (reader, record type)
KINDS = {
    "demonstrations": (read_demonstrations, Demonstration),
    "preferences": (read_preferences, Preference),
    "prompts": (read_prompts, PromptRecord),
}
FIELDS = (*KINDS, *(f"eval_{kind}" for kind in KINDS))
Data = Union[Source, Sequence[Demonstration], Sequence[Preference], Sequence[PromptRecord]]
# the columns each kind's reader finds by name (its ``<column>_field`` argument), which ``DataConfig.columns`` renames
KIND_COLUMNS = {"demonstrations": ("prompt", "response", "messages"), "preferences": ("prompt", "chosen", "rejected"),
                "prompts": ("prompt",)}


def check_columns(columns: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first entry of ``DataConfig.columns`` that is not a data key
    (``FIELDS``) mapped to {a column its kind reads (``KIND_COLUMNS``): a non-empty name}."""
    for field, names in columns.items():
        if field not in FIELDS:
            raise ValueError(f"columns: {field!r} is not a data key; the keys are {', '.join(FIELDS)}")
        known = KIND_COLUMNS[field.removeprefix("eval_")]
        if not isinstance(names, Mapping):
            raise ValueError(f"columns.{field}: expected a mapping of aihf's column names to the data's, e.g. "
                             f"{{{known[0]}: question}}, got {names!r}")
        for ours, theirs in names.items():
            if ours not in known:
                raise ValueError(f"columns.{field}: {ours!r} is not a column aihf reads there; "
                                 f"those are {', '.join(known)}")
            if not isinstance(theirs, str) or not theirs:
                raise ValueError(f"columns.{field}.{ours} must name a column (a non-empty string), got {theirs!r}")


def field_columns(columns: Mapping[str, Mapping[str, str]] | None, field: str) -> Mapping[str, str]:
    """The renames ``DataConfig.columns`` gives data key ``field``: its own entry, else (an
    ``eval_`` key) its kind's, else none."""
    columns = columns or {}
    return columns.get(field, columns.get(field.removeprefix("eval_"), {}))


def read_records(field: str, data: Data, columns: Mapping[str, str] | None = None) -> Sequence[Any]:
    """The records of ``data`` for ``DataConfig`` field ``field``: a list of records of the
    field's type as it is; anything else through the field's reader, which finds aihf's columns
    under the names ``columns`` gives (aihf's name -> the data's, :func:`field_columns`)."""
    read, record_type = KINDS[field.removeprefix("eval_")]
    if isinstance(data, Sequence) and data and all(isinstance(r, record_type) for r in data):
        return data
    return read(data, **{f"{ours}_field": theirs for ours, theirs in (columns or {}).items()})


def encoded(field: str, data: Data, columns: Mapping[str, str] | None = None) -> bytes:
    """The records of ``data`` for ``DataConfig`` field ``field`` (:func:`read_records`) as JSONL
    bytes (one ``record.to_dict()`` per line, as ``write_jsonl`` writes them)."""
    records = read_records(field, data, columns)
    return "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def store(field: str, data: Data, directory: Path, columns: Mapping[str, str] | None = None) -> Path:
    """The content-addressed JSONL file holding ``data``'s records (module docstring; read under
    ``columns``' names, :func:`encoded`), written atomically unless it exists already."""
    body = encoded(field, data, columns)
    path = Path(directory) / f"{field.removeprefix('eval_')}-{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
    if not path.is_file():
        with runtime.atomic_file(path) as tmp:
            tmp.write_bytes(body)
    return path


DATA_SUFFIXES = (".jsonl", ".gz", ".bz2", ".xz", ".parquet")  # a missing file, not a dataset name


def named_dataset(key: str, value: str) -> Any:
    """The ``datasets.Dataset`` that the value of ``key`` (``data.preferences``, ``--preferences``)
    names when it is not a file: a ``save_to_disk`` folder (of a ``DatasetDict``: ``FOLDER:SPLIT``,
    split ``train`` by default), another folder of data files, or a hub dataset ``NAME``,
    ``NAME:SPLIT`` or, for a dataset of several configurations (subsets), ``NAME:CONFIG:SPLIT``
    (``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``; a folder of data files takes them too);
    None for a file, or a missing one (reported later as such)."""
    if Path(value).is_file():
        return None
    name, _, rest = (value, "", "") if Path(value).exists() else value.partition(":")
    subset, _, split = rest.rpartition(":")  # "CONFIG:SPLIT" or "SPLIT"
    folder = Path(name)
    if not folder.is_dir() and ("/" not in name or name.endswith(DATA_SUFFIXES)):
        return None
    import datasets

    saved = (folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file()
    if saved and subset:
        raise ConfigError(f"{key}: {value!r}: a save_to_disk folder has no configurations; name it as FOLDER or "
                          "FOLDER:SPLIT")
    try:
        if (folder / "dataset_dict.json").is_file():
            return datasets.load_from_disk(name)[split or "train"]
        if saved:
            return datasets.load_from_disk(name)
        return datasets.load_dataset(name, subset or None, split=split or "train")
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; each becomes one line naming the key
        raise ConfigError(f"{key}: {value!r} is not a file, and datasets cannot load it as a dataset "
                          f"({type(err).__name__}: {err})") from err


def with_stored_data(config: Any, data: Mapping[str, Data | None], directory: Path) -> Any:
    """A copy of the ``TrainConfig`` ``config`` whose ``data.<field>`` names a file for every
    field: given in ``data`` (a path as it is, in-memory rows stored), or named in ``config.data``
    as a dataset rather than a file (``named_dataset``: its rows stored). A field that
    ``data.columns`` renames (:func:`field_columns`) is read under those names and stored, a file
    too; the copy's ``data.columns`` is empty, as its files hold aihf's columns."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown data field(s) {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    config = copy.deepcopy(config)
    columns, config.data.columns = config.data.columns, {}
    for field in FIELDS:
        value = data.get(field)
        if value is None:
            value = getattr(config.data, field)
        if isinstance(value, (str, Path)) and (dataset := named_dataset(f"data.{field}", str(value))) is not None:
            value = dataset
        if value is None:
            continue
        renames = field_columns(columns, field)
        if isinstance(value, (str, Path)) and not renames:
            setattr(config.data, field, str(value))
            continue
        if isinstance(value, (str, Path)) and not Path(value).is_file():
            raise ConfigError(f"data.{field}: {value} is not a file")
        path = store(field, value, directory, renames)
        if renames:
            log.info("data.%s: read with the columns %s, stored as %s", field, dict(renames), path)
        setattr(config.data, field, str(path))
    return config


def files_sha256(folder: Path) -> str:
    """SHA-256 over the files of ``folder`` in name order: each relative name and its
    ``runtime.file_sha256``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{runtime.file_sha256(path)}\n".encode())
    return digest.hexdigest()


def store_model(model: Any, tokenizer: Any, directory: Path, name: str = "model") -> Path:
    """The content-addressed folder holding ``model`` and ``tokenizer`` as ``save_pretrained``
    writes them (safetensors; a ``RewardModel`` as its ``save`` does): written to a temporary
    sibling, hashed, then renamed into place unless a folder of that hash is there already. A
    peft model is refused: its ``save_pretrained`` writes the adapters alone. ``name``: the
    argument's name in errors."""
    from aihf.lm.models import RewardModel

    if hasattr(model, "peft_config"):
        raise ConfigError(f"{name}: a peft model saves only its adapters; give model.merge_and_unload(), or the "
                          "base model with model.lora set to train adapters on it")
    reward = isinstance(model, RewardModel)
    if not (reward or hasattr(model, "save_pretrained")) or not hasattr(tokenizer, "save_pretrained"):
        raise ConfigError(f"{name} and its tokenizer must be transformers objects with save_pretrained (or an aihf "
                          f"RewardModel), got {type(model).__name__} and {type(tokenizer).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".model.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if reward:
            model.save(tmp, tokenizer)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        target = directory / f"model-{files_sha256(tmp)[:16]}"
        if not target.is_dir():
            with contextlib.suppress(OSError):  # another process renamed the same folder first
                os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def with_stored_model(config: Any, model: Any, tokenizer: Any, directory: Path, field: str = "name_or_path") -> Any:
    """A copy of the ``TrainConfig`` ``config`` whose ``model.<field>`` (``name_or_path``, or
    ``reward_model``) is the stored folder of ``model`` and ``tokenizer`` (the main process of
    each machine saves it; the others wait)."""
    from accelerate.utils import broadcast_object_list

    names = ("model", "tokenizer") if field == "name_or_path" else ("reward_model", "reward_tokenizer")
    if (model is None) != (tokenizer is None):
        raise ConfigError(f"give the model and its tokenizer together ({names[0]}=..., {names[1]}=...)")
    state = runtime.process_state()
    path = store_model(model, tokenizer, directory, names[0]) if state.is_local_main_process else None
    if state.num_processes > 1:
        path = broadcast_object_list([path])[0]
    config = copy.deepcopy(config)
    setattr(config.model, field, str(path))
    return config
