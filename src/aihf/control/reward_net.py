"""The control reward r_theta(s, a): an MLP on the concatenated state and action
(docs/method.md section 6: hidden sizes (64, 64), ReLU; trained with Adam, lr 1e-4),
optionally clamped to [-c, c] as ML-IRL's reward for MuJoCo is (c = 10); or an ensemble of
K such nets whose members are trained alike from different initialisations and whose
conservative combination is what the policy sees (``RewardEnsemble``; docs/method.md
section 7).

A segment's reward is the sum of r_theta(s_t, a_t) over its steps (docs/method.md section 2,
"Control"); ``segment_reward`` computes it for a batch of segments. ``load_reward`` reads
either kind back from its safetensors file.
"""

from __future__ import annotations

import json
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aihf.objective import EnsembleRule, check_ensemble_rule, ensemble_reward


class StepReward(nn.Module):
    """A per-step reward r(s, a) (``forward``) and the segment sums built from it."""

    def segment_reward(self, obs: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """r(tau) = sum_t m_t r(s_t, a_t) for segments [N, L, dim]; ``mask`` m [N, L] is 1 on a
        segment's real steps and 0 on its padding (None: every step counts); returns shape [N]."""
        rewards = self(obs, act)
        return (rewards if mask is None else rewards * mask).sum(dim=-1)


class RewardNet(StepReward):
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

    def sizes(self) -> dict:
        """What ``load_reward`` needs to rebuild the net."""
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden), "clamp": self.clamp}

    def save(self, path: str | Path) -> None:
        """Weights to safetensors, with the sizes needed by ``load_reward`` as metadata."""
        _save(self, path, {"reward_net": json.dumps(self.sizes())})

    @classmethod
    def load(cls, path: str | Path) -> "RewardNet":
        """A single net's file back (``load_reward`` reads an ensemble's too)."""
        net = load_reward(path)
        if not isinstance(net, RewardNet):
            raise ValueError(f"{path} holds a reward ensemble, not one reward net: read it with load_reward")
        return net


class RewardEnsemble(StepReward):
    """K reward nets r_1..r_K of one architecture, each trained on the reward objective by itself
    (``reward_step.RewardLearner`` steps every member), combined for the policy by ``rule``
    (Coste et al., "Reward Model Ensembles Help Mitigate Overoptimization", ICLR 2024):

        mean:  r(s, a) = mean_k r_k(s, a)
        uwo:   r(s, a) = mean_k r_k(s, a) - penalty * var_k r_k(s, a)   (uncertainty-weighted;
               var over the members, divided by K)
        wco:   r(s, a) = min_k r_k(s, a)                                  (worst case)

    Where the data pin the reward down the members agree and the combination is their mean;
    off the data they may disagree, and there ``uwo`` / ``wco`` score those states lower, so a
    policy gains less by finding them (docs/method.md section 7; members fitted to the same data
    can also err alike, as on HalfCheetah). ``penalty`` has the reward's units
    to the power -1 (it multiplies a variance)."""

    def __init__(self, members: list[RewardNet], rule: EnsembleRule = "mean", penalty: float = 0.0):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a reward ensemble needs at least 2 members, got {len(members)}")
        check_ensemble_rule(rule, penalty)
        if len({json.dumps(m.sizes()) for m in members}) != 1:
            raise ValueError("the members of a reward ensemble must have the same sizes")
        self.members = nn.ModuleList(members)
        self.rule, self.penalty = rule, float(penalty)

    def member_rewards(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """r_k(s, a) of every member, shape [K, ...]."""
        return torch.stack([member(obs, act) for member in self.members])

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return ensemble_reward(self.member_rewards(obs, act), self.rule, self.penalty)

    def disagreement(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The members' standard deviation sd_k r_k(s, a) (divided by K), shape [...]."""
        return self.member_rewards(obs, act).std(dim=0, correction=0)

    def save(self, path: str | Path) -> None:
        """Every member's weights (``members.<k>.``) and the rule to safetensors."""
        meta = {"members": len(self.members), "rule": self.rule, "penalty": self.penalty,
                "net": self.members[0].sizes()}
        _save(self, path, {"reward_ensemble": json.dumps(meta)})


def load_reward(path: str | Path) -> RewardNet | RewardEnsemble:
    """A reward net or ensemble from the safetensors file its ``save`` wrote (no pickle)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "reward_net" in meta:
        reward = _net(json.loads(meta["reward_net"]))
    elif "reward_ensemble" in meta:
        ens = json.loads(meta["reward_ensemble"])
        reward = RewardEnsemble([_net(ens["net"]) for _ in range(ens["members"])], ens["rule"], ens["penalty"])
    else:
        raise ValueError(f"{path} holds no reward net (no reward_net or reward_ensemble metadata)")
    reward.load_state_dict(load_file(str(path)))
    return reward


def _net(sizes: dict) -> RewardNet:
    return RewardNet(sizes["obs_dim"], sizes["act_dim"], tuple(sizes["hidden"]), sizes.get("clamp"))


def _save(module: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
