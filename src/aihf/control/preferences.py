"""Synthetic preference labels on trajectory segments (docs/method.md section 1, control data).

A pair of segments (tau_a, tau_b) with true returns R_a, R_b is labelled by sampling the
Bradley-Terry model of docs/method.md section 2 on the true return:
    P(tau_a preferred) = sigma( (R_a - R_b) / temperature )
(temperature -> 0: the higher-return segment always wins; large: labels are coin flips).
Segments live in a pool; a preference is a pair of pool indices (winner, loser), so many
pairs share storage. ``SegmentPool.preferences`` turns pairs into the data layer's
``SegmentPreferenceSet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aihf.data import DataError, SegmentPreferenceSet


def bradley_terry_pairs(returns: np.ndarray, n_pairs: int, temperature: float,
                        rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` random pairs of distinct pool indices, ordered (winner, loser) by a
    Bradley-Terry draw on ``returns``; shape [n_pairs, 2], int64."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(returns)
    a = rng.integers(0, n, size=n_pairs)
    b = (a + rng.integers(1, n, size=n_pairs)) % n  # b != a
    p_a = 0.5 * (1.0 + np.tanh(0.5 * (returns[a] - returns[b]) / temperature))  # sigma, overflow-free
    a_wins = rng.random(n_pairs) < p_a
    return np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1).astype(np.int64)


@dataclass(frozen=True)
class SegmentPool:
    """Segments ``obs`` [S, L, obs_dim], ``act`` [S, L, act_dim], their true ``returns`` [S]
    and the index of the policy that produced each (``source`` [S])."""

    obs: np.ndarray
    act: np.ndarray
    returns: np.ndarray
    source: np.ndarray

    def preferences(self, pairs: np.ndarray) -> SegmentPreferenceSet:
        """The ``SegmentPreferenceSet`` of (winner, loser) index ``pairs``."""
        if pairs.min() < 0 or pairs.max() >= len(self.obs):
            raise DataError(f"pair index out of range [0, {len(self.obs)})", field="pairs")
        w, l = pairs[:, 0], pairs[:, 1]
        return SegmentPreferenceSet(self.obs[w], self.act[w], self.obs[l], self.act[l])

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, obs=self.obs, act=self.act, returns=self.returns, source=self.source)

    @classmethod
    def load(cls, path: str | Path) -> "SegmentPool":
        with np.load(path, allow_pickle=False) as f:
            return cls(f["obs"], f["act"], f["returns"], f["source"])


def load_pairs(path: str | Path) -> np.ndarray:
    """(winner, loser) index pairs saved with ``np.savez_compressed(path, pairs=...)``."""
    with np.load(path, allow_pickle=False) as f:
        return f["pairs"]
