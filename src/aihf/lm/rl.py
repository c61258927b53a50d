"""The policy step of Algorithm 1 (docs/method.md section 3, step 1): RLOO with a KL penalty,
on rewards put on a fixed scale first.

For each prompt x, k responses y_1..y_k ~ pi(.|x) have been drawn and scored by the
current reward model. Then

    r'_j = clip( (r(x, y_j) - m) / s, -c, c )                              (RewardScaler)
    R_j  = r'_j - beta * [log pi(y_j|x) - log pi_ref(y_j|x)]                (KL-penalised reward)
    A_j  = R_j - mean_{l != j} R_l                                          (leave-one-out baseline)
    l_pi = -mean_j A_j * log pi(y_j|x)                                      (REINFORCE)

(``objective.kl_penalized_reward``, ``objective.rloo_advantages``,
``objective.policy_gradient_loss``). m and s are the running mean and standard deviation
of every reward the policy step has seen (all processes), c the clip. A learned reward's
scale drifts as it trains; without the scaling, beta would weigh the KL against a reward
of unknown size (RLHF practice: trl's reward scaling and clipping, the AIHF authors' PPO).
The leave-one-out baseline makes the shift m irrelevant to the advantages: what matters
is s. One on-policy update per batch of samples, so no importance ratio, clipping or
value head is needed: docs/lm_engine.md says why this is the default rather than PPO.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from aihf import objective


class RewardScaler:
    """Running mean / standard deviation of rewards (Chan et al.'s parallel update), and the
    normalisation r' = clip((r - mean) / std, -clip, clip) that uses them.

    ``enabled=False`` passes rewards through (the clip still applies when set). The state
    is three numbers (``state()`` / ``load_state()``) for checkpoints.
    """

    def __init__(self, enabled: bool = True, clip: float | None = None, eps: float = 1e-6) -> None:
        if clip is not None and not clip > 0:
            raise ValueError(f"the reward clip must be > 0 or None, got {clip}")
        self.enabled, self.clip, self.eps = enabled, clip, eps
        self.reset()

    def reset(self) -> None:
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0

    def update(self, rewards: torch.Tensor) -> None:
        """Fold a batch of rewards into the running moments."""
        values = rewards.detach().double().reshape(-1)
        n = values.numel()
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    def __call__(self, rewards: torch.Tensor) -> torch.Tensor:
        out = (rewards - self.mean) / (self.std + self.eps) if self.enabled else rewards
        return out.clamp(-self.clip, self.clip) if self.clip is not None else out

    def state(self) -> torch.Tensor:
        return torch.tensor([self.count, self.mean, self.m2], dtype=torch.float64)

    def load_state(self, state: torch.Tensor) -> None:
        self.count, self.mean, self.m2 = (float(v) for v in state.tolist())


def rloo_step(
    sequence_logps: Callable[[object], torch.Tensor],
    policy,
    reference,
    rewards: torch.Tensor,
    k: int,
    beta: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RLOO loss for samples grouped k per prompt (prompt-major), and its diagnostics.

    ``sequence_logps(model)`` returns log pi(y|x) of the samples under ``model`` (summed
    over response tokens, shape (B * k,)); it is called with the policy (with gradient)
    and with the frozen reference (without). ``rewards`` are the (scaled) r(x, y), held
    constant; ``beta`` is the KL coefficient (docs/method.md section 2).
    """
    logp = sequence_logps(policy)
    with torch.no_grad():
        logp_ref = sequence_logps(reference)
    penalised = objective.kl_penalized_reward(rewards, logp.detach(), logp_ref, beta)
    advantages = objective.rloo_advantages(penalised, k)
    loss = objective.policy_gradient_loss(logp, advantages)
    kl = (logp.detach() - logp_ref).mean()
    return loss, {"kl": float(kl), "rl_reward": float(penalised.mean())}
