"""A replay buffer whose rewards come from the *current* reward net when a batch is sampled.

SB3's ``SAC.train`` draws every minibatch through ``replay_buffer.sample``; this subclass
replaces the stored (true) rewards of that minibatch with ``r_theta(s, a) + shift``
computed at sampling time, so each SAC update of Algorithm 1's policy step (docs/method.md
section 3, step 1) uses the reward of the latest reward step, never a stale one.

The buffer stores SAC's actions rescaled to [-1, 1]; the reward net sees environment
actions, so they are mapped back with the action space's bounds.

``shift``: the data cannot pin down the reward's level (adding a constant to every
r(s, a) leaves both terms of docs/method.md section 2 unchanged for equal-length segments and
transition batches), but in environments that end early (Hopper falls) the sign of the
reward decides whether the policy wants to survive. ``shift`` is that free level, the same
for every learned-reward method.

``reward_scaler`` (``reward_scale.RewardScaler`` with ``center=False``; ``loop.reward_normalize``):
every sampled r_theta is folded into running moments and divided by their standard
deviation s before the shift, r' = r_theta / s + shift, so that SAC's fixed entropy
temperature beta weighs the entropy against a reward of unit scale whatever the scale the
data left it with (RLHF's reward is the true one divided by the labellers' temperature).
The moments cover every minibatch sampled so far (the same rule as the language-model
policy step's), and are part of a run's resume point (``run_checkpoint``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from aihf.reward_scale import RewardScaler

RewardFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def control_reward_scaler(moments: list[float] | None = None) -> RewardScaler:
    """The scaler ``RelabelledReplayBuffer`` takes: no centring (the level stays), fresh or with
    the three moments a resume point saved (``RewardScaler.state``)."""
    return RewardScaler(center=False) if moments is None else RewardScaler.from_state(moments, center=False)


class RelabelledReplayBuffer(ReplayBuffer):
    """``ReplayBuffer`` that relabels sampled rewards with ``reward_fn`` (when set), scaled by
    ``reward_scaler`` (when set) and shifted by ``reward_shift``."""

    def __init__(self, *args, reward_fn: RewardFn | None = None, reward_shift: float = 0.0,
                 reward_scaler: RewardScaler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.action_space, spaces.Box):
            raise TypeError("RelabelledReplayBuffer needs a Box action space")
        if reward_scaler is not None and reward_scaler.center:
            raise ValueError("a control reward keeps its level: pass control_reward_scaler() (center=False)")
        self.reward_fn = reward_fn
        self.reward_shift = reward_shift
        self.reward_scaler = reward_scaler
        low, high = self.action_space.low, self.action_space.high
        self._act_low = torch.as_tensor(low, dtype=torch.float32)
        self._act_span = torch.as_tensor(high - low, dtype=torch.float32)

    def env_actions(self, scaled: torch.Tensor) -> torch.Tensor:
        """[-1, 1] buffer actions -> environment actions: low + (a + 1) / 2 * (high - low)."""
        return self._act_low + 0.5 * (scaled + 1.0) * self._act_span

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        batch = super().sample(batch_size, env=env)
        if self.reward_fn is None:
            return batch
        with torch.no_grad():
            obs, act = batch.observations.float(), self.env_actions(batch.actions.float())
            rewards = self.reward_fn(obs, act)
            if self.reward_scaler is not None:
                self.reward_scaler.update(rewards)
                rewards = self.reward_scaler(rewards)
            rewards = rewards + self.reward_shift
        return batch._replace(rewards=rewards.reshape(-1, 1).to(batch.rewards.dtype))

    def recent(self, n: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` (state, environment action) pairs drawn from the last ``n`` stored
        transitions: samples of the current policy pi_k (Algorithm 1, step 2)."""
        size = self.buffer_size if self.full else self.pos
        n = min(n, size)
        inds = (self.pos - 1 - np.random.randint(0, n, size=batch_size)) % self.buffer_size
        obs = self.to_torch(self.observations[inds, 0, :]).float()
        act = self.to_torch(self.actions[inds, 0, :]).float()
        return obs, self.env_actions(act)
