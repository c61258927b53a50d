"""The policy step of Algorithm 1 (METHOD.md section 3, step 1): RLOO with a KL penalty.

For each prompt x, k responses y_1..y_k ~ pi(.|x) have been drawn and scored by the
current reward model. Then

    R_j = r(x, y_j) - kl_coef * [log pi(y_j|x) - log pi_ref(y_j|x)]     (KL-penalised reward)
    A_j = R_j - mean_{l != j} R_l                                          (leave-one-out baseline)
    l_pi = -mean_j A_j * log pi(y_j|x)                                     (REINFORCE)

(``objective.kl_penalized_reward``, ``objective.rloo_advantages``,
``objective.policy_gradient_loss``). One on-policy update per batch of samples, so no
importance ratio, clipping or value head is needed: docs/lm_engine.md says why this
is the default rather than PPO.
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
    kl_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """RLOO loss for samples grouped k per prompt (prompt-major), and its diagnostics.

    ``sequence_logps(model)`` returns log pi(y|x) of the samples under ``model`` (summed
    over response tokens, shape (B * k,)); it is called with the policy (with gradient)
    and with the frozen reference (without). ``rewards`` are r(x, y), held constant.
    """
    logp = sequence_logps(policy)
    with torch.no_grad():
        logp_ref = sequence_logps(reference)
    penalised = objective.kl_penalized_reward(rewards, logp.detach(), logp_ref, kl_coef)
    advantages = objective.rloo_advantages(penalised, k)
    loss = objective.policy_gradient_loss(logp, advantages)
    kl = (logp.detach() - logp_ref).mean()
    return loss, {"kl": float(kl), "rl_reward": float(penalised.mean())}
