"""Rewards put on a known scale before a policy step weighs them against beta's regulariser.

A learned reward is identified only up to what its data fix: a Bradley-Terry reward up to the
labellers' temperature (r_theta ~ r / T), a reward still training up to its current size. Both
policy steps weigh it against beta (docs/method.md section 3): the KL to the reference on the
language-model side, SAC's entropy on the control side. Without a fixed scale, beta would
mean a different trade-off for every reward. ``RewardScaler`` keeps the running mean m and
standard deviation s of every reward a policy step has seen (Chan et al.'s parallel update of
the moments, so batches of any size fold in exactly) and maps

    r' = clip((r - m) / s, -c, c)     (center=True: the language-model policy step, aihf.lm.rl)
    r' = clip(r / s, -c, c)           (center=False: control, aihf.control.relabel)

Control keeps the level: where an episode ends early (Hopper falls), the sign of the reward
decides whether the policy wants to live, and subtracting m would change it (docs/control.md,
"The reward's scale"); RLOO's leave-one-out baseline makes m irrelevant on the language side.
"""

from __future__ import annotations

import math

import torch


class RewardScaler:
    """Running moments of rewards and the normalisation above. ``enabled=False`` passes rewards
    through (the clip still applies when set). The state is three numbers (``state()`` /
    ``load_state()``) for checkpoints."""

    def __init__(self, enabled: bool = True, clip: float | None = None, eps: float = 1e-6,
                 center: bool = True) -> None:
        if clip is not None and not clip > 0:
            raise ValueError(f"the reward clip must be > 0 or None, got {clip}")
        self.enabled, self.clip, self.eps, self.center = enabled, clip, eps, center
        self.reset()

    def reset(self) -> None:
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    @property
    def std(self) -> float:
        """s: the standard deviation of every reward folded in (1 before two have been)."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0

    def update(self, rewards: torch.Tensor) -> None:
        """Fold a batch of rewards into the running moments."""
        values = rewards.detach().double().reshape(-1)
        n = values.numel()
        if n == 0:
            return
        mean = values.mean()
        batch_mean, batch_m2 = torch.stack([mean, ((values - mean) ** 2).sum()]).tolist()  # one read of the device
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            rewards = ((rewards - self.mean) if self.center else rewards) / (self.std + self.eps)
        return rewards.clamp(-self.clip, self.clip) if self.clip is not None else rewards

    def state(self) -> torch.Tensor:
        return torch.tensor([self.count, self.mean, self.m2], dtype=torch.float64)

    def load_state(self, state: torch.Tensor) -> None:
        self.count, self.mean, self.m2 = (float(v) for v in state.tolist())

    @classmethod
    def from_state(cls, state: torch.Tensor | list[float], **kwargs) -> "RewardScaler":
        """A scaler built with ``kwargs`` whose moments are ``state`` (``state()``'s three numbers,
        as a tensor or as the list a JSON checkpoint holds)."""
        scaler = cls(**kwargs)
        scaler.load_state(torch.as_tensor(state, dtype=torch.float64))
        return scaler
