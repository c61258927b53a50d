"""Synthetic preference labels on trajectory segments (docs/method.md section 1, control data).

A pair of segments (tau_a, tau_b) with true returns R_a, R_b is labelled by sampling the
Bradley-Terry model of docs/method.md section 2 on the true return:
    P(tau_a preferred) = sigma( (R_a - R_b) / temperature )
(temperature -> 0: the higher-return segment always wins; large: labels are coin flips).
Segments live in a pool; a preference is a pair of pool indices (winner, loser), so many
pairs share storage. ``SegmentPool.preferences`` turns pairs into the data layer's
``SegmentPreferenceSet``.

Files (``expert_data``): ``segments.npz`` holds the pool (``obs``, ``act``, ``returns``,
``source``, and ``lengths`` when segments end early) and ``prefs.npz`` the ``pairs``; both are read without pickle
(``aihf.data.trajectories.load_npz``) and checked, so a bad value is a ``DataError``
naming the file, the segment or pair index (``row``) and the array (``field``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aihf.data import DataError, SegmentPreferenceSet
from aihf.data.builders import bradley_terry_first_wins
from aihf.data.trajectories import _array, _same_length, check_segment_lengths, load_npz

POOL_ARRAYS = ("obs", "act", "returns", "source")
OPTIONAL_POOL_ARRAYS = ("lengths",)


def bradley_terry_pairs(returns: np.ndarray, n_pairs: int, temperature: float,
                        rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` random pairs of distinct pool indices, ordered (winner, loser) by a
    Bradley-Terry draw on ``returns``; shape [n_pairs, 2], int64."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(returns)
    a = rng.integers(0, n, size=n_pairs)
    b = (a + rng.integers(1, n, size=n_pairs)) % n  # b != a
    a_wins = bradley_terry_first_wins(returns[a], returns[b], rng.random(n_pairs), temperature)
    return np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1).astype(np.int64)


def check_pairs(pairs: np.ndarray, n_segments: int | None = None) -> np.ndarray:
    """``pairs`` as given, checked: integer (winner, loser) indices of shape [N, 2], N >= 1,
    each in ``[0, n_segments)`` (when given) and naming two different segments. Errors
    are ``DataError`` with ``field='pairs'`` and ``row`` the pair index."""
    pairs = np.asarray(pairs)
    if not np.issubdtype(pairs.dtype, np.integer):
        raise DataError(f"pair indices must be integers, got dtype {pairs.dtype}", field="pairs")
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise DataError(f"expected shape [N, 2] (winner, loser segment indices), got {pairs.shape}", field="pairs")
    if len(pairs) == 0:
        raise DataError("no pairs (the array is empty)", field="pairs")
    if n_segments is not None:
        bad = ((pairs < 0) | (pairs >= n_segments)).any(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"pair {pairs[row].tolist()} refers to a segment outside the pool's {n_segments} "
                f"(indices 0 to {n_segments - 1})",
                field="pairs", row=row,
            )
    same = pairs[:, 0] == pairs[:, 1]
    if same.any():
        row = int(np.argmax(same))
        raise DataError(f"pair compares segment {int(pairs[row, 0])} with itself", field="pairs", row=row)
    return pairs


@dataclass(frozen=True)
class SegmentPool:
    """Segments ``obs`` [S, L, obs_dim], ``act`` [S, L, act_dim], their true ``returns`` [S],
    the index of the policy that produced each (``source`` [S], integers) and, for segments
    that may end early (where their episode ended), their real ``lengths`` [S] in [1, L]
    (padding after; None: every segment has all L steps).

    Checked on construction (values kept as given, no copies): real numeric, finite, these
    ranks, agreeing sizes; errors are ``DataError`` with ``field`` the array and ``row`` the
    segment index."""

    obs: np.ndarray
    act: np.ndarray
    returns: np.ndarray
    source: np.ndarray
    lengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        ranks = (("obs", 3), ("act", 3), ("returns", 1), ("source", 1), ("lengths", 1))
        for name, rank in ranks:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _array(getattr(self, name), name, rank, dtype=None))
        if not np.issubdtype(self.source.dtype, np.integer):
            raise DataError(f"expected integer policy indices, got dtype {self.source.dtype}", field="source")
        _same_length({name: getattr(self, name) for name in (*POOL_ARRAYS, *OPTIONAL_POOL_ARRAYS)})
        _same_length({"obs": self.obs, "act": self.act}, axis=1)
        if self.lengths is not None:
            check_segment_lengths(self.lengths, self.obs.shape[1], "lengths")

    def __len__(self) -> int:
        return len(self.obs)

    def preferences(self, pairs: np.ndarray) -> SegmentPreferenceSet:
        """The ``SegmentPreferenceSet`` of (winner, loser) index ``pairs`` (checked by :func:`check_pairs`)."""
        pairs = check_pairs(pairs, len(self))
        w, l = pairs[:, 0], pairs[:, 1]
        lengths = {} if self.lengths is None else {"len_w": self.lengths[w], "len_l": self.lengths[l]}
        return SegmentPreferenceSet(self.obs[w], self.act[w], self.obs[l], self.act[l], **lengths)

    def save(self, path: str | Path) -> None:
        lengths = {} if self.lengths is None else {"lengths": self.lengths}
        np.savez_compressed(path, obs=self.obs, act=self.act, returns=self.returns, source=self.source, **lengths)

    @classmethod
    def load(cls, path: str | Path) -> "SegmentPool":
        """Read a pool saved by :meth:`save`; errors name the file, the segment and the array."""
        arrays = load_npz(path, POOL_ARRAYS, what="a segment pool", optional=OPTIONAL_POOL_ARRAYS)
        try:
            return cls(**arrays)
        except DataError as err:
            raise err.at(source=str(path)) from None


def load_pairs(path: str | Path, n_segments: int | None = None) -> np.ndarray:
    """(winner, loser) index pairs saved with ``np.savez_compressed(path, pairs=...)``, checked
    by :func:`check_pairs` (against a pool of ``n_segments`` when given); errors name the file."""
    pairs = load_npz(path, ["pairs"], what="a preference file")["pairs"]
    try:
        return check_pairs(pairs, n_segments)
    except DataError as err:
        raise err.at(source=str(path)) from None
