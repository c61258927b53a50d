"""The control reward r_theta(s, a): an MLP on the concatenated state and action
(docs/method.md section 6: hidden sizes (64, 64), ReLU; trained with Adam, lr 1e-4),
optionally clamped to [-c, c] as ML-IRL's reward for MuJoCo is (c = 10).

A segment's reward is the sum of r_theta(s_t, a_t) over its steps (docs/method.md section 2,
"Control"); ``segment_reward`` computes it for a batch of segments.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class RewardNet(nn.Module):
    """r_theta(s, a) = clamp(MLP([s; a]), -c, c) -> scalar, ReLU between hidden layers;
    ``clamp`` c = None leaves the output unbounded. Outside [-c, c] the gradient is zero, so
    a reward step cannot push a clamped output further."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64), clamp: float | None = None):
        super().__init__()
        if clamp is not None and not clamp > 0:
            raise ValueError(f"reward clamp must be > 0 or None, got {clamp}")
        self.obs_dim, self.act_dim, self.hidden, self.clamp = obs_dim, act_dim, tuple(hidden), clamp
        sizes = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """r(s, a) for tensors [..., obs_dim] and [..., act_dim]; returns shape [...]."""
        out = self.mlp(torch.cat([obs, act], dim=-1)).squeeze(-1)
        return out if self.clamp is None else out.clamp(-self.clamp, self.clamp)

    def segment_reward(self, obs: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """r(tau) = sum_t m_t r(s_t, a_t) for segments [N, L, dim]; ``mask`` m [N, L] is 1 on a
        segment's real steps and 0 on its padding (None: every step counts); returns shape [N]."""
        rewards = self(obs, act)
        return (rewards if mask is None else rewards * mask).sum(dim=-1)

    def save(self, path: str | Path) -> None:
        """Weights to safetensors, with the sizes needed by ``load`` as metadata."""
        meta = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden), "clamp": self.clamp}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path), metadata={"reward_net": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> "RewardNet":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["reward_net"])
        net = cls(meta["obs_dim"], meta["act_dim"], tuple(meta["hidden"]), meta.get("clamp"))
        net.load_state_dict(load_file(str(path)))
        return net
