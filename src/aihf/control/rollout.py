"""Rolling out policies in gymnasium environments: episodes, returns, transitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

Act = Callable[[np.ndarray], np.ndarray]


@dataclass
class Episode:
    """One episode: observations s_t, actions a_t, true rewards r_t (t = 0..T-1), and whether
    it ended by termination (not truncation)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def policy_actor(policy, deterministic: bool = True) -> Act:
    """An SB3 policy as a function observation -> action."""
    return lambda obs: policy.predict(obs, deterministic=deterministic)[0]


def run_episode(act: Act, env: gym.Env, seed: int | None = None) -> Episode:
    """Roll out one episode of ``act`` in ``env`` (reset with ``seed``)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [], [], []
    while True:
        action = np.asarray(act(obs), dtype=np.float32)
        observations.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            return Episode(np.asarray(observations, np.float32), np.asarray(actions, np.float32),
                           np.asarray(rewards, np.float32), bool(terminated))


def evaluate_policy_return(policy, env: gym.Env, episodes: int, seed: int,
                           deterministic: bool = True) -> list[float]:
    """True (environment) return of ``episodes`` episodes, reset seeds seed, seed+1, ..."""
    act = policy_actor(policy, deterministic)
    return [run_episode(act, env, seed + i).ret for i in range(episodes)]
