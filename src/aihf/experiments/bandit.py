"""A problem whose true reward is known: AIHF Algorithm 1 against its one-data-kind reductions.

Setting (a contextual bandit, the smallest instance of docs/method.md section 2):
- each prompt x has K candidate responses y with features phi(x, y) in R^d;
- the true reward is r*(x, y) = theta* . phi(x, y), the reference policy pi_ref is uniform;
- the demonstrator is the soft-optimal policy pi*(y|x) ∝ pi_ref(y|x) exp(r*(x,y) / beta)
  (its "temperature" can be raised to make low-quality demonstrations);
- preferences compare two uniformly drawn responses, labelled by Bradley-Terry on r*, each
  label then flipped with chance ``label_flip`` (annotator error; 0 by default).

The learner fits a linear reward r_theta = theta . phi with Algorithm 1 (docs/method.md
section 3): a policy step (a few natural-gradient steps of a tabular softmax policy on
E_pi[r_theta] - beta KL(pi || pi_ref)), then a reward step on demonstrations
versus samples of the current policy plus preferences, through
``objective.aihf_reward_loss``. Methods differ only in (w_demo, w_pref): AIHF (1, 1),
ML-IRL (1, 0) and the RLHF reward model (0, 1).

The implicit-reward methods (``methods`` may add them: AIHF-DPO (1, 1), DPO (0, 1), SFT (1, 0))
train the policy itself, pi_theta(y|x) ∝ pi_ref(y|x) exp(theta . phi(x, y) / beta), through
``objective.aihf_dpo_loss`` in ``preference_form``; its implicit reward beta log(pi_theta / pi_ref)
is theta . phi up to a per-prompt constant, so one theta is scored the same way for both kinds.
The family holds pi* (theta = theta*), and AIHF-DPO's gradient is Algorithm 1's reward gradient
at the exact policy pi_theta with the demonstration term scaled by 1 / beta
(tests/test_bandit.py::test_aihf_dpo_gradient_is_algorithm_ones_at_the_exact_policy;
docs/method.md section 4).

With ``tune`` each method picks one of its configurations (``candidates``: AIHF its weight
ratio w_P / w_D, ML-IRL and the RLHF reward their learning rate) on validation problems
(``tune_seeds``: their own features, true reward and data) by the mean regularised value, and
the test seeds then train with the chosen one.

Evaluation is on prompts never seen in training: the normalised return of the policy the
learned reward induces, (J(pi_theta) - J(pi_ref)) / (J(pi*) - J(pi_ref)) with J the
expected true reward; the same normalisation of the regularised value V = J - beta KL(pi ||
pi_ref), the objective pi* maximises, so at most 1 (the return alone credits a reward steeper
than the true one: its greedier policy can score above 1); and the correlation of learned and
true rewards after removing each prompt's mean (a reward is identified only up to a
per-prompt constant; the correlation ignores the reward's scale).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from aihf.data.builders import bradley_terry_first_wins
from aihf.eval.stats import interval_caption, mean_interval
from aihf.objective import (
    LabelNoise,
    PreferenceForm,
    PreferenceTerm,
    aihf_dpo_loss,
    aihf_reward_loss,
    check_label_noise,
    self_play_aihf_loss,
)
from aihf.runtime import check_finite, provenance, set_seed

METRICS = ("normalised_return", "regularised_value", "reward_correlation")


@dataclass(frozen=True)
class ToyMethod:
    """A method as its two weights and where its reward lives: a reward fitted by Algorithm 1
    (``explicit``) or the policy's own log-ratio (``implicit``); an implicit method's demonstration
    term is the likelihood, or with ``self_play`` SPIN's comparison with the iterate's samples."""

    w_demo: float
    w_pref: float
    reward: Literal["explicit", "implicit"]
    self_play: bool = False


METHODS: dict[str, ToyMethod] = {
    "aihf": ToyMethod(1.0, 1.0, "explicit"),
    "ml-irl": ToyMethod(1.0, 0.0, "explicit"),
    "rlhf-reward": ToyMethod(0.0, 1.0, "explicit"),
    "aihf-dpo": ToyMethod(1.0, 1.0, "implicit"),
    "dpo": ToyMethod(0.0, 1.0, "implicit"),
    "sft": ToyMethod(1.0, 0.0, "implicit"),
    "self-play-aihf": ToyMethod(1.0, 1.0, "implicit", self_play=True),
    "spin": ToyMethod(1.0, 0.0, "implicit", self_play=True),
}
EXPLICIT_METHODS = [name for name, method in METHODS.items() if method.reward == "explicit"]  # the default runs


@dataclass
class ToySetting:
    """One data regime: how many demonstrations and preferences, how good the demonstrator is,
    and how often a preference label is wrong."""

    name: str
    num_demonstrations: int
    num_preferences: int
    demo_temperature: float = 1.0  # demonstrator is pi_ref * exp(r* / (beta * T)): T > 1 is worse
    label_flip: float = 0.0  # chance each preference label is flipped after its Bradley-Terry draw

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_flip < 0.5:
            raise ValueError(f"setting {self.name!r}: label_flip must be in [0, 0.5), got {self.label_flip}")


@dataclass
class ToyConfig:
    """Sizes and optimisation settings of the toy experiment."""

    num_prompts: int = 200
    num_eval_prompts: int = 200
    num_responses: int = 8
    feature_dim: int = 8
    beta: float = 0.5
    iterations: int = 300
    steps_per_round: int = 50  # self-play: the iterate pi_t and its samples y' are renewed this often
    self_play_pref_reference: Literal["iterate", "start"] = "iterate"  # Self-Play-AIHF's preference reference
    policy_steps: int = 2
    policy_rate: float = 0.2
    reward_lr: float = 0.05
    batch_size: int = 32
    reward_l2: float = 1e-3
    label_smoothing: float = 0.0  # the reward step's assumed flip rate (objective.smoothed_logsigmoid)
    label_noise: LabelNoise = "conservative"  # how label_smoothing enters: conservative or robust
    methods: list[str] = field(default_factory=lambda: list(EXPLICIT_METHODS))  # any of METHODS
    preference_form: PreferenceForm = "sigmoid"  # the implicit-reward methods' preference term
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    tune: bool = False  # choose each method's configuration on tune_seeds' problems first
    tune_seeds: list[int] = field(default_factory=lambda: [100, 101, 102])
    aihf_pref_weights: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0])  # w_P, w_D = 1
    baseline_lr_factors: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0, 2.0, 5.0])  # x reward_lr
    # dpo with tune: the preference term's own beta as a second axis (IPO's target margin is 1 / (2 beta));
    # empty: the family's beta
    preference_betas: list[float] = field(default_factory=list)
    settings: list[ToySetting] = field(
        default_factory=lambda: [
            ToySetting("balanced", 200, 200),
            ToySetting("few-preferences", 200, 10),
            ToySetting("low-quality-demos", 200, 200, demo_temperature=8.0),
        ]
    )

    def preference_term(self) -> PreferenceTerm:
        """The implicit-reward methods' preference term: ``preference_form`` with the label smoothing."""
        return PreferenceTerm(self.preference_form, self.label_smoothing, self.label_noise)

    def __post_init__(self) -> None:
        check_label_noise(self.label_smoothing, self.label_noise)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods {unknown or self.methods}: choose among {', '.join(METHODS)}")
        PreferenceTerm(self.preference_form)  # an unknown form is an error whichever methods run
        if self.self_play_pref_reference not in ("iterate", "start"):
            raise ValueError(f"self_play_pref_reference must be iterate or start, got {self.self_play_pref_reference!r}")
        if any(METHODS[m].reward == "implicit" for m in self.methods):
            self.preference_term()  # and so is a form that the label smoothing does not fit
        if any(b <= 0 for b in self.preference_betas):
            raise ValueError(f"preference_betas must be > 0, got {self.preference_betas}")
        if self.tune and set(self.tune_seeds) & set(self.seeds):
            raise ValueError(f"tune_seeds {self.tune_seeds} and seeds {self.seeds} share a seed: a test problem "
                             "would choose its own configuration")


@dataclass(frozen=True)
class Candidate:
    """One configuration of a method: its weights and learning rate."""

    label: str
    w_demo: float
    w_pref: float
    reward_lr: float
    pref_beta: float | None = None  # the implicit preference term's beta; None: the family's


def candidates(method: str, config: ToyConfig) -> list[Candidate]:
    """The configurations ``tune`` chooses among (one, the defaults, without it): AIHF's
    w_P / w_D ratios at w_D = 1, or a single-term method's learning-rate factors (for the implicit
    preference-only method, ``dpo``, times ``preference_betas`` when given)."""
    w_demo, w_pref = METHODS[method].w_demo, METHODS[method].w_pref
    if not config.tune:
        return [Candidate("default", w_demo, w_pref, config.reward_lr)]
    if w_demo and w_pref:
        return [Candidate(f"w_P/w_D={w:g}", w_demo, w, config.reward_lr) for w in config.aihf_pref_weights]
    rates = [f * config.reward_lr for f in config.baseline_lr_factors]
    if w_pref and not METHODS[method].self_play and METHODS[method].reward == "implicit" and config.preference_betas:
        return [Candidate(f"lr={lr:g},beta={b:g}", w_demo, w_pref, lr, b) for lr in rates for b in config.preference_betas]
    return [Candidate(f"lr={lr:g}", w_demo, w_pref, lr) for lr in rates]


@dataclass
class ToyProblem:
    """Features, true reward and data of one seed and setting."""

    features: torch.Tensor  # (P, K, d), training prompts
    eval_features: torch.Tensor  # (P_eval, K, d), held-out prompts
    true_theta: torch.Tensor  # (d,)
    demo_prompts: torch.Tensor  # (N_D,)
    demo_responses: torch.Tensor  # (N_D,)
    pref_prompts: torch.Tensor  # (N_P,)
    pref_chosen: torch.Tensor  # (N_P,)
    pref_rejected: torch.Tensor  # (N_P,)


def soft_optimal_policy(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """pi(y|x) ∝ pi_ref(y|x) exp(r(x,y)/beta) with uniform pi_ref (docs/method.md section 2)."""
    return torch.softmax(rewards / beta, dim=-1)


def make_problem(config: ToyConfig, setting: ToySetting, seed: int) -> ToyProblem:
    """Draw features, the true reward, demonstrations and Bradley-Terry-labelled preferences (with
    ``setting.label_flip`` > 0, each label then flipped with that chance, drawn after everything
    else so the rest of the problem is the one the same seed draws without flips)."""
    gen = torch.Generator().manual_seed(seed)
    k, d = config.num_responses, config.feature_dim
    features = torch.randn(config.num_prompts, k, d, generator=gen, dtype=torch.float64)
    eval_features = torch.randn(config.num_eval_prompts, k, d, generator=gen, dtype=torch.float64)
    true_theta = torch.randn(d, generator=gen, dtype=torch.float64)
    true_rewards = features @ true_theta

    demo_prompts = torch.randint(config.num_prompts, (setting.num_demonstrations,), generator=gen)
    demonstrator = soft_optimal_policy(true_rewards / setting.demo_temperature, config.beta)
    demo_responses = torch.multinomial(demonstrator[demo_prompts], 1, generator=gen).squeeze(-1)

    pref_prompts = torch.randint(config.num_prompts, (setting.num_preferences,), generator=gen)
    first = torch.randint(k, (setting.num_preferences,), generator=gen)
    second = (first + torch.randint(1, k, (setting.num_preferences,), generator=gen)) % k
    draws = torch.rand(setting.num_preferences, generator=gen, dtype=torch.float64)
    first_wins = torch.from_numpy(bradley_terry_first_wins(
        true_rewards[pref_prompts, first].numpy(), true_rewards[pref_prompts, second].numpy(), draws.numpy()
    ))
    if setting.label_flip > 0:
        first_wins ^= torch.rand(setting.num_preferences, generator=gen, dtype=torch.float64) < setting.label_flip
    return ToyProblem(
        features=features,
        eval_features=eval_features,
        true_theta=true_theta,
        demo_prompts=demo_prompts,
        demo_responses=demo_responses,
        pref_prompts=pref_prompts,
        pref_chosen=torch.where(first_wins, first, second),
        pref_rejected=torch.where(first_wins, second, first),
    )


def policy_step(
    logits: torch.Tensor, rewards: torch.Tensor, beta: float, steps: int, rate: float
) -> torch.Tensor:
    """A few policy updates toward argmax E_pi[r] - beta KL(pi || pi_ref) (Algorithm 1, step 1).

    Tabular softmax policy, uniform pi_ref, exact expectations. Each update is the
    entropy-regularised natural policy gradient step (Cen et al., 2021) with step size
    ``rate`` in (0, 1]:  logits <- (1 - rate) * logits + rate * (r / beta + log pi_ref),
    which contracts toward the soft-optimal policy's logits by (1 - rate) per step.
    """
    if not 0 < rate <= 1:
        raise ValueError(f"policy rate must be in (0, 1], got {rate}")
    target = rewards / beta - math.log(logits.size(-1))
    for _ in range(steps):
        logits = (1 - rate) * logits + rate * target
    return logits


def normalised_return(theta: torch.Tensor, problem: ToyProblem, beta: float) -> float:
    """(J(pi_theta) - J(pi_ref)) / (J(pi*) - J(pi_ref)) on held-out prompts (1 = the expert's)."""
    true = problem.eval_features @ problem.true_theta
    learned = problem.eval_features @ theta
    value = lambda policy: float((policy * true).sum(-1).mean())  # noqa: E731
    reference = float(true.mean())
    expert = value(soft_optimal_policy(true, beta))
    return (value(soft_optimal_policy(learned, beta)) - reference) / (expert - reference)


def regularised_value(theta: torch.Tensor, problem: ToyProblem, beta: float) -> float:
    """(V(pi_theta) - V(pi_ref)) / (V(pi*) - V(pi_ref)) on held-out prompts, V(pi) = E_x[ E_pi r*
    - beta KL(pi || pi_ref) ]: 1 only for the expert's policy, below 1 for any other, a steeper
    reward's greedier policy included (docs/method.md section 2's inner problem)."""
    true = problem.eval_features @ problem.true_theta
    log_k = math.log(true.size(-1))  # KL to the uniform pi_ref = sum pi log pi + log K

    def value(logits: torch.Tensor) -> float:
        log_pi = torch.log_softmax(logits, dim=-1)
        pi = log_pi.exp()
        return float(((pi * true).sum(-1) - beta * (pi * (log_pi + log_k)).sum(-1)).mean())

    reference = float(true.mean())
    expert = value(true / beta)
    return (value(problem.eval_features @ theta / beta) - reference) / (expert - reference)


def reward_correlation(theta: torch.Tensor, problem: ToyProblem) -> float:
    """Pearson correlation of learned and true rewards on held-out prompts, per-prompt centred."""
    true = problem.eval_features @ problem.true_theta
    learned = problem.eval_features @ theta
    true = (true - true.mean(-1, keepdim=True)).flatten()
    learned = (learned - learned.mean(-1, keepdim=True)).flatten()
    return float(torch.corrcoef(torch.stack([true, learned]))[0, 1])


def fit_reward(
    problem: ToyProblem, config: ToyConfig, w_demo: float, w_pref: float, seed: int, reward_lr: float | None = None
) -> tuple[torch.Tensor, list[float]]:
    """Algorithm 1 (docs/method.md section 3) on the toy problem; returns theta and the loss curve.
    ``reward_lr``: Adam's step size (None: ``config.reward_lr``)."""
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed + 10_000)
    theta = torch.zeros(config.feature_dim, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=config.reward_lr if reward_lr is None else reward_lr)
    logits = torch.zeros(config.num_prompts, config.num_responses, dtype=torch.float64)
    losses = []
    for step in range(config.iterations):
        with torch.no_grad():
            rewards = problem.features @ theta
            logits = policy_step(logits, rewards, config.beta, config.policy_steps, config.policy_rate)
        demo = torch.randint(len(problem.demo_prompts), (config.batch_size,), generator=gen)
        pref = torch.randint(len(problem.pref_prompts), (config.batch_size,), generator=gen)
        prompts = problem.demo_prompts[demo]
        sampled = torch.multinomial(torch.softmax(logits[prompts], -1), 1, generator=gen).squeeze(-1)
        reward = lambda p, y: problem.features[p, y] @ theta  # noqa: E731
        loss = aihf_reward_loss(
            reward(prompts, problem.demo_responses[demo]) if w_demo else None,
            reward(prompts, sampled) if w_demo else None,
            reward(problem.pref_prompts[pref], problem.pref_chosen[pref]) if w_pref else None,
            reward(problem.pref_prompts[pref], problem.pref_rejected[pref]) if w_pref else None,
            w_demo=w_demo,
            w_pref=w_pref,
            reward_l2=config.reward_l2,
            label_smoothing=config.label_smoothing,
            label_noise=config.label_noise,
        )
        losses.append(check_finite(loss, "toy reward loss", step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return theta.detach(), losses


def policy_logprobs(theta: torch.Tensor, features: torch.Tensor, beta: float) -> torch.Tensor:
    """log pi_theta(y|x) for every response of the given prompts' ``features`` (..., K, d):
    pi_theta ∝ pi_ref exp(theta . phi / beta) with uniform pi_ref, i.e. a softmax over K."""
    return torch.log_softmax(features @ theta / beta, dim=-1)


def _pick(log_probs: torch.Tensor | None, responses: torch.Tensor) -> torch.Tensor | None:
    """Each row's log-prob of its response (None stays None: a term weighted 0)."""
    return None if log_probs is None else log_probs.gather(-1, responses[:, None])[:, 0]


def fit_policy(
    problem: ToyProblem, config: ToyConfig, w_demo: float, w_pref: float, seed: int, lr: float | None = None,
    self_play: bool = False, pref_beta: float | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """AIHF-DPO (docs/method.md section 4; DPO at w_D = 0, SFT at w_P = 0) on the policy family
    pi_theta ∝ pi_ref exp(theta . phi / beta): Adam on ``objective.aihf_dpo_loss`` with
    ``config.preference_form``, the same iterations, batch sizes, step size and batch generator
    seed as ``fit_reward`` (whose policy samples draw from that generator too, so the batches
    agree at the first step only); returns theta (the implicit reward's weights) and the loss curve.

    ``self_play``: Self-Play-AIHF (SPIN at w_P = 0) through ``objective.self_play_aihf_loss``: every
    ``config.steps_per_round`` steps the current policy becomes the iterate pi_t, the reference of
    both terms (the preference term's stays pi_ref with ``config.self_play_pref_reference: start``),
    and draws one response y' per demonstration, which its prompt's y_E is compared with.

    ``pref_beta``: the preference term's beta (IPO's target margin 1 / (2 pref_beta)) where it is not the
    family's ``config.beta``; the policy family keeps ``config.beta``."""
    if pref_beta is not None and self_play:
        raise ValueError("pref_beta is for the single-stage AIHF-DPO family, not self-play")
    set_seed(seed)
    gen = torch.Generator().manual_seed(seed + 10_000)
    theta = torch.zeros(config.feature_dim, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=config.reward_lr if lr is None else lr)
    reference = torch.full((config.batch_size,), -math.log(config.num_responses), dtype=torch.float64)
    term = config.preference_term()
    losses = []
    for step in range(config.iterations):
        if self_play and step % config.steps_per_round == 0:
            iterate = theta.detach().clone()
            samples = torch.multinomial(soft_optimal_policy(problem.features[problem.demo_prompts] @ iterate, config.beta),
                                        1, generator=gen)[:, 0]
        demo = torch.randint(len(problem.demo_prompts), (config.batch_size,), generator=gen)
        pref = torch.randint(len(problem.pref_prompts), (config.batch_size,), generator=gen)
        demo_features, pref_features = problem.features[problem.demo_prompts[demo]], problem.features[problem.pref_prompts[pref]]
        demonstrated, chosen, rejected = problem.demo_responses[demo], problem.pref_chosen[pref], problem.pref_rejected[pref]
        policy_demo = policy_logprobs(theta, demo_features, config.beta) if w_demo else None
        policy_pref = policy_logprobs(theta, pref_features, config.beta) if w_pref else None
        pairs = [_pick(policy_pref, chosen), _pick(policy_pref, rejected)] if w_pref else [None, None]
        if self_play:
            iterate_demo = policy_logprobs(iterate, demo_features, config.beta)
            demo_terms = [_pick(policy_demo, demonstrated), _pick(policy_demo, samples[demo]),
                          _pick(iterate_demo, demonstrated), _pick(iterate_demo, samples[demo])]
            if w_pref and config.self_play_pref_reference == "iterate":
                iterate_pref = policy_logprobs(iterate, pref_features, config.beta)
                pairs += [_pick(iterate_pref, chosen), _pick(iterate_pref, rejected)]
            else:  # the starting policy, pi_ref
                pairs += [reference if w_pref else None] * 2
            loss = self_play_aihf_loss(*demo_terms, *pairs, config.beta, w_demo, w_pref, term)
        else:
            pairs += [reference if w_pref else None] * 2
            loss = aihf_dpo_loss(_pick(policy_demo, demonstrated), pairs[0], pairs[1], pairs[2], pairs[3],
                                 config.beta if pref_beta is None else pref_beta, w_demo, w_pref, term)
        losses.append(check_finite(loss, "toy policy loss", step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return theta.detach(), losses


def evaluate_run(config: ToyConfig, problem: ToyProblem, candidate: Candidate, seed: int, method: str = "aihf") -> dict:
    """Fit one candidate of ``method`` (its kind: METHODS) on seed ``seed``'s ``problem`` and score it on its
    held-out prompts: a reward by Algorithm 1 (``explicit``) or the policy itself (``implicit``)."""
    kind = METHODS[method]
    if kind.reward == "explicit":
        theta, losses = fit_reward(problem, config, candidate.w_demo, candidate.w_pref, seed, candidate.reward_lr)
    else:
        theta, losses = fit_policy(problem, config, candidate.w_demo, candidate.w_pref, seed, candidate.reward_lr,
                                   kind.self_play, candidate.pref_beta)
    return {
        "seed": seed,
        "normalised_return": normalised_return(theta, problem, config.beta),
        "regularised_value": regularised_value(theta, problem, config.beta),
        "reward_correlation": reward_correlation(theta, problem),
        "final_loss": losses[-1],
    }


def run(config: ToyConfig, output_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Every method on every setting and seed; returns (and optionally writes) the results.
    With ``config.tune`` each (setting, method) first scores its candidates on the tune seeds
    (``validation``: candidate -> mean regularised value) and the test seeds train the best
    (``chosen``)."""
    results: dict = {"config": asdict(config), "versions": provenance(), "settings": {}}
    tune_seeds = config.tune_seeds if config.tune else []
    total = len(config.settings) * sum(len(candidates(m, config)) * len(tune_seeds) + len(config.seeds)
                                       for m in config.methods)
    bar = tqdm(total=total, desc="toy AIHF", unit="run", disable=not progress)
    for setting in config.settings:
        problems = {seed: make_problem(config, setting, seed) for seed in [*tune_seeds, *config.seeds]}  # one per seed
        for method in config.methods:
            entry = results["settings"].setdefault(setting.name, {}).setdefault(method, {"runs": []})
            options = candidates(method, config)
            chosen = options[0]
            if config.tune:
                entry["validation"] = {}
                for candidate in options:
                    bar.set_postfix_str(f"{setting.name}/{method}/{candidate.label}: validation")
                    values = [evaluate_run(config, problems[seed], candidate, seed, method)["regularised_value"]
                              for seed in tune_seeds]
                    bar.update(len(values))
                    entry["validation"][candidate.label] = sum(values) / len(values)
                chosen = max(options, key=lambda c: entry["validation"][c.label])
                entry["chosen"] = chosen.label
            for seed in config.seeds:
                bar.set_postfix_str(f"{setting.name}/{method}/seed {seed}")
                entry["runs"].append(evaluate_run(config, problems[seed], chosen, seed, method))
                bar.update()
    bar.close()
    for methods in results["settings"].values():
        for entry in methods.values():
            for metric in METRICS:
                entry[metric] = mean_interval([run[metric] for run in entry["runs"]])
    if output_dir is not None:
        write_outputs(results, Path(output_dir))
    return results


def results_table(results: dict) -> str:
    """A markdown table: one row per setting and method."""
    tuned = any("chosen" in e for methods in results["settings"].values() for e in methods.values())
    lines = [
        "| setting | method | " + ("chosen on validation | " if tuned else "") + "normalised return (1 = expert) "
        "| regularised value (1 = expert, the most) | reward correlation |",
        "|---|---|---|---|---|" + ("---|" if tuned else ""),
    ]
    for setting, methods in results["settings"].items():
        for method, entry in methods.items():
            cells = " | ".join(f"{entry[m]['mean']:.3f} ± {entry[m]['ci95']:.3f}" for m in METRICS)
            chosen = f"{entry.get('chosen', '-')} | " if tuned else ""
            lines.append(f"| {setting} | {method} | {chosen}{cells} |")
    return "\n".join(lines)


def write_outputs(results: dict, output_dir: Path) -> dict[str, Path]:
    """results.json, results.md and a bar chart (PNG) of the normalised return."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": output_dir / "results.json",
        "table": output_dir / "results.md",
        "plot": output_dir / "normalised_return.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2), encoding="utf-8")
    paths["table"].write_text(results_table(results) + "\n", encoding="utf-8")
    settings = list(results["settings"])
    methods = list(next(iter(results["settings"].values())))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(7, 4.4))
    for i, method in enumerate(methods):
        stats_ = [results["settings"][s][method]["normalised_return"] for s in settings]
        ax.bar(
            np.arange(len(settings)) + i * width,
            [s["mean"] for s in stats_],
            width,
            yerr=[s["ci95"] for s in stats_],
            capsize=3,
            label=method,
        )
    ax.set_xticks(np.arange(len(settings)) + width * (len(methods) - 1) / 2, settings)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_ylabel("normalised return on held-out prompts")
    seeds = [e["normalised_return"]["n"] for m in results["settings"].values() for e in m.values()]
    ax.set_title("Toy problem: reward learned from demonstrations and/or preferences\n"
                 f"{interval_caption(seeds)}", fontsize=10)
    ax.legend(ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    fig.tight_layout()
    fig.savefig(paths["plot"], dpi=120)
    plt.close(fig)
    return paths
