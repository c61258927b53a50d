"""Behaviour cloning (docs/method.md section 5, "Control"): a Gaussian policy fitted to the
demonstrations by maximum likelihood,

    min_phi  -mean_{(s, a) in D} log N( a ; mu_phi(s), diag(exp(2 log_std)) ),

mu_phi an MLP, log_std a learned state-independent vector. It acts with its mean, clipped
to the action bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aihf.config import Settings, setting
from aihf.data import TransitionSet
from aihf.runtime import check_finite


@dataclass
class BCConfig(Settings):
    """Behaviour cloning's network and optimiser."""

    hidden: list[int] = setting(factory=lambda: [256, 256], help="hidden sizes of mu_phi")
    lr: float = setting(1e-3, gt=0, help="Adam learning rate")
    batch_size: int = setting(256, gt=0, help="demonstration transitions per update")
    updates: int = setting(5_000, gt=0, help="Adam updates")


class GaussianPolicy(nn.Module):
    """mu_phi(s) (MLP, ReLU) and a state-independent log-std."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]):
        super().__init__()
        sizes = [obs_dim, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.mean = nn.Sequential(*layers, nn.Linear(sizes[-1], act_dim))
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.mean(obs), self.log_std.exp()).log_prob(act).sum(-1)


def train_bc(demos: TransitionSet, cfg: BCConfig, seed: int) -> GaussianPolicy:
    """Fit ``GaussianPolicy`` to ``demos`` with Adam for ``cfg.updates`` minibatch steps."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs, act = torch.tensor(np.asarray(demos.observations)), torch.tensor(np.asarray(demos.actions))
    policy = GaussianPolicy(obs.shape[1], act.shape[1], cfg.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    for step in range(cfg.updates):
        idx = torch.as_tensor(rng.integers(0, len(obs), size=cfg.batch_size))
        loss = -policy.log_prob(obs[idx], act[idx]).mean()
        check_finite(loss, "behaviour-cloning loss", step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return policy


def bc_actor(policy: GaussianPolicy, low: np.ndarray, high: np.ndarray):
    """The policy's mean action, clipped to [low, high], as observation -> action."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            mean = policy.mean(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return np.clip(mean, low, high)

    return act
