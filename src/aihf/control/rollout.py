"""Rolling out policies in gymnasium environments: episodes (as the data layer's
``Trajectory``, one representation of a trajectory for data and rollouts), returns."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from aihf.data import Trajectory

Act = Callable[[np.ndarray], np.ndarray]


def policy_actor(policy, deterministic: bool = True) -> Act:
    """An SB3 policy as a function observation -> action."""
    return lambda obs: policy.predict(obs, deterministic=deterministic)[0]


def run_episode(act: Act, env: gym.Env, seed: int | None = None) -> Trajectory:
    """Roll out one episode of ``act`` in ``env`` (reset with ``seed``): observations s_t,
    actions a_t, true rewards r_t (t = 0..T-1) and ``terminals``, true only at the last step
    of an episode that ended by termination (a fall), not by truncation (a time limit)."""
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [], [], []
    while True:
        action = np.asarray(act(obs), dtype=np.float32)
        observations.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            terminals = np.zeros(len(rewards), bool)
            terminals[-1] = terminated
            return Trajectory(np.asarray(observations, np.float32), np.asarray(actions, np.float32),
                              np.asarray(rewards, np.float32), terminals)


def evaluation_episodes(policy, env: gym.Env, episodes: int, seed: int,
                        deterministic: bool = True) -> list[Trajectory]:
    """``episodes`` episodes of ``policy`` (deterministic by default), reset seeds seed, seed+1, ..."""
    act = policy_actor(policy, deterministic)
    return [run_episode(act, env, seed + i) for i in range(episodes)]


def evaluate_policy_return(policy, env: gym.Env, episodes: int, seed: int,
                           deterministic: bool = True) -> list[float]:
    """True (environment) return of ``evaluation_episodes``."""
    return [e.ret for e in evaluation_episodes(policy, env, episodes, seed, deterministic)]
