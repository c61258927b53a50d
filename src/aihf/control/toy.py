"""A tiny continuous-control task whose expert is known, for tests and examples.

``ContextTarget``: each step shows a context c ~ U[-1, 1]^2 (fresh every step, so the task is
a contextual bandit unrolled for ``horizon`` steps); the action a in [-1, 1] earns the true
reward -(a - 0.8 c_0)^2. The expert plays a* = 0.8 c_0 (return 0); a policy that ignores the
context and plays 0 earns about -0.21 per step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

SLOPE = 0.8


class ContextTarget(gym.Env):
    """See the module docstring."""

    def __init__(self, horizon: int = 20):
        self.horizon = horizon
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._obs = np.zeros(2, np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action):
        reward = -float((np.asarray(action).reshape(-1)[0] - expert_action(self._obs)[0]) ** 2)
        self._t += 1
        self._obs = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self._obs.copy(), reward, False, self._t >= self.horizon, {}


def expert_action(obs: np.ndarray) -> np.ndarray:
    """a*(c) = 0.8 c_0."""
    return np.array([SLOPE * obs[0]], np.float32)



def _toy_parts(n_demos: int, demo_slope: float, n_prefs: int, segment_len: int, temperature: float, seed: int):
    from aihf.control.preferences import SegmentPool, bradley_terry_pairs
    from aihf.data import TransitionSet

    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n_demos, 2)).astype(np.float32)
    demos = TransitionSet(obs, demo_slope * obs[:, :1])
    n_seg = 2 * n_prefs
    seg_obs = rng.uniform(-1, 1, (n_seg, segment_len, 2)).astype(np.float32)
    seg_act = rng.uniform(-1, 1, (n_seg, segment_len, 1)).astype(np.float32)
    returns = -((seg_act[..., 0] - SLOPE * seg_obs[..., 0]) ** 2).sum(axis=1)
    pool = SegmentPool(seg_obs, seg_act, returns, np.zeros(n_seg, np.int64))
    return demos, pool, bradley_terry_pairs(returns, n_prefs, temperature, rng)


def toy_data(n_demos: int, demo_slope: float, n_prefs: int, segment_len: int = 5,
             temperature: float = 1.0, seed: int = 0):
    """Data for ``ContextTarget``: demonstrations a = demo_slope * c_0 (the expert's 0.8 when
    demo_slope = 0.8; lower is a worse demonstrator) and ``n_prefs`` segment preferences
    between segments of uniformly random actions, labelled by ``bradley_terry_pairs``.
    Returns (TransitionSet, SegmentPreferenceSet)."""
    demos, pool, pairs = _toy_parts(n_demos, demo_slope, n_prefs, segment_len, temperature, seed)
    return demos, pool.preferences(pairs)


def write_toy_data_dir(path, n_demos: int = 1000, demo_slope: float = 0.8, low_slope: float = 0.2,
                       n_prefs: int = 500, horizon: int = 20, seed: int = 0) -> None:
    """A data directory for ``aihf/ContextTarget-v0`` in the layout of ``expert_data``; the
    demonstrators' returns are the exact -(slope - 0.8)^2 * horizon / 3 (E[c_0^2] = 1/3), for
    ``demo_slope`` (demos.npz) and ``low_slope`` (demos_low.npz)."""
    from aihf.control.expert_data import write_data_dir

    demos, pool, pairs = _toy_parts(n_demos, demo_slope, n_prefs, 5, 1.0, seed)
    low, _, _ = _toy_parts(n_demos, low_slope, 1, 5, 1.0, seed + 1)
    def exact_return(slope: float) -> float:
        return -((slope - SLOPE) ** 2) * horizon / 3

    write_data_dir(path, demos, low, pool, pairs, {"demonstrator_return_mean": exact_return(demo_slope),
                                                   "low_return_mean": exact_return(low_slope), "toy": True})
