"""The policy step of Algorithm 1 (docs/method.md section 3, step 1): RLOO with a KL penalty,
on rewards put on a fixed scale first.

For each prompt x, k responses y_1..y_k ~ pi(.|x) have been drawn and scored by the
current reward model. Then

    r'_j = clip( (r(x, y_j) - m) / s, -c, c )                              (reward_scale.RewardScaler)
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

from typing import Callable

import torch

from aihf import objective


def rloo_step(
    sequence_logps: Callable[[object], torch.Tensor],
    policy,
    reference,
    rewards: torch.Tensor,
    k: int,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RLOO loss for samples grouped k per prompt (prompt-major), and its diagnostics (0-dim
    tensors, read by the training loop once per step).

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
    return loss, {"kl": kl, "rl_reward": penalised.mean()}
