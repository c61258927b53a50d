"""The control reward r_theta(s, a): an MLP on the concatenated state and action
(docs/method.md section 6: hidden sizes (64, 64), ReLU; trained with Adam, lr 1e-4).

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
    """r_theta(s, a) = MLP([s; a]) -> scalar, ReLU between hidden layers."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (64, 64)):
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, tuple(hidden)
        sizes = [obs_dim + act_dim, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """r(s, a) for tensors [..., obs_dim] and [..., act_dim]; returns shape [...]."""
        return self.mlp(torch.cat([obs, act], dim=-1)).squeeze(-1)

    def segment_reward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """r(tau) = sum_t r(s_t, a_t) for segments [N, L, dim]; returns shape [N]."""
        return self(obs, act).sum(dim=-1)

    def save(self, path: str | Path) -> None:
        """Weights to safetensors, with the sizes needed by ``load`` as metadata."""
        meta = {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden)}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(path), metadata={"reward_net": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path) -> "RewardNet":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["reward_net"])
        net = cls(meta["obs_dim"], meta["act_dim"], tuple(meta["hidden"]))
        net.load_state_dict(load_file(str(path)))
        return net
