"""Demonstrations D and preferences P from responses scored by a gold reward, and the
Bradley-Terry labelling every synthetic preference of aihf uses.

docs/method.md section 6: prompts of the build split are answered by each SFT checkpoint; the
high-reward answers become demonstrations, and pairs of answers labelled by the gold
reward become preferences. Everything here works on plain (prompt, response, gold)
triples, so it is testable without a model:

* prompts are shuffled (seeded) and dealt out: the first ``demo_pool_factor *
  num_demonstrations`` form the demonstration pool, and the first ``num_preferences`` of
  the rest with two distinct responses give the preferences, so D and P never share a
  prompt, and the demonstrations depend on the demonstration options alone: settings with
  the same ``num_demonstrations``, ``demo_skip_top``, ``demo_pool_factor`` and seed get the
  same D whatever their number of preferences (dealing the preferences first would give a
  setting with fewer preferences a larger pool, hence better demonstrations);
* a preference compares two distinct responses to one prompt, drawn at random; the first
  wins with the Bradley-Terry probability sigma(r_a - r_b) of the gold rewards
  (:func:`bradley_terry_first_wins`, also the toy bandit's labels);
* ``num_eval_preferences`` held-out pairs come from the last pairable prompts (never
  training data): the reward models' held-out preference accuracy is measured on them;
* each pool prompt offers its best response; these are ranked by gold reward, the top
  ``demo_skip_top`` fraction is skipped (0 = the best demonstrations; 0.5 = demonstrations
  from the median down, the low-quality regime) and the next ``num_demonstrations`` are D.

Every response carries whether it finished (the model emitted eos before
``max_new_tokens``); the records keep it (``Demonstration.finished``,
``Preference.chosen_finished`` / ``rejected_finished``), so an answer cut at the cap is
trained on without eos, as the policy's own samples cut there are. The report gives the
share of finished responses among the demonstrations, the chosen and the rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from aihf.data import Demonstration, Preference


@dataclass(frozen=True)
class ScoredResponse:
    """A response to a prompt with its gold reward, and whether it finished (ended with eos
    before the token cap; ``False``: cut at ``max_new_tokens``)."""

    prompt: str
    response: str
    gold: float
    finished: bool


@dataclass(frozen=True)
class BuildConfig:
    """One data regime: how many demonstrations and preferences, and how good the demonstrations are."""

    name: str = "balanced"
    num_demonstrations: int = 1000
    num_preferences: int = 1000
    demo_skip_top: float = 0.0
    demo_pool_factor: float = 2.0  # pool = this x num_demonstrations prompts, ranked by their best answer
    num_eval_preferences: int = 0  # held-out pairs (the last pairable prompts) for the reward models' accuracy
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_eval_preferences < 0:
            raise ValueError(f"num_eval_preferences must be >= 0, got {self.num_eval_preferences}")
        if self.num_demonstrations < 0 or self.num_preferences < 0:
            raise ValueError(
                f"counts must be >= 0, got {self.num_demonstrations} demonstrations "
                f"and {self.num_preferences} preferences"
            )
        if not 0 <= self.demo_skip_top < 1:
            raise ValueError(f"demo_skip_top must be in [0, 1), got {self.demo_skip_top}")
        if self.demo_pool_factor < 1:
            raise ValueError(f"demo_pool_factor must be >= 1, got {self.demo_pool_factor}")

    @property
    def demo_pool(self) -> int:
        """Prompts in the demonstration pool: ``round(demo_pool_factor * num_demonstrations)``."""
        return round(self.demo_pool_factor * self.num_demonstrations)


@dataclass(frozen=True)
class RatioSweep:
    """Settings that split one budget of ``total`` records between D and P in several ratios."""

    total: int = 2000
    demo_fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 0.75, 0.9])
    demo_skip_top: float = 0.0
    demo_pool_factor: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [f for f in self.demo_fractions if not 0 <= f <= 1]
        if bad or not self.demo_fractions:
            raise ValueError(f"demo_fractions must be a non-empty list of numbers in [0, 1], got {self.demo_fractions}")

    def settings(self) -> list[BuildConfig]:
        """(round(f * total), total - that) demonstrations and preferences, named ``ratio-<f>``, for each f."""
        return [
            BuildConfig(
                name=f"ratio-{fraction:g}",
                num_demonstrations=round(fraction * self.total),
                num_preferences=self.total - round(fraction * self.total),
                demo_skip_top=self.demo_skip_top,
                demo_pool_factor=self.demo_pool_factor,
                seed=self.seed,
            )
            for fraction in self.demo_fractions
        ]


@dataclass(frozen=True)
class BuiltData:
    """D, P and a report of what went into them."""

    demonstrations: list[Demonstration]
    preferences: list[Preference]
    report: dict[str, float]
    eval_preferences: list[Preference] = field(default_factory=list)


def bradley_terry_first_wins(reward_a, reward_b, draws, temperature: float = 1.0) -> np.ndarray:
    """Bradley-Terry labels (docs/method.md section 2): whether a beats b, pair by pair, with

        P(a > b) = sigmoid((r_a - r_b) / temperature),

    decided by the caller's uniform ``draws`` in [0, 1): a wins where ``draws < P(a > b)``.
    The draws come from the caller's generator (numpy or torch), so a labelling keeps its
    random stream. The sigmoid is 0.5 * (1 + tanh(z / 2)), which does not overflow. Arrays
    (or tensors) of one shape; returns a boolean array."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    margin = (np.asarray(reward_a, dtype=np.float64) - np.asarray(reward_b, dtype=np.float64)) / temperature
    return np.asarray(draws, dtype=np.float64) < 0.5 * (1.0 + np.tanh(0.5 * margin))


def group_by_prompt(samples: Iterable[ScoredResponse]) -> list[list[ScoredResponse]]:
    """Responses grouped by prompt (prompts in first-seen order), repeated response texts dropped."""
    groups: dict[str, dict[str, ScoredResponse]] = {}
    for sample in samples:
        groups.setdefault(sample.prompt, {}).setdefault(sample.response, sample)
    return [list(group.values()) for group in groups.values()]


def label_pairs(groups: list[list[ScoredResponse]], rng: np.random.Generator) -> list[Preference]:
    """One Bradley-Terry-labelled pair of distinct responses per group (each group has >= 2)."""
    pairs = [tuple(rng.choice(len(group), size=2, replace=False)) for group in groups]
    first = [group[i] for group, (i, _) in zip(groups, pairs)]
    second = [group[j] for group, (_, j) in zip(groups, pairs)]
    wins = bradley_terry_first_wins([s.gold for s in first], [s.gold for s in second], rng.random(len(groups)))
    def pair(chosen: ScoredResponse, rejected: ScoredResponse) -> Preference:
        return Preference(
            chosen.prompt, chosen.response, rejected.response,
            chosen_finished=chosen.finished, rejected_finished=rejected.finished,
        )

    return [pair(a, b) if won else pair(b, a) for a, b, won in zip(first, second, wins)]


def pick_demonstrations(groups: list[list[ScoredResponse]], count: int, skip_top: float) -> list[ScoredResponse]:
    """Each group's best response, ranked by gold; skip the top ``skip_top`` fraction, take ``count``."""
    best = sorted((max(group, key=lambda s: s.gold) for group in groups), key=lambda s: -s.gold)
    start = round(skip_top * len(best))
    if start + count > len(best):
        raise ValueError(
            f"{count} demonstrations after skipping the top {start} need {start + count} prompts in the pool, "
            f"only {len(best)} are left (raise demo_pool_factor)"
        )
    return best[start : start + count]


def build_datasets(samples: Iterable[ScoredResponse], config: BuildConfig) -> BuiltData:
    """D and P for one setting (see the module docstring), with a report of their gold rewards."""
    groups = group_by_prompt(samples)
    rng = np.random.default_rng([config.seed, 0xB1D])
    shuffled = [groups[i] for i in rng.permutation(len(groups))]
    size = config.demo_pool
    if size > len(shuffled):
        raise ValueError(
            f"a demonstration pool of {size} prompts (demo_pool_factor {config.demo_pool_factor:g} x "
            f"{config.num_demonstrations} demonstrations) needs {size} prompts, only {len(shuffled)} were answered"
        )
    pool, rest = shuffled[:size], shuffled[size:]
    pairable = [group for group in rest if len(group) >= 2]
    held = config.num_eval_preferences
    if len(pairable) < config.num_preferences + held:
        raise ValueError(
            f"{config.num_preferences} preferences and {held} held-out ones need as many prompts with two distinct "
            f"responses, only {len(pairable)} of the {len(rest)} prompts left after the demonstration pool of {size} have them"
        )
    preferences = label_pairs(pairable[: config.num_preferences], rng)
    # held-out pairs from the far end, labelled with their own stream: the same for every
    # setting with this pool, and no change to P
    eval_preferences = label_pairs(pairable[len(pairable) - held :], np.random.default_rng([config.seed, 0xE7A1])) if held else []
    demos = pick_demonstrations(pool, config.num_demonstrations, config.demo_skip_top)
    gold_of = {(s.prompt, s.response): s.gold for group in groups for s in group}
    share = lambda flags: float(np.mean(flags)) if len(flags) else float("nan")  # noqa: E731
    report = {
        "prompts": len(groups),
        "responses": sum(len(group) for group in groups),
        "demonstrations": len(demos),
        "preferences": len(preferences),
        "mean_gold_all": float(np.mean([s.gold for group in groups for s in group])) if groups else float("nan"),
        "mean_gold_demonstrations": float(np.mean([s.gold for s in demos])) if demos else float("nan"),
        "preferences_agreeing_with_gold": (
            float(np.mean([gold_of[p.prompt, p.chosen] > gold_of[p.prompt, p.rejected] for p in preferences]))
            if preferences
            else float("nan")
        ),
        "finished_all": share([s.finished for group in groups for s in group]),
        "finished_demonstrations": share([s.finished for s in demos]),
        "finished_chosen": share([p.chosen_finished for p in preferences]),
        "finished_rejected": share([p.rejected_finished for p in preferences]),
    }
    demonstrations = [Demonstration(s.prompt, s.response, finished=s.finished) for s in demos]
    report["eval_preferences"] = len(eval_preferences)
    return BuiltData(demonstrations, preferences, report, eval_preferences)
