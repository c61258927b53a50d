"""Control records (docs/method.md section 1): trajectories, segment preferences, and array sets.

* :class:`Trajectory`: ``observations`` [T, obs_dim], ``actions`` [T, act_dim], optional
  ``rewards`` [T] (float) and ``terminals`` [T] (bool), T >= 1.
* :class:`SegmentPreference`: two segments of equal dims, preferred first; their lengths
  may differ (a segment may end where its episode ends).
* :class:`TransitionSet`: demonstration transitions, ``observations`` [N, obs_dim] and
  ``actions`` [N, act_dim].
* :class:`SegmentPreferenceSet`: ``obs_w``/``act_w`` (preferred) and ``obs_l``/``act_l``
  (rejected), each [N, L, dim], and optionally ``len_w``/``len_l`` [N]: how many of the L
  steps are real (the rest is padding); absent, every segment has all L steps.

Every float array is stored as a read-only ``float32`` copy; integer and bool inputs are
cast, anything else (strings, objects, complex) is an error, and so is NaN or inf. Sets
are saved as compressed ``.npz`` holding exactly the arrays above and loaded with
``allow_pickle=False`` (:func:`load_npz`, which other ``.npz`` readers share). Errors are
:class:`~aihf.data.errors.DataError` whose ``field`` is the array name and whose ``row``
is the 0-based position along the first axis; a loaded file's errors name the file too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from aihf.data.errors import DataError

S = TypeVar("S", bound="_ArraySet")


def _array(value: Any, field: str, rank: int, dtype: type | None = np.float32) -> np.ndarray:
    """A read-only copy of ``value`` with ``rank`` dims, numeric, finite, at least one row.

    ``dtype=None``: checked the same way but returned as given (``np.asarray``, no copy)."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise DataError(f"cannot be read as an array ({err})", field=field) from None
    if not (np.issubdtype(raw.dtype, np.number) or raw.dtype == np.bool_) or np.iscomplexobj(raw):
        raise DataError(f"expected a real numeric array, got dtype {raw.dtype}", field=field)
    if dtype is None:
        if raw.ndim != rank:
            raise DataError(f"expected {rank} dims, got shape {raw.shape}", field=field)
        if raw.shape[0] == 0:
            raise DataError("is empty (first dim is 0)", field=field)
        bad = ~np.isfinite(raw.reshape(len(raw), -1)).all(axis=1)
        if bad.any():
            raise DataError("contains NaN or inf", field=field, row=int(np.argmax(bad)))
        return raw
    if raw.ndim != rank:
        raise DataError(f"expected {rank} dims, got shape {raw.shape}", field=field)
    if raw.shape[0] == 0:
        raise DataError("is empty (first dim is 0)", field=field)
    if dtype is np.bool_ and raw.dtype != np.bool_:
        flat = raw.reshape(len(raw), -1)
        bad = ~np.isin(flat, (0, 1)).all(axis=1)
        if bad.any():
            raise DataError("expected 0/1 or booleans", field=field, row=int(np.argmax(bad)))
    array = np.array(raw, dtype=dtype)
    if dtype is not np.bool_:
        bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError("contains NaN or inf", field=field, row=row)
    array.setflags(write=False)
    return array


def _same_length(arrays: dict[str, np.ndarray | None], axis: int = 0) -> None:
    """All given arrays agree on ``shape[axis]``; the first one sets the expected size."""
    present = {k: v for k, v in arrays.items() if v is not None}
    (ref_name, ref), *rest = present.items()
    for name, array in rest:
        if array.shape[axis] != ref.shape[axis]:
            raise DataError(
                f"has {array.shape[axis]} along axis {axis}, but {ref_name} has {ref.shape[axis]}", field=name
            )


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A trajectory or segment: ``observations`` [T, obs_dim], ``actions`` [T, act_dim]."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray | None = None
    terminals: np.ndarray | None = None

    def __post_init__(self) -> None:
        specs = {
            "observations": (2, np.float32),
            "actions": (2, np.float32),
            "rewards": (1, np.float32),
            "terminals": (1, np.bool_),
        }
        arrays = {}
        for name, (rank, dtype) in specs.items():
            value = getattr(self, name)
            if value is not None or name in ("observations", "actions"):
                arrays[name] = _array(value, name, rank, dtype)
                object.__setattr__(self, name, arrays[name])
        _same_length(arrays)

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def ret(self) -> float:
        """The return sum_t r_t (needs ``rewards``)."""
        if self.rewards is None:
            raise ValueError("this trajectory has no rewards")
        return float(self.rewards.sum())

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]


@dataclass(frozen=True, eq=False)
class SegmentPreference:
    """Two segments of the same dims (lengths may differ); ``preferred`` (tau_w) is preferred
    over ``rejected`` (tau_l)."""

    preferred: Trajectory
    rejected: Trajectory

    def __post_init__(self) -> None:
        w, l = self.preferred, self.rejected
        if (w.obs_dim, w.act_dim) != (l.obs_dim, l.act_dim):
            raise DataError(
                f"segment has (obs_dim, act_dim) = {(l.obs_dim, l.act_dim)}, "
                f"but the preferred one has {(w.obs_dim, w.act_dim)}",
                field="rejected",
            )


NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def load_npz(path: str | Path, names: Sequence[str], *, exact: bool = False, what: str = "the file",
             optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``names`` (and those of ``optional`` that the file holds) of an ``.npz``
    file, read with ``allow_pickle=False``.

    Every failure is a :class:`DataError` naming the file (and the array where there is
    one): a missing file, a directory, a file that is not an ``.npz`` archive (a pickle, a
    single ``.npy`` array, garbage), a missing array, an object array (it would need
    pickle: refused, never loaded), an unreadable member. ``exact``: other arrays in the
    file are errors too (else ignored). Values are not checked here.
    """
    source = str(path)
    path = Path(path)
    if not path.exists():
        raise DataError("no such file", source=source)
    if path.is_dir():
        raise DataError("is a directory, not an .npz file", source=source)
    try:
        npz = np.load(path, allow_pickle=False)
    except NPZ_ERRORS as err:
        if "pickle" in str(err).lower():  # neither a zip archive nor .npy: numpy's last resort is pickle
            raise DataError(
                "not a readable .npz file: neither a zip archive of arrays nor a .npy array "
                "(numpy would read it as a pickle, which is refused)", source=source,
            ) from None
        raise DataError(f"not a readable .npz file ({err})", source=source) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(
            f"is a single .npy array (shape {getattr(npz, 'shape', '?')}), not an .npz archive of named arrays "
            f"{list(names)}", source=source,
        )
    with npz:
        unknown = sorted(set(npz.files) - set(names) - set(optional))
        if exact and unknown:
            raise DataError(f"unknown array; {what} holds {[*names, *optional]}", source=source, field=unknown[0])
        missing = [n for n in names if n not in npz.files]
        if missing:
            raise DataError(f"array is missing; the file holds {sorted(npz.files)}", source=source, field=missing[0])
        arrays = {}
        for name in [*names, *(n for n in optional if n in npz.files)]:
            try:
                arrays[name] = npz[name]
            except ValueError as err:  # object arrays need pickle: refused
                raise DataError(
                    f"cannot be loaded without pickle: an object array, never unpickled here ({err}); "
                    "save it as a numeric array",
                    source=source, field=name,
                ) from None
            except NPZ_ERRORS as err:
                raise DataError(f"cannot be read ({err})", source=source, field=name) from None
    return arrays


@dataclass(frozen=True, eq=False)
class _ArraySet:
    """Shared validation and ``.npz`` I/O for sets of same-shaped arrays (first axis = item).

    ``OPTIONAL``: fields that may be None, with their rank; present, they are checked as
    numeric arrays and kept as given (their own rules are the subclass's ``_check``)."""

    RANK: ClassVar[int]
    OPTIONAL: ClassVar[dict[str, int]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.OPTIONAL:
                if value is not None:
                    object.__setattr__(self, f.name, _array(value, f.name, self.OPTIONAL[f.name], dtype=None))
                continue
            object.__setattr__(self, f.name, _array(value, f.name, self.RANK))
        self._check()

    def _check(self) -> None:
        _same_length(self._arrays())

    def _arrays(self) -> dict[str, np.ndarray]:
        """The arrays present (an optional field left None is absent)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))

    def save(self, path: str | Path) -> None:
        """Write the arrays to a compressed ``.npz`` (no pickle)."""
        np.savez_compressed(Path(path), **self._arrays())

    @classmethod
    def load(cls: type[S], path: str | Path) -> S:
        """Read a set saved by :meth:`save`; errors name the file and the array."""
        required = [f.name for f in dataclasses.fields(cls) if f.name not in cls.OPTIONAL]
        arrays = load_npz(path, required, exact=True, what=cls.__name__, optional=list(cls.OPTIONAL))
        try:
            return cls(**arrays)
        except DataError as err:
            raise err.at(source=str(path)) from None


@dataclass(frozen=True, eq=False)
class TransitionSet(_ArraySet):
    """Demonstration transitions: ``observations`` [N, obs_dim], ``actions`` [N, act_dim]."""

    RANK: ClassVar[int] = 2
    observations: np.ndarray
    actions: np.ndarray

    @classmethod
    def from_trajectories(cls, trajectories: Sequence[Trajectory]) -> TransitionSet:
        """Concatenate trajectories; their dims must agree (``row`` = the trajectory index)."""
        _check_dims(trajectories, "trajectories")
        return cls(
            np.concatenate([t.observations for t in trajectories]),
            np.concatenate([t.actions for t in trajectories]),
        )


@dataclass(frozen=True)
class DistinctSegments:
    """A preference set as distinct segments and pairs of indices into them (see
    ``SegmentPreferenceSet.distinct_segments``): ``obs`` [U, L, obs_dim], ``act`` [U, L,
    act_dim], ``mask`` [U, L] (1 on real steps), and ``preferred``, ``rejected`` [N]: pair k
    prefers segment ``preferred[k]`` to segment ``rejected[k]``."""

    obs: np.ndarray
    act: np.ndarray
    mask: np.ndarray
    preferred: np.ndarray
    rejected: np.ndarray


@dataclass(frozen=True, eq=False)
class SegmentPreferenceSet(_ArraySet):
    """N segment pairs padded to length L: ``obs_w``, ``act_w`` (preferred), ``obs_l``,
    ``act_l`` (rejected), and optionally the real lengths ``len_w``, ``len_l`` (integers in
    [1, L]; steps from there on are padding, which no reward counts: ``mask_w`` / ``mask_l``)."""

    RANK: ClassVar[int] = 3
    OPTIONAL: ClassVar[dict[str, int]] = {"len_w": 1, "len_l": 1}
    obs_w: np.ndarray
    act_w: np.ndarray
    obs_l: np.ndarray
    act_l: np.ndarray
    len_w: np.ndarray | None = None
    len_l: np.ndarray | None = None

    def _check(self) -> None:
        super()._check()
        _same_length({k: getattr(self, k) for k in ("obs_w", "act_w", "obs_l", "act_l")}, axis=1)  # L
        _same_length({"obs_w": self.obs_w, "obs_l": self.obs_l}, axis=2)
        _same_length({"act_w": self.act_w, "act_l": self.act_l}, axis=2)
        if (self.len_w is None) != (self.len_l is None):
            raise DataError("len_w and len_l come together (or neither)", field="len_l" if self.len_w is not None else "len_w")
        for name in ("len_w", "len_l"):
            if getattr(self, name) is not None:
                check_segment_lengths(getattr(self, name), self.obs_w.shape[1], name)

    def mask_w(self) -> np.ndarray:
        """[N, L] float32: 1 for the preferred segments' real steps, 0 for padding."""
        return _mask(self.len_w, self.obs_w.shape[:2])

    def mask_l(self) -> np.ndarray:
        """[N, L] float32: 1 for the rejected segments' real steps, 0 for padding."""
        return _mask(self.len_l, self.obs_l.shape[:2])

    def distinct_segments(self) -> DistinctSegments:
        """The segments the pairs compare, each stored once (pairs drawn from a pool of S
        segments repeat them: the shipped MuJoCo data compare 1,200 segments in 20,000 pairs).
        Two sides are the same segment when their lengths and real steps are equal byte for
        byte (padding is not compared). Order: first appearance, every preferred side
        (pairs 0..N-1) before the rejected ones."""
        n, longest = len(self.obs_w), self.obs_w.shape[1]
        sides = ((self.obs_w, self.act_w, self.len_w), (self.obs_l, self.act_l, self.len_l))
        first: dict[bytes, int] = {}  # digest of a segment's real steps -> its place among the distinct ones
        side_of, pair_of, index = [], [], np.empty((2, n), np.int64)
        for side, (obs, act, lengths) in enumerate(sides):
            for i in range(n):
                steps = longest if lengths is None else int(lengths[i])
                digest = hashlib.blake2b(obs[i, :steps].tobytes() + act[i, :steps].tobytes() + steps.to_bytes(4, "little"),
                                         digest_size=20).digest()
                if digest not in first:
                    first[digest] = len(side_of)
                    side_of.append(side)
                    pair_of.append(i)
                index[side, i] = first[digest]
        rejected, pair = np.array(side_of, bool), np.array(pair_of, np.int64)

        def gather(w: np.ndarray, l: np.ndarray) -> np.ndarray:
            return np.where(rejected.reshape(-1, *[1] * (w.ndim - 1)), l[pair], w[pair])

        return DistinctSegments(gather(self.obs_w, self.obs_l), gather(self.act_w, self.act_l),
                                gather(self.mask_w(), self.mask_l()), index[0], index[1])

    @classmethod
    def from_pairs(cls, pairs: Sequence[SegmentPreference]) -> SegmentPreferenceSet:
        """Stack segment pairs (dims must agree: ``row`` = pair index), padded with zeros to
        the longest segment; lengths are kept when they differ."""
        if not pairs:
            raise DataError("no segment pairs", field="pairs")
        _check_dims([p.preferred for p in pairs], "pairs")
        segments = [t for p in pairs for t in (p.preferred, p.rejected)]
        longest = max(len(t) for t in segments)

        def padded(trajectories: list[Trajectory], name: str) -> np.ndarray:
            return np.stack([np.pad(getattr(t, name), ((0, longest - len(t)), (0, 0))) for t in trajectories])

        w, l = [p.preferred for p in pairs], [p.rejected for p in pairs]
        lengths = {}
        if any(len(t) != longest for t in segments):
            lengths = {"len_w": np.array([len(t) for t in w]), "len_l": np.array([len(t) for t in l])}
        return cls(padded(w, "observations"), padded(w, "actions"), padded(l, "observations"), padded(l, "actions"),
                   **lengths)

    def __getitem__(self, i: int) -> SegmentPreference:
        n_w = self.obs_w.shape[1] if self.len_w is None else int(self.len_w[i])
        n_l = self.obs_l.shape[1] if self.len_l is None else int(self.len_l[i])
        return SegmentPreference(Trajectory(self.obs_w[i, :n_w], self.act_w[i, :n_w]),
                                 Trajectory(self.obs_l[i, :n_l], self.act_l[i, :n_l]))


def check_segment_lengths(lengths: np.ndarray, longest: int, field: str) -> None:
    """Real lengths of padded segments: integers in [1, ``longest``]; a DataError names the
    first bad one (``row``) and ``field``."""
    if not np.issubdtype(lengths.dtype, np.integer):
        raise DataError(f"expected integer segment lengths, got dtype {lengths.dtype}", field=field)
    bad = (lengths < 1) | (lengths > longest)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"length {int(lengths[row])} is outside [1, {longest}]", field=field, row=row)


def _mask(lengths: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if lengths is None:
        return np.ones(shape, np.float32)
    return (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.float32)


def _check_dims(trajectories: Sequence[Trajectory], field: str) -> None:
    if not trajectories:
        raise DataError(f"no {field}", field=field)
    first = trajectories[0]
    for i, t in enumerate(trajectories):
        if (t.obs_dim, t.act_dim) != (first.obs_dim, first.act_dim):
            raise DataError(
                f"(obs_dim, act_dim) = {(t.obs_dim, t.act_dim)} differs from item 0's {(first.obs_dim, first.act_dim)}",
                field=field,
                row=i,
            )
