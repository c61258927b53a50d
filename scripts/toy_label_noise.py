"""The flipped-label toy experiment (docs/results.md, "Flipped preference labels"): the three
handlings of the same data side by side, and each handling's paired difference from plain
Bradley-Terry per seed (the same problem), mean and 95% t-interval over the seeds; one table
for the normalised return and one for the regularised value (which of the two an experiment
took as its primary metric, docs/results.md says).

    python scripts/toy_label_noise.py docs/results/toy-flipped   # reads <prefix>-{plain,conservative,robust}
    python scripts/toy_label_noise.py docs/results/toy-flipped plain robust15 robust robust45 \
        --out docs/results/toy-flipped-misstated.md

writes ``<prefix>.md`` (or ``--out``) and prints it: one column per handling folder
``<prefix>-<handling>``, the first the baseline of the paired differences. The folders come
from ``aihf experiment toy`` (the commands are in docs/results.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aihf.eval.stats import mean_interval, paired_difference, read_results, seed_scores

HANDLINGS = ("plain", "conservative", "robust")  # the default columns
METHODS = ("rlhf-reward", "aihf", "ml-irl")


METRICS = {"normalised_return": "Normalised return",
           "regularised_value": "Regularised value, E[r*] - beta KL(pi || pi_ref)"}


def scores(folder: Path, metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """(setting, method) -> seed -> ``metric``, from ``folder/results.json``."""
    return seed_scores(read_results(folder), metric)


def table(prefix: Path, metric: str, handlings: tuple[str, ...] = HANDLINGS) -> str:
    runs = {h: scores(prefix.parent / f"{prefix.name}-{h}", metric) for h in handlings}
    base, others = handlings[0], handlings[1:]
    cell = lambda stat: f"{stat['mean']:+.3f} ± {stat['ci95']:.3f}"  # noqa: E731
    lines = ["| setting | method | " + " | ".join((*handlings, *(f"{h} - {base}" for h in others))) + " |",
             "|---" * (2 + len(handlings) + len(others)) + "|"]
    for setting, method in runs[base]:
        if method not in METHODS:
            continue
        means = [mean_interval(list(runs[h][setting, method].values())) for h in handlings]
        shifts = [paired_difference(runs[base][setting, method], runs[h][setting, method]) for h in others]
        lines.append(f"| {setting} | {method} | " + " | ".join(f"{m['mean']:.3f} ± {m['ci95']:.3f}" for m in means)
                     + " | " + " | ".join(cell(s) for s in shifts) + " |")
    n = len(next(iter(runs[base].values())))
    return f"## {METRICS[metric]}\n\n" + "\n".join(lines) + (
        f"\n\nOn held-out prompts (1 = the expert), mean ± 95% t-interval over {n} seeds; the differences are "
        "paired by seed.\n")


def page(prefix: Path, handlings: tuple[str, ...] = HANDLINGS) -> str:
    """Both tables, as the page holds them."""
    return "\n".join(table(prefix, metric, handlings) for metric in METRICS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", type=Path, help="the folders' common prefix, e.g. docs/results/toy-flipped")
    parser.add_argument("handlings", nargs="*", default=list(HANDLINGS),
                        help=f"folder suffixes, the first the baseline (default: {' '.join(HANDLINGS)})")
    parser.add_argument("--out", type=Path, help="the page to write (default: <prefix>.md)")
    args = parser.parse_args()
    text = page(args.prefix, tuple(args.handlings))
    (args.out or args.prefix.with_suffix(".md")).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
