"""Behaviour cloning (docs/method.md section 5, "Control"): a Gaussian policy fitted to the
demonstrations by maximum likelihood,

    min_phi  -mean_{(s, a) in D} log N( a ; mu_phi(s), diag(exp(2 log_std)) ),

mu_phi an MLP, log_std a learned state-independent vector. It acts with its mean, clipped
to the action bounds. The number of updates is chosen on held-out demonstrations (early
stopping): the last ``holdout`` fraction of D (whole episodes where D is stored episode by
episode, as the MuJoCo data is) is not trained on, its negative log-likelihood is measured
every ``check_every`` updates, and the policy returned is the one where it was lowest.
"""

from __future__ import annotations

import copy
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
    updates: int = setting(5_000, gt=0, help="Adam updates at most")
    holdout: float = setting(0.1, ge=0, lt=1, help="fraction of the demonstrations (the last ones) held out to "
                             "choose the number of updates; 0: none, the last update's policy")
    check_every: int = setting(500, gt=0, help="updates between two held-out evaluations")


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


@dataclass
class BCFit:
    """A fitted policy, the update it was taken at and its held-out negative log-likelihood
    per transition (None without a hold-out)."""

    policy: GaussianPolicy
    update: int
    holdout_nll: float | None


def train_bc(demos: TransitionSet, cfg: BCConfig, seed: int) -> BCFit:
    """Fit ``GaussianPolicy`` to ``demos`` with Adam for up to ``cfg.updates`` minibatch steps,
    keeping the policy of lowest held-out NLL (checked every ``cfg.check_every`` updates and at
    the last)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs, act = torch.tensor(np.asarray(demos.observations)), torch.tensor(np.asarray(demos.actions))
    n_held = int(round(cfg.holdout * len(obs)))
    if cfg.holdout and not 0 < n_held < len(obs):
        raise ValueError(f"bc.holdout={cfg.holdout} of {len(obs)} demonstration transitions leaves "
                         f"{n_held} held out and {len(obs) - n_held} to train on; both must be at least 1")
    train_obs, train_act = obs[: len(obs) - n_held], act[: len(obs) - n_held]
    held_obs, held_act = obs[len(obs) - n_held:], act[len(obs) - n_held:]
    policy = GaussianPolicy(obs.shape[1], act.shape[1], cfg.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    best = BCFit(copy.deepcopy(policy), 0, None)
    for step in range(1, cfg.updates + 1):
        idx = torch.as_tensor(rng.integers(0, len(train_obs), size=cfg.batch_size))
        loss = -policy.log_prob(train_obs[idx], train_act[idx]).mean()
        check_finite(loss, "behaviour-cloning loss", step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if n_held and (step % cfg.check_every == 0 or step == cfg.updates):
            with torch.no_grad():
                nll = float(-policy.log_prob(held_obs, held_act).mean())
            if best.holdout_nll is None or nll < best.holdout_nll:
                best = BCFit(copy.deepcopy(policy), step, nll)
    return best if n_held else BCFit(policy, cfg.updates, None)


def bc_actor(policy: GaussianPolicy, low: np.ndarray, high: np.ndarray):
    """The policy's mean action, clipped to [low, high], as observation -> action."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            mean = policy.mean(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        return np.clip(mean, low, high)

    return act
