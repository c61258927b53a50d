"""A run folder: which run it holds, who writes it, and whether a command starts, resumes
or is refused there (docs/lm_engine.md, "Run folders").

``aihf train`` claims its ``loop.output_dir`` before any long work:

* a lock file (``.lock``: pid and host of the writer) stops two runs writing one folder;
  a lock left by a dead process on this host is taken over;
* ``run.json`` records the run (method, full config, process count, versions, status)
  and ``config.yaml`` its config; writing them proves the folder writable at once;
* a folder holding *another* run (other method, or a config differing outside
  :data:`MAY_CHANGE`) is refused unless ``overwrite`` (``--overwrite``), which empties it;
* the same run continues: ``loop.resume_from=auto`` (the default) resumes its newest
  checkpoint, starts it again when it has none, and returns a finished run's result
  without training;
* temporary directories of saves that a dead writer left (``.step-N.tmp-PID``) are removed.

:func:`default_output_dir` names a folder after the method and the run
(``runs/dpo-1a2b3c4d``), so two methods or two configs never share a default folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from aihf.config import ConfigError

log = logging.getLogger(__name__)

# Loop keys that may differ between a run and its resumption: they change how long it runs,
# what it logs and where it saves, not what it computes step by step. (A larger
# ``max_steps`` with a decaying lr schedule stretches the schedule from the resumed step.)
MAY_CHANGE = (
    "loop.output_dir", "loop.resume_from", "loop.max_steps", "loop.save_every", "loop.keep_checkpoints",
    "loop.eval_every", "loop.log_every", "loop.log_with", "loop.progress",
)
RECORD, LOCK = "run.json", ".lock"
OUTPUTS = ("checkpoints/step-*", "final", "metrics.json")  # what a run that trained a step leaves in its folder


class RunFolderError(ConfigError):
    """A run folder that this command may not use as asked (another run, a live writer)."""


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _plain(config: Any) -> dict[str, Any]:
    """The config as JSON data (tuples as lists), so a saved and a live config compare equal."""
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return json.loads(json.dumps(data))


def differences(old: dict[str, Any], new: dict[str, Any], may_change: tuple[str, ...] = MAY_CHANGE,
                defaults: Any = None) -> list[str]:
    """``key: old -> new`` for every leaf of two config trees that differs, outside ``may_change``
    (keys, or sections whose every key may change).

    With ``defaults`` (a config tree of default values), a key that ``old`` lacks and ``new``
    holds at its default is no difference: a setting added to the code after the old run was
    made, at the value that keeps what the old code did."""
    a, b = _flat(_plain(old)), _flat(_plain(new))
    base = _flat(_plain(defaults)) if defaults is not None else {}
    free = lambda key: any(key == m or key.startswith(m + ".") for m in may_change)  # noqa: E731
    added_at_default = lambda key: key not in a and key in base and b.get(key) == base[key]  # noqa: E731
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b))
            if not free(key) and a.get(key) != b.get(key) and not added_at_default(key)]


def default_output_dir(method: str, config: Any) -> str:
    """``runs/METHOD-HASH``: HASH is 8 hex digits of the settings that differ from their
    defaults (outside :data:`MAY_CHANGE`), so the same command finds its folder again, another
    config gets its own, and a setting added to aihf later (at a default that keeps what the
    old code did) does not move existing runs to a new folder. Were a default itself to change,
    the folder's run record (``plan``) tells the two runs apart and refuses to mix them."""
    defaults = _flat(_plain(type(config)()))
    flat = {k: v for k, v in _flat(_plain(config)).items()
            if k not in MAY_CHANGE and (k not in defaults or v != defaults[k])}
    digest = hashlib.sha256(json.dumps([method, flat], sort_keys=True).encode()).hexdigest()[:8]
    return f"runs/{method}-{digest}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_dead_writers_files(folder: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` / ``.NAME.old-PID`` directories (``runtime.atomic_directory``) of
    processes that no longer run, in ``folder`` and ``folder/checkpoints``; returns them."""
    removed = []
    for parent in (folder, folder / "checkpoints"):
        if not parent.is_dir():
            continue
        for path in parent.glob(".*-*"):
            stem, _, pid = path.name.rpartition("-")
            if not (stem.endswith((".tmp", ".old")) and pid.isdigit()) or _alive(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d temporary folder(s) that killed saves left in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (created exclusively) while the block runs; re-entrant in one process.

    A lock whose process is dead on this host is taken over; one held by a live process,
    or by any process on another host, is a :class:`RunFolderError`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path, me = folder / LOCK, {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                holder = {}
            if holder == me:  # a stage of this run (rlhf's reward stage, aihf's stage 0)
                yield
                return
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                log.warning("%s: taking over the lock of process %d, which no longer runs", folder, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            raise RunFolderError(
                f"{folder} is being written by process {holder.get('pid', '?')} on {holder.get('host', '?')}: "
                f"wait for it, choose another loop.output_dir, or remove {path} if that run is dead"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise RunFolderError(f"{path}: could not take the lock")


@dataclass
class Plan:
    """What a command does in its run folder: start, resume from ``checkpoint``, or nothing (finished)."""

    action: Literal["start", "resume", "finished"]
    checkpoint: Path | None = None


def read_record(folder: Path) -> dict[str, Any] | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RunFolderError(f"{path}: not a run record ({err}); remove the folder or pass --overwrite") from err


def holds_outputs(folder: Path) -> bool:
    """Whether a run left results here (a record alone, of a run that failed before its first
    step, is not worth keeping and is replaced)."""
    return any(any(folder.glob(pattern)) for pattern in OUTPUTS)


def clear(folder: Path) -> None:
    """Remove everything in ``folder`` but its lock (``--overwrite``)."""
    for path in folder.iterdir():
        if path.name != LOCK:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def plan(folder: Path, method: str, config: Any, overwrite: bool = False,
         latest: Path | None = None) -> Plan:
    """Decide (and prepare ``folder`` for) what this command does; ``latest`` is the run's newest checkpoint.

    ``resume_from``: ``auto`` continues the same run (newest checkpoint, or a finished run's
    result), ``latest`` / a path resume as given, ``None`` starts afresh. A folder holding
    another run, or this run when ``resume_from`` is ``None``, is refused without ``overwrite``.
    """
    resume_from = config.loop.resume_from
    record = read_record(folder)
    if not holds_outputs(folder):
        return Plan("start") if resume_from in (None, "auto") else _explicit(resume_from, latest, folder)
    if record is None:
        changed = [f"outputs but no {RECORD}: an older aihf's or another tool's"]
    else:
        changed = ([f"method: {record.get('method')!r} -> {method!r}"] if record.get("method") != method else [])
        changed += differences(record.get("config", {}), _plain(config), defaults=type(config)())
    if changed or (resume_from is None and holds_outputs(folder)):
        if not overwrite:
            what = ("another run (" + "; ".join(changed[:6]) + (" ..." if len(changed) > 6 else "") + ")") if changed \
                else "this run already, and loop.resume_from is null"
            raise RunFolderError(
                f"{folder} holds {what}: pass --overwrite (train(..., overwrite=True)) to replace it, "
                "choose another loop.output_dir, or set loop.resume_from=auto to continue the same run"
            )
        log.warning("%s: replacing the run it held (--overwrite)", folder)
        clear(folder)
        return Plan("start")
    if resume_from == "auto":
        finished = record.get("status") == "finished" and record.get("step", -1) >= config.loop.max_steps
        if finished:
            return Plan("finished")
        return Plan("resume", latest) if latest is not None else Plan("start")
    return _explicit(resume_from, latest, folder)


def _explicit(resume_from: str | None, latest: Path | None, folder: Path) -> Plan:
    if resume_from is None:
        return Plan("start")
    if resume_from == "latest":
        if latest is None:
            raise RunFolderError(f"loop.resume_from=latest but {folder}/checkpoints holds no checkpoint")
        return Plan("resume", latest)
    path = Path(resume_from)
    if not (path / "trainer_state.json").is_file():
        raise RunFolderError(f"loop.resume_from={resume_from}: not a checkpoint folder (no trainer_state.json)")
    return Plan("resume", path)


def write_record(folder: Path, method: str, config: Any, processes: int, status: str, step: int = 0,
                 result_dir: str | None = None, reward_model: str | None = None) -> None:
    """Write ``run.json`` (atomically) and ``config.yaml`` (the config as given) for the run in
    ``folder``; ``result_dir``: the folder with the run's ``final/`` and ``metrics.json`` (rlhf:
    its policy stage); ``reward_model``: where the run's reward started (a stage it trained)."""
    from aihf.config import save_config
    from aihf.runtime import provenance

    record = read_record(folder) or {}
    record.update(method=method, config=_plain(config), processes=processes, status=status, step=step,
                  result_dir=result_dir or str(folder), reward_model=reward_model or config.model.reward_model,
                  versions=provenance(), host=socket.gethostname(),
                  **{"started" if status == "running" else "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    tmp = folder / f".{RECORD}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(folder / RECORD)
    save_config(config, folder / "config.yaml")


def check_free_space(folder: Path, needed_bytes: int) -> None:
    """Refuse to start when the file system of ``folder`` has less than ``needed_bytes`` free."""
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise RunFolderError(
            f"{folder}: {free / 2**30:.2f} GiB free, the run's checkpoints and final weights need about "
            f"{needed_bytes / 2**30:.2f} GiB: free space, lower loop.keep_checkpoints, or choose another loop.output_dir"
        )
