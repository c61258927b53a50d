"""Every loss of docs/method.md as a pure tensor function, and the one dataclass of its numbers.

Each function takes tensors of per-example quantities (rewards, or per-sequence
log-probabilities), returns a scalar loss to *minimise* (the negative of the
objective docs/method.md maximises), and carries its formula and the section of
docs/method.md it comes from. Trainers in ``aihf.lm`` and ``aihf.control``
only gather those quantities; the math lives here.

Notation: ``sigma`` is the logistic function, ``r`` an explicit reward
(a reward model's output for language models, a sum of r(s, a) for control),
``log pi`` a per-sequence log-probability, ``h`` the DPO log-ratio difference
    h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)].
Every batch mean is over the leading dimension; the explicit-reward losses take a reward
ensemble's [K, N] rewards too, whose mean over all K * N entries is the mean over the K
members of each member's own loss (``ensemble_reward`` combines them for the policy).

:class:`ObjectiveConfig` holds the numbers of section 2 (beta, w_D, w_P and the forms of
the two terms) for both worlds: ``aihf.lm.methods.MethodConfig`` (the ``method`` section
of a language-model config) and ``aihf.control.reward_step.RewardStepConfig`` extend it,
so ``beta`` is the same quantity everywhere: the KL coefficient of the RL policy step
(RLHF, Algorithm 1), the scale of the implicit reward (DPO and the single-stage variants)
and the entropy temperature of SAC in control.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from aihf.config import Settings, setting

DemoForm = Literal["linear", "logistic"]
PreferenceForm = Literal[
    "sigmoid", "sigmoid_norm", "ipo", "hinge", "exo_pair", "discopop", "nca_pair", "bco_pair", "sppo_hard", "apo_zero",
    "apo_down", "aot", "aot_unpaired",
]
LabelNoise = Literal["conservative", "robust"]
FDivergence = Literal["reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"]
F_DIVERGENCES: tuple[str, ...] = get_args(FDivergence)
PREFERENCE_FORMS: tuple[str, ...] = get_args(PreferenceForm)
LABEL_NOISES: tuple[str, ...] = get_args(LabelNoise)
DISCOPOP_TAU_TURN = (1.0 - math.log(2.0)) / 3.0  # below it discopop's derivative at h = 0 is > 0 (preference_loss)
EnsembleRule = Literal["mean", "uwo", "wco"]
ENSEMBLE_RULES = ("mean", "uwo", "wco")

__all__ = [
    "ObjectiveConfig",
    "token_logprobs",
    "sequence_logprobs",
    "bradley_terry_loss",
    "smoothed_logsigmoid",
    "demonstration_reward_loss",
    "aihf_reward_loss",
    "check_ensemble_rule",
    "check_ensemble_settings",
    "ensemble_reward",
    "dpo_log_ratio_margin",
    "f_divergence_score",
    "PreferenceTerm",
    "preference_loss",
    "dpo_loss",
    "ipo_loss",
    "aihf_dpo_loss",
    "spin_loss",
    "self_play_aihf_loss",
]


@dataclass
class ObjectiveConfig(Settings):
    """The numbers of docs/method.md section 2, shared by every method of both worlds.

    ``beta``: the KL (control: entropy) coefficient of the inner problem
    max_pi E[r] - beta KL(pi || pi_ref), hence also the scale of the implicit reward
    r = beta log(pi / pi_ref). ``w_demo`` / ``w_pref``: the weights w_D, w_P of the two
    likelihoods. ``demo_form``: the demonstration term of the explicit reward step
    (section 3: ``linear`` is the exact ML-IRL gradient, ``logistic`` the bounded form of
    the authors' code). The implicit reward's preference term (DPO's sigmoid, IPO, ...) is a
    language-model setting (``aihf.lm.methods.MethodConfig.preference_form``): the explicit
    reward's preference term is Bradley-Terry's.
    ``label_smoothing``: epsilon, the chance that a preference label is flipped, which the
    sigmoid preference terms (Bradley-Terry and DPO) then account for, in the ``label_noise`` form
    ``conservative`` or ``robust`` (``smoothed_logsigmoid``).
    """

    beta: float = setting(0.1, gt=0, help="KL (control: entropy) coefficient; the implicit reward's scale")
    w_demo: float = setting(1.0, ge=0, help="weight w_D of the demonstration likelihood")
    w_pref: float = setting(1.0, ge=0, help="weight w_P of the preference likelihood")
    demo_form: DemoForm = setting("logistic", help="explicit reward step's demonstration term: linear or logistic")
    label_smoothing: float = setting(0.0, ge=0, lt=0.5, help="chance a preference label is flipped (Bradley-Terry / "
                                     "DPO, sigmoid and AOT forms; exo_pair's epsilon)")
    label_noise: LabelNoise = setting("conservative", help="how label_smoothing enters: conservative (expected "
                                      "log-likelihood) or robust (unbiased, rDPO)")


def _check_weights(w_demo: float, w_pref: float) -> None:
    if w_demo < 0 or w_pref < 0:
        raise ValueError(f"weights must be >= 0, got w_demo={w_demo}, w_pref={w_pref}")
    if w_demo == 0 and w_pref == 0:
        raise ValueError("w_demo and w_pref are both 0: the objective is empty")


def _total(terms: list[torch.Tensor]) -> torch.Tensor:
    """The sum of an objective's weighted terms (at least one, ``_check_weights``), added where
    they are: a zero made on the host and moved to a GPU would be a copy that waits for it."""
    return functools.reduce(operator.add, terms)


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


# --------------------------------------------------------------------------- log-probs


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token under a causal LM.

    ``out[b, t] = log softmax(logits[b, t]) [input_ids[b, t + 1]]`` for t < T - 1, i.e. the
    logits at position t predict token t + 1. Shape (B, T - 1), float32 (computed in
    float32 for half-precision or float32 logits, float64 for float64 logits: upcast,
    never downcast; through a fused cross-entropy, so the (B, T, V) log-softmax is
    never stored).
    """
    shifted = logits[:, :-1, :]
    targets = input_ids[:, 1:]
    dtype = torch.promote_types(logits.dtype, torch.float32)
    nll = F.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)).to(dtype), targets.reshape(-1), reduction="none"
    )
    return -nll.view(targets.shape)


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    loss_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Per-sequence log-probability of the response tokens, log pi(y|x).

    ``loss_mask[b, t] = 1`` where token t of row b belongs to the response (prompt and
    padding are 0). Returns, shape (B,),
        sum:  log pi(y|x) = sum_t mask[t] * log pi(token_t | tokens_<t)
        mean: the same sum divided by the number of response tokens (token-mean).
    The sum is the sequence likelihood of docs/method.md sections 2 and 4; the token-mean is
    the length-normalised variant (used by IPO in trl, and an option for AIHF-DPO's
    supervised term).
    """
    if logits.shape[:2] != input_ids.shape or input_ids.shape != loss_mask.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, input_ids "
            f"{tuple(input_ids.shape)}, loss_mask {tuple(loss_mask.shape)}"
        )
    total = masked_sequence_sum(token_logprobs(logits, input_ids), loss_mask)
    if not average:
        return total
    return total / loss_mask[:, 1:].to(torch.float32).sum(-1).clamp(min=1.0)


def masked_sequence_sum(token_lp: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """sum_t loss_mask[b, t + 1] * token_lp[b, t]: per-sequence sums of next-token log-probs
    (B, T - 1) over the response tokens of a padded batch. Shape (B,)."""
    return (token_lp * loss_mask[:, 1:].to(torch.float32)).sum(-1)


def packed_sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    token_index: torch.Tensor,
    token_mask: torch.Tensor,
) -> torch.Tensor:
    """:func:`sequence_logprobs` (the sum) of sequences packed into rows
    (``aihf.lm.batching.pack``): the next-token log-probs of the (R, W) rows, flattened, are
    gathered into the (B, L - 1) layout of the padded batch by ``token_index`` and summed
    under ``token_mask``, so each sequence's sum runs over the same terms in the same order
    as with padding. Shape (B,)."""
    return packed_sequence_sum(token_logprobs(logits, input_ids), token_index, token_mask)


def packed_sequence_sum(token_lp: torch.Tensor, token_index: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence sums of a packed batch's next-token log-probs (R, W - 1), gathered into the
    padded layout by ``token_index`` under ``token_mask`` (``batching.PackedBatch``). Shape (B,)."""
    flat = token_lp.reshape(-1)
    return (flat[token_index] * token_mask.to(flat.dtype)).sum(-1)


def length_desensitized_weights(response_mask: torch.Tensor, shared_lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """LD-DPO's token weights (Liu et al. 2024, "LD-DPO: length desensitization in DPO"; trl's
    ``ld_alpha``): ``response_mask`` (B, T) is 1 on response tokens, ``shared_lengths`` (B,) each
    row's pair's shared length l_p = min(|y_w|, |y_l|) (inf: a row of no pair).

    A response's log-likelihood becomes
        log pi_LD(y|x) = sum_{t <= l_p} log pi(y_t | x, y_<t) + alpha * sum_{t > l_p} log pi(y_t | x, y_<t),
    so the longer response's extra tokens count alpha times (alpha = 1: DPO's sum). Returns the
    weights (B, T): 1 on a response's first l_p tokens, alpha on the rest, 0 off the response, in the
    mask's floating dtype (float32 for an integer mask); the weighted sum of next-token log-probs is
    log pi_LD, for the policy and the reference alike.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if shared_lengths.shape != response_mask.shape[:1]:
        raise ValueError(f"shape mismatch: response_mask {tuple(response_mask.shape)}, "
                         f"shared_lengths {tuple(shared_lengths.shape)}")
    mask = response_mask.to(torch.promote_types(response_mask.dtype, torch.float32))
    position = mask.cumsum(-1)  # 1-based index of each response token
    return torch.where(position <= shared_lengths.to(mask)[:, None], mask, alpha * mask)


def _chunk_token_logprobs(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias)
    return -F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets, reduction="none")


def selected_token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """:func:`token_logprobs` at the selected ``positions``, 0 elsewhere, shape (B, T - 1), from the
    last hidden states (B, T, H) and the output layer (logits = h W^T + b), without the (B, T, V)
    logits: only the selected positions are scored, ``chunk`` of them at a time, each chunk's
    logits recomputed in the backward pass (activation checkpointing) instead of kept.

    ``positions`` are flat indices into the (B, T - 1) grid of next-token log-probs (a batch's
    ``scored_index``, ``aihf.lm.batching``): an index tensor made on the host, unlike a boolean
    mask, tells how many positions there are without waiting for a GPU.

    Peak memory of the output layer: chunk x V logits (float32) instead of B x T x V; compute:
    the selected positions only (a DPO batch's response tokens, not its prompts and padding).
    The same fused cross-entropy as :func:`token_logprobs`, so the two agree to round-off.
    """
    if input_ids.shape != hidden.shape[:2] or positions.dim() != 1 or positions.dtype != torch.long:
        raise ValueError(f"shape mismatch: hidden {tuple(hidden.shape)}, input_ids {tuple(input_ids.shape)}, "
                         f"positions {tuple(positions.shape)} {positions.dtype} (want 1-D int64)")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    from torch.utils.checkpoint import checkpoint

    rows, targets = _selected_rows(hidden, positions), input_ids[:, 1:].reshape(-1).index_select(0, positions)
    parts = [
        checkpoint(_chunk_token_logprobs, rows[i:i + chunk], targets[i:i + chunk], weight, bias, use_reentrant=False)
        for i in range(0, rows.shape[0], chunk)
    ]
    return _scatter_positions(parts, positions, input_ids, hidden.dtype)


def _selected_rows(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The last hidden states (B, T, H) that predict the selected flat ``positions`` of the (B, T - 1) grid."""
    return hidden[:, :-1].reshape(-1, hidden.shape[-1]).index_select(0, positions)


def _scatter_positions(parts: list[torch.Tensor], positions: torch.Tensor, input_ids: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:
    """The chunks' values at the selected flat ``positions`` of the (B, T - 1) next-token grid, 0 elsewhere."""
    out = torch.zeros(input_ids[:, 1:].numel(), dtype=torch.promote_types(dtype, torch.float32), device=input_ids.device)
    if parts:
        out = out.scatter(0, positions, torch.cat(parts).to(out.dtype))
    return out.view(input_ids.shape[0], input_ids.shape[1] - 1)


def token_log_sum_sq_probs(logits: torch.Tensor) -> torch.Tensor:
    """log sum_v pi(v | context)^2 at every position of ``logits`` (..., V): the log-probability that two
    draws from the next-token distribution agree, = logsumexp(2 l) - 2 logsumexp(l); float32 (or
    float64 for float64 logits). WPO's normaliser (Zhou et al. 2024, eq. 2; trl's ``log_sum_sq_probs``)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return torch.logsumexp(2.0 * logits, dim=-1) - 2.0 * torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def positions_log_sum_sq_probs(logits: torch.Tensor, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """:func:`token_log_sum_sq_probs` of the next-token distributions at the selected flat ``positions`` of the
    (B, T - 1) grid (as in :func:`selected_token_logprobs`), 0 elsewhere, (B, T - 1), from full ``logits``
    (B, T, V): the log-sum-exps over the vocabulary of those positions only; no gradient."""
    rows = logits[:, :-1].reshape(-1, logits.shape[-1]).index_select(0, positions)
    return _scatter_positions([token_log_sum_sq_probs(rows)], positions, input_ids, logits.dtype)


@torch.no_grad()
def selected_token_log_sum_sq_probs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                    input_ids: torch.Tensor, positions: torch.Tensor, chunk: int) -> torch.Tensor:
    """:func:`token_log_sum_sq_probs` of the next-token distributions at the selected ``positions`` (as in
    :func:`selected_token_logprobs`), 0 elsewhere, (B, T - 1), from the last hidden states, ``chunk``
    positions' logits at a time; no gradient (WPO's weights are constants of the step)."""
    rows = _selected_rows(hidden, positions)
    parts = [token_log_sum_sq_probs(F.linear(rows[i:i + chunk], weight, bias)) for i in range(0, rows.shape[0], chunk)]
    return _scatter_positions(parts, positions, input_ids, hidden.dtype)


def wpo_weights(token_lp: torch.Tensor, token_log_sum_sq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """WPO's per-response weight (Zhou et al. 2024, "WPO: enhancing RLHF with weighted preference
    optimization", eq. 2 with the aligned normaliser; trl's ``use_weighting``):

        w(y|x) = exp( (1/|y|) sum_t [ log pi(y_t | x, y_<t) - log sum_v pi(v | x, y_<t)^2 ] ),

    the geometric-mean probability of the response's tokens relative to how peaked each step's
    distribution is, under the current policy, detached. ``token_lp``, ``token_log_sum_sq`` and
    ``mask`` (1 on response tokens) are (B, T); shape (B,). A pair's loss is weighted by
    w(y_w|x) w(y_l|x) (``preference_loss(pair_weights=...)``), so pairs the policy would itself
    produce count more: off-policy preference data made closer to on-policy."""
    mask = mask.to(token_lp.dtype)
    aligned = ((token_lp - token_log_sum_sq) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return aligned.detach().exp()


# --------------------------------------------------------------- explicit reward (Alg. 1)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean(values), or (1/N) sum_i w_i values_i over its N entries: with w_i the number of times
    entry i is in a bootstrap resample, the loss on the data set that resample rebuilds."""
    return values.mean() if weights is None else (weights * values).sum() / values.numel()


def check_label_noise(label_smoothing: float, label_noise: str) -> None:
    """``label_smoothing`` in [0, 0.5) and ``label_noise`` one of :data:`LABEL_NOISES`, else ValueError."""
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_noise not in LABEL_NOISES:
        raise ValueError(f"unknown label_noise {label_noise!r}: use one of {', '.join(LABEL_NOISES)}")


def smoothed_logsigmoid(z: torch.Tensor, label_smoothing: float = 0.0,
                        label_noise: LabelNoise = "conservative") -> torch.Tensor:
    """The log-likelihood of a preference label under Bradley-Terry with the label flipped with
    chance epsilon = ``label_smoothing`` (docs/method.md section 2, "Noisy labels"), per pair:

        conservative:  (1 - epsilon) log sigma(z) + epsilon log sigma(-z)
        robust:       [(1 - epsilon) log sigma(z) - epsilon log sigma(-z)] / (1 - 2 epsilon)

    ``conservative`` is the expected log-likelihood when the observed winner is the true one with
    chance 1 - epsilon (Mitchell 2023, "conservative DPO"; trl's ``aot`` on one pair); it is
    largest at the finite margin z = log((1 - epsilon) / epsilon). ``robust`` is the unbiased
    estimate of the clean label's log sigma(z): its expectation over the flip is log sigma(z)
    exactly (Chowdhury et al. 2024, "robust DPO"; trl's ``robust``); it rises without bound in z,
    with slope tending to epsilon / (1 - 2 epsilon). epsilon = 0 is log sigma(z) in both."""
    check_label_noise(label_smoothing, label_noise)
    if label_smoothing == 0.0:
        return F.logsigmoid(z)
    if label_noise == "robust":
        return ((1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)) / (1.0 - 2.0 * label_smoothing)
    return (1.0 - label_smoothing) * F.logsigmoid(z) + label_smoothing * F.logsigmoid(-z)


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor,
                       weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                       label_noise: LabelNoise = "conservative") -> torch.Tensor:
    """Bradley-Terry reward-model loss (docs/method.md section 2, case w_D = 0; RLHF's reward model).

        l_BT = -mean log sigma( r(x, y_w) - r(x, y_l) )

    with ``label_smoothing`` epsilon > 0 the ``label_noise`` form of ``smoothed_logsigmoid``.
    ``weights``: each pair's count in a bootstrap resample (``_weighted_mean``); None: 1 each.
    """
    return -_weighted_mean(smoothed_logsigmoid(reward_chosen - reward_rejected, label_smoothing, label_noise), weights)


def demonstration_reward_loss(
    reward_demo: torch.Tensor, reward_policy: torch.Tensor, form: DemoForm = "linear",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maximum-likelihood IRL term on demonstrations (docs/method.md section 3, step 3).

        linear:   l_D = -mean( r(x, y_E) - r(x, y) ),  y ~ pi_k(.|x)
        logistic: l_D = -mean log sigma( r(x, y_E) - r(x, y) )   (*derived* from the authors' code)

    The linear form's gradient is beta times the exact gradient of the demonstration
    log-likelihood, since grad log pi_theta(y_E|x) = (1/beta)[grad r(x,y_E) - E_pi grad r(x,y)];
    it is unbounded, so regularise the reward with it (``reward_l2`` of ``aihf_reward_loss``).

    The two batches may differ in size only in the linear form, which then reads
    l_D = -( mean r(x, y_E) - mean r(x, y) ): every demonstration against every policy
    sample, as ML-IRL's full-batch control step has it (equal sizes give the same value).
    The logistic form pairs each demonstration with one sample.

    ``weights`` (the shape of ``reward_demo``): each demonstration's count in a bootstrap
    resample (``_weighted_mean``), the samples it is compared with sharing it; None: 1 each.
    """
    if reward_demo.shape != reward_policy.shape:
        if form == "linear":
            return -(_weighted_mean(reward_demo, weights) - reward_policy.mean())
        raise ValueError(f"the {form!r} demonstration term pairs each demonstration with one policy sample; "
                         f"got {tuple(reward_demo.shape)} and {tuple(reward_policy.shape)} rewards")
    diff = reward_demo - reward_policy
    if form == "linear":
        return -_weighted_mean(diff, weights)
    if form == "logistic":
        return -_weighted_mean(F.logsigmoid(diff), weights)
    raise ValueError(f"unknown demonstration form {form!r}: use 'linear' or 'logistic'")


def aihf_reward_loss(
    reward_demo: torch.Tensor | None,
    reward_policy: torch.Tensor | None,
    reward_chosen: torch.Tensor | None,
    reward_rejected: torch.Tensor | None,
    w_demo: float = 1.0,
    w_pref: float = 1.0,
    demo_form: DemoForm = "linear",
    reward_l2: float = 0.0,
    demo_weights: torch.Tensor | None = None,
    pref_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    label_noise: LabelNoise = "conservative",
) -> torch.Tensor:
    """The AIHF reward loss of Algorithm 1, step 3 (docs/method.md section 3).

        l_R = w_D * l_D( r(x, y_E), r(x, y) ) + w_P * l_BT( r(x, y_w), r(x, y_l) )
              + reward_l2 * mean( r^2 over every reward in the batch )

    with l_D from ``demonstration_reward_loss`` and l_BT from ``bradley_terry_loss``. Its
    negative gradient is the ascent direction g of docs/method.md section 3:
        g = w_D [grad r(x,y_E) - grad r(x,y)] + w_P (1 - sigma(r_w - r_l)) [grad r_w - grad r_l].
    Reductions: w_D = 0 is the Bradley-Terry loss (RLHF's reward model); w_P = 0 is
    maximum-likelihood IRL from demonstrations only (ML-IRL). A term whose weight is 0
    may be passed as None. ``demo_weights`` / ``pref_weights``: each demonstration's and each
    pair's count in a bootstrap resample (the l2 term stays unweighted); None: 1 each.
    ``label_smoothing`` / ``label_noise``: l_BT's label-noise epsilon and form (``bradley_terry_loss``).
    """
    _check_weights(w_demo, w_pref)
    terms: list[torch.Tensor] = []
    used: list[torch.Tensor] = []
    if w_demo > 0:
        if reward_demo is None or reward_policy is None:
            raise ValueError("w_demo > 0 needs reward_demo and reward_policy")
        terms.append(w_demo * demonstration_reward_loss(reward_demo, reward_policy, demo_form, demo_weights))
        used += [reward_demo, reward_policy]
    if w_pref > 0:
        if reward_chosen is None or reward_rejected is None:
            raise ValueError("w_pref > 0 needs reward_chosen and reward_rejected")
        terms.append(w_pref * bradley_terry_loss(reward_chosen, reward_rejected, pref_weights, label_smoothing,
                                                    label_noise))
        used += [reward_chosen, reward_rejected]
    if reward_l2 > 0:
        terms.append(reward_l2 * torch.cat([r.reshape(-1) for r in used]).pow(2).mean())
    return _total(terms)


def check_ensemble_rule(rule: str, penalty: float) -> None:
    """A rule of ``ENSEMBLE_RULES``; ``uwo`` with a penalty > 0, the others with none."""
    if rule not in ENSEMBLE_RULES:
        raise ValueError(f"unknown ensemble rule {rule!r}; choose from {ENSEMBLE_RULES}")
    if (rule == "uwo") != (penalty > 0) or not penalty >= 0:
        raise ValueError(f"the uwo rule needs a penalty > 0 and the other rules none, got penalty {penalty} "
                         f"with rule {rule!r}")


def check_ensemble_settings(members: int, rule: str, penalty: float, resample: str = "none") -> None:
    """The settings of a reward ensemble of ``members`` (1: no ensemble), as both worlds name them
    (``reward_ensemble``, ``reward_ensemble_rule``, ``reward_ensemble_penalty``,
    ``reward_ensemble_resample``): a rule, a penalty or a resample other than the default needs
    ``members`` >= 2, and the rule its penalty (``check_ensemble_rule``)."""
    if members == 1 and (rule != "mean" or penalty or resample != "none"):
        raise ValueError("reward_ensemble_rule, reward_ensemble_penalty and reward_ensemble_resample set up an "
                         "ensemble: set reward_ensemble >= 2")
    check_ensemble_rule(rule, penalty)


def ensemble_reward(rewards: torch.Tensor, rule: EnsembleRule = "mean", penalty: float = 0.0) -> torch.Tensor:
    """The reward a policy sees from the K members' rewards r_1..r_K (``rewards`` [K, ...]),
    combined over the first dimension (Coste et al., "Reward Model Ensembles Help Mitigate
    Overoptimization", ICLR 2024; docs/method.md section 7):

        mean:  r = mean_k r_k
        uwo:   r = mean_k r_k - penalty * var_k r_k   (uncertainty-weighted; var divided by K)
        wco:   r = min_k r_k                          (worst case)

    ``penalty`` has the reward's units to the power -1 (it multiplies a variance)."""
    check_ensemble_rule(rule, penalty)
    if rule == "wco":
        return rewards.min(dim=0).values
    mean = rewards.mean(dim=0)
    return mean - penalty * rewards.var(dim=0, correction=0) if rule == "uwo" else mean


# ------------------------------------------------------- implicit reward (section 4)


def dpo_log_ratio_margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
) -> torch.Tensor:
    """h = [log pi(y_w|x) - log pi_ref(y_w|x)] - [log pi(y_l|x) - log pi_ref(y_l|x)] (docs/method.md section 4).

    beta * h is the difference of implicit rewards r = beta log(pi / pi_ref).
    """
    return (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)


MARGIN_FORMS = ("sigmoid", "sigmoid_norm", "ipo", "hinge", "exo_pair", "discopop")  # the forms that read h = a - b only
BATCH_FORMS = ("aot", "aot_unpaired")  # the forms that sort their batch: a pair's loss depends on the other pairs
LIKELIHOOD_FORMS = ("sigmoid", "aot", "aot_unpaired")  # -log sigma(z) of a label: the forms that label_smoothing smooths


def f_divergence_score(log_ratio: torch.Tensor, divergence: FDivergence = "reverse_kl",
                       alpha: float = 1.0) -> torch.Tensor:
    """f'(u) at u = pi / pi_ref = exp(log_ratio): the implicit reward, up to beta and a constant per
    prompt, of the policy that maximises E[r] - beta D_f(pi || pi_ref) (Wang et al. 2023, "Beyond
    Reverse KL", f-DPO; docs/method.md section 4):

        reverse_kl (KL, DPO):  log u
        forward_kl:            1 - 1 / u
        js_divergence:         log 2 + log sigma(log u)     = log(2u / (1 + u))
        alpha_divergence:      (u^(alpha - 1) - 1) / (alpha - 1)   (alpha = 1: log u)

    as trl 1.16's ``f_divergence_type`` and ``f_alpha_divergence_coef`` (its alpha exponent is clamped at
    80 so the power stays finite in float32, as trl's).
    """
    if divergence == "reverse_kl":
        return log_ratio
    if divergence == "forward_kl":
        return 1.0 - torch.exp(-log_ratio)
    if divergence == "js_divergence":
        return math.log(2.0) + F.logsigmoid(log_ratio)
    if divergence == "alpha_divergence":
        if abs(alpha - 1.0) < 1e-6:
            return log_ratio
        return torch.expm1(((alpha - 1.0) * log_ratio).clamp(max=80.0)) / (alpha - 1.0)
    raise ValueError(f"unknown f_divergence {divergence!r}: use one of {', '.join(F_DIVERGENCES)}")


@dataclass(frozen=True)
class PreferenceTerm:
    """How the implicit reward's preference term reads a pair (``preference_loss``), checked when made:
    ``form`` (one of :data:`PREFERENCE_FORMS`); ``label_smoothing`` epsilon and its ``label_noise``
    form (the label-likelihood forms, :data:`LIKELIHOOD_FORMS`; exo_pair's target epsilon, required there); ``discopop_tau``
    (discopop); ``f_divergence`` and ``f_alpha`` (f-DPO, the margin forms only)."""

    form: PreferenceForm = "sigmoid"
    label_smoothing: float = 0.0
    label_noise: LabelNoise = "conservative"
    discopop_tau: float = 0.05
    f_divergence: FDivergence = "reverse_kl"
    f_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in PREFERENCE_FORMS:
            raise ValueError(f"unknown preference form {self.form!r}: use one of {', '.join(PREFERENCE_FORMS)}")
        check_label_noise(self.label_smoothing, self.label_noise)
        if self.form == "exo_pair" and not self.label_smoothing > 0:
            raise ValueError("the exo_pair form needs label_smoothing in (0, 0.5), its target's epsilon (trl suggests "
                             f"1e-3); got {self.label_smoothing}")
        if self.label_smoothing and self.form not in (*LIKELIHOOD_FORMS, "exo_pair"):
            raise ValueError(f"label_smoothing is for the sigmoid form (and aot, aot_unpaired): the {self.form} loss "
                             "has no label likelihood")
        if not self.discopop_tau > 0:
            raise ValueError(f"discopop_tau must be > 0, got {self.discopop_tau}")
        if self.f_divergence not in F_DIVERGENCES:
            raise ValueError(f"unknown f_divergence {self.f_divergence!r}: use one of {', '.join(F_DIVERGENCES)}")
        if self.f_divergence != "reverse_kl" and self.form not in MARGIN_FORMS:
            raise ValueError(f"f_divergence {self.f_divergence!r} is for the margin forms ({', '.join(MARGIN_FORMS)}), "
                             f"not {self.form}")


def _term(term: PreferenceTerm | str) -> PreferenceTerm:
    return PreferenceTerm(term) if isinstance(term, str) else term


def preference_loss(chosen_ratio: torch.Tensor, rejected_ratio: torch.Tensor, beta: float,
                    term: PreferenceTerm | PreferenceForm = "sigmoid",
                    pair_weights: torch.Tensor | None = None,
                    reference_margin: torch.Tensor | None = None) -> torch.Tensor:
    """The implicit reward's preference term (docs/method.md section 4) on the log-ratios
    a = log pi(y_w|x) - log pi_ref(y_w|x) (``chosen_ratio``) and b, the same for y_l; h = a - b,
    z = beta * h. Mean over pairs of:

        sigmoid   (DPO):        -log sigma(z)   (label_smoothing > 0: ``smoothed_logsigmoid``)
        sigmoid_norm:           -log sigma(z), a and b each a per-token mean that the caller takes
                                 (trl's ``sigmoid_norm``: DPO on token-mean log-ratios)
        ipo       (IPO):         (h - 1 / (2 beta))^2
        hinge     (SLiC-HF):     max(0, 1 - z)
        exo_pair  (EXO):         KL(q || p) with q = (sigma(z), sigma(-z)), p = (1 - eps, eps),
                                 eps = ``term.label_smoothing`` > 0 (Ji et al. 2024, eq. 16)
        discopop  (DiscoPOP):    (1 - m) (-log sigma(z)) + m exp(-z), m = sigma(z / tau)
                                 (Lu et al. 2024, eq. 5; tau = ``term.discopop_tau``)
        nca_pair  (NCA):        -log sigma(beta a) - 1/2 log sigma(-beta a) - 1/2 log sigma(-beta b)
                                 (Chen et al. 2024)
        bco_pair  (BCO):        -log sigma(beta a) - log sigma(-beta b) (Jung et al. 2024, without
                                 its running reward shift, as trl 1.16)
        sppo_hard (SPPO):        (a - 1 / (2 beta))^2 + (b + 1 / (2 beta))^2 (Wu et al. 2024, with
                                 hard win probabilities 1 and 0)
        apo_zero  (APO-zero):    1 - sigma(beta a) + sigma(beta b) (D'Oosterlinck et al. 2024, eq. 7)
        apo_down  (APO-down):    sigma(beta a) + 1 - sigma(z) (eq. 8)
        aot       (AOT, paired): -log sigma(beta d_(i)), d_(i) = sort(m + h)_i - sort(m)_i, m the reference's
                                 margin log pi_ref(y_w|x) - log pi_ref(y_l|x) (``reference_margin``),
                                 so m + h is the policy's (Melnyk et al. 2024, "Distributional
                                 Preference Alignment of LLMs via Optimal Transport")
        aot_unpaired:           -log sigma(beta d_(i)), d_(i) = sort(a)_i - sort(b)_i

    discopop is not monotone in z: its derivative at z = 0 is (1 - log 2) / (4 tau) - 3/4, positive
    for tau < ``DISCOPOP_TAU_TURN`` = (1 - log 2) / 3 ~ 0.102 (trl's default tau is 0.05; there a
    local minimum sits at z = -0.12); from the reference (h = 0 for every pair) descent then lowers
    every margin. Each equals trl 1.16's ``DPOTrainer`` loss of the same name on identical log-ratios. The first
    six read only the margin h; the next five also each response's own log-ratio, so they move
    the likelihood of y_w (or y_l) and not only the gap. The two AOT forms sort over the batch
    (ascending, each sequence on its own), so the i-th loss pairs quantiles, not the i-th pair: the
    loss asks the policy's margins to dominate the reference's (aot) or the chosen log-ratios to
    dominate the rejected ones (aot_unpaired) in distribution, and a pair's loss depends on the rest
    of its batch (the micro-batch, per process, as trl's). Label smoothing needs a label likelihood:
    the sigmoid and AOT forms smooth (``smoothed_logsigmoid``; trl's AOT is the conservative form),
    and exo_pair reads ``label_smoothing`` as its epsilon.

    ``term``: a :class:`PreferenceTerm`, or just its form's name. Its ``f_divergence`` other than
    ``reverse_kl`` (f-DPO) replaces a and b by their scores ``f_divergence_score`` first.
    ``pair_weights`` (WPO, :func:`wpo_weights`): (1/N) sum_i w_i l_i in place of the mean; not with the
    AOT forms, whose i-th loss is no pair's (trl refuses it too).
    """
    _check_beta(beta)
    term = _term(term)
    form = term.form
    if form in BATCH_FORMS and pair_weights is not None:
        raise ValueError(f"the {form} form sorts the batch, so its i-th loss is no pair's: it takes no pair weights (WPO)")
    if form == "aot" and reference_margin is None:
        raise ValueError("the aot form needs reference_margin, log pi_ref(y_w|x) - log pi_ref(y_l|x) per pair")
    a, b = chosen_ratio, rejected_ratio
    if term.f_divergence != "reverse_kl":
        a, b = f_divergence_score(a, term.f_divergence, term.f_alpha), f_divergence_score(b, term.f_divergence, term.f_alpha)
    z = beta * (a - b)
    if form == "sigmoid":
        per_pair = -smoothed_logsigmoid(z, term.label_smoothing, term.label_noise)
    elif form == "exo_pair":
        eps = torch.tensor(term.label_smoothing, dtype=z.dtype, device=z.device)
        per_pair = (torch.sigmoid(z) * (F.logsigmoid(z) - torch.log1p(-eps))
                    + torch.sigmoid(-z) * (F.logsigmoid(-z) - torch.log(eps)))
    elif form == "ipo":
        per_pair = (a - b - 1.0 / (2.0 * beta)).pow(2)
    elif form == "hinge":
        per_pair = torch.relu(1.0 - z)
    elif form == "sigmoid_norm":
        per_pair = -F.logsigmoid(z)
    elif form == "discopop":
        mix = torch.sigmoid(z / term.discopop_tau)
        per_pair = -F.logsigmoid(z) * (1.0 - mix) + torch.exp(-z) * mix
    elif form == "nca_pair":
        per_pair = -F.logsigmoid(beta * a) - 0.5 * F.logsigmoid(-beta * a) - 0.5 * F.logsigmoid(-beta * b)
    elif form == "bco_pair":
        per_pair = -F.logsigmoid(beta * a) - F.logsigmoid(-beta * b)
    elif form == "sppo_hard":
        per_pair = (a - 0.5 / beta).pow(2) + (b + 0.5 / beta).pow(2)
    elif form == "apo_zero":
        per_pair = 1.0 - torch.sigmoid(beta * a) + torch.sigmoid(beta * b)
    elif form == "aot":
        sorted_delta = torch.sort(reference_margin + (a - b)).values - torch.sort(reference_margin).values
        per_pair = -smoothed_logsigmoid(beta * sorted_delta, term.label_smoothing, term.label_noise)
    elif form == "aot_unpaired":
        sorted_delta = torch.sort(a).values - torch.sort(b).values
        per_pair = -smoothed_logsigmoid(beta * sorted_delta, term.label_smoothing, term.label_noise)
    else:  # apo_down
        per_pair = torch.sigmoid(beta * a) + 1.0 - torch.sigmoid(z)
    return _weighted_mean(per_pair, pair_weights)


def _preference_term(
    logps: tuple[torch.Tensor | None, ...], beta: float, term: PreferenceTerm | PreferenceForm, reference_name: str,
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``preference_loss`` on (policy chosen, policy rejected, reference chosen, reference rejected)."""
    if any(t is None for t in logps):
        raise ValueError(f"w_pref > 0 needs policy and {reference_name} log-probs of chosen and rejected")
    policy_chosen, policy_rejected, reference_chosen, reference_rejected = logps
    return preference_loss(policy_chosen - reference_chosen, policy_rejected - reference_rejected, beta, term,
                           pair_weights, reference_chosen - reference_rejected)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    label_noise: LabelNoise = "conservative",
) -> torch.Tensor:
    """DPO (docs/method.md section 5): -mean log sigma( beta * h ), h from ``dpo_log_ratio_margin``;
    with ``label_smoothing`` > 0 conservative or robust DPO (``smoothed_logsigmoid``)."""
    return preference_loss(policy_chosen - reference_chosen, policy_rejected - reference_rejected, beta,
                           PreferenceTerm("sigmoid", label_smoothing, label_noise))


def ipo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """IPO (docs/method.md sections 4-5): mean (h - 1/(2 beta))^2, h from ``dpo_log_ratio_margin``.

    trl computes h from token-mean log-probs for IPO; pass those to match it.
    """
    return preference_loss(policy_chosen - reference_chosen, policy_rejected - reference_rejected, beta, "ipo")


def aihf_dpo_loss(
    policy_demo: torch.Tensor | None,
    policy_chosen: torch.Tensor | None,
    policy_rejected: torch.Tensor | None,
    reference_chosen: torch.Tensor | None,
    reference_rejected: torch.Tensor | None,
    beta: float,
    w_demo: float = 1.0,
    w_pref: float = 1.0,
    preference: PreferenceTerm | PreferenceForm = "sigmoid",
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """AIHF-DPO (docs/method.md section 4, *derived*): supervised likelihood plus DPO.

        l = -w_D * mean log pi(y_E|x) + w_P * preference_loss(a, b, beta)

    ``policy_demo`` is log pi(y_E|x) per demonstration, summed or token-mean over the
    response as the caller chooses (``sequence_logprobs(average=...)``); the engine's
    default is the token-mean, which keeps the term's scale independent of length.
    Reduction: w_D = 0 is DPO (or IPO with ``preference='ipo'``). ``preference``: the preference
    term's :class:`PreferenceTerm` (or its form's name; ``preference_loss``); ``pair_weights``: WPO's.
    """
    _check_weights(w_demo, w_pref)
    _check_beta(beta)
    terms: list[torch.Tensor] = []
    if w_demo > 0:
        if policy_demo is None:
            raise ValueError("w_demo > 0 needs policy_demo")
        terms.append(-w_demo * policy_demo.mean())
    if w_pref > 0:
        term = _preference_term(
            (policy_chosen, policy_rejected, reference_chosen, reference_rejected), beta, preference, "reference",
            pair_weights,
        )
        terms.append(w_pref * term)
    return _total(terms)


def spin_loss(
    policy_demo: torch.Tensor,
    policy_generated: torch.Tensor,
    iterate_demo: torch.Tensor,
    iterate_generated: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """SPIN (docs/method.md section 5): DPO with the demonstration as the winner, a sample y' of
    the current iterate pi_t as the loser, and pi_t as the reference.

        l = -mean log sigma( beta * [ log pi(y_E|x)/pi_t(y_E|x) - log pi(y'|x)/pi_t(y'|x) ] )
    """
    return dpo_loss(policy_demo, policy_generated, iterate_demo, iterate_generated, beta)


def self_play_aihf_loss(
    policy_demo: torch.Tensor | None,
    policy_generated: torch.Tensor | None,
    iterate_demo: torch.Tensor | None,
    iterate_generated: torch.Tensor | None,
    policy_chosen: torch.Tensor | None,
    policy_rejected: torch.Tensor | None,
    iterate_chosen: torch.Tensor | None,
    iterate_rejected: torch.Tensor | None,
    beta: float,
    w_demo: float = 1.0,
    w_pref: float = 1.0,
    preference: PreferenceTerm | PreferenceForm = "sigmoid",
    pair_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Self-Play-AIHF (docs/method.md section 4, *derived*).

        l = w_D * spin_loss(pi; y_E vs y' ~ pi_t; reference pi_t)
          + w_P * preference_loss(a, b with reference pi_t, beta)

    pi_t is the current iterate (frozen within a round; it advances when the round's
    responses y' are regenerated). Reduction: w_P = 0 is SPIN. ``preference`` (its form, label
    smoothing, ...) shapes the preference term only: the SPIN term's "labels" (demonstration over
    sample) are not noisy votes.
    """
    _check_weights(w_demo, w_pref)
    terms: list[torch.Tensor] = []
    if w_demo > 0:
        if any(t is None for t in (policy_demo, policy_generated, iterate_demo, iterate_generated)):
            raise ValueError("w_demo > 0 needs policy and iterate log-probs of demonstrations and samples")
        terms.append(w_demo * spin_loss(policy_demo, policy_generated, iterate_demo, iterate_generated, beta))
    if w_pref > 0:
        term = _preference_term(
            (policy_chosen, policy_rejected, iterate_chosen, iterate_rejected), beta, preference, "iterate",
            pair_weights,
        )
        terms.append(w_pref * term)
    return _total(terms)


# ------------------------------------------- policy step of Algorithm 1 (section 3, step 1)


def kl_penalized_reward(
    reward: torch.Tensor, policy_logprobs: torch.Tensor, reference_logprobs: torch.Tensor, beta: float
) -> torch.Tensor:
    """Reward of a sample minus its KL penalty (docs/method.md sections 2-3, the inner problem).

        R(x, y) = r(x, y) - beta * [ log pi(y|x) - log pi_ref(y|x) ],   y ~ pi(.|x)

    The bracket is the single-sample estimate of KL(pi(.|x) || pi_ref(.|x)), so
    E_y[R] = E_y[r] - beta * KL: maximising it is the KL-regularised problem whose
    solution is pi_theta of section 2. Returned detached: R is a constant weight in the
    policy-gradient loss.
    """
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    return (reward - beta * (policy_logprobs - reference_logprobs)).detach()


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE leave-one-out advantages (Ahmadian et al. 2024; docs/method.md section 3, step 1).

    ``rewards`` has shape (B * k,), prompt-major: rows i*k .. i*k + k - 1 are the k samples
    of prompt i. For sample j of a prompt,
        A_j = R_j - (1 / (k - 1)) * sum_{l != j} R_l  =  k / (k - 1) * (R_j - mean_l R_l)
    The baseline uses only the other samples, so it is independent of y_j and the
    gradient estimate stays unbiased without a value network.
    """
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {k}")
    if rewards.numel() % k:
        raise ValueError(f"{rewards.numel()} rewards are not a whole number of groups of k={k}")
    grouped = rewards.detach().view(-1, k)
    return ((grouped - grouped.mean(-1, keepdim=True)) * (k / (k - 1))).reshape(-1)


def policy_gradient_loss(policy_logprobs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """On-policy REINFORCE loss (docs/method.md section 3, step 1).

        l_pi = -mean( A(x, y) * log pi(y|x) ),   y ~ pi(.|x), A held constant

    Its gradient is the policy-gradient estimate -E[A grad log pi(y|x)] of the
    KL-regularised objective when A comes from ``rloo_advantages(kl_penalized_reward(...))``.
    """
    return -(advantages.detach() * policy_logprobs).mean()


__all__ += ["kl_penalized_reward", "rloo_advantages", "policy_gradient_loss"]
