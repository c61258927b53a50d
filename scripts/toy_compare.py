"""Two views of toy runs (docs/results.md, "The single-stage variants on the toy"), each a
mean ± 95% t-interval over seeds with differences paired by seed (the same problem):

    python scripts/toy_compare.py pairs docs/results/toy-implicit-tuned aihf-dpo:aihf dpo:rlhf-reward sft:ml-irl
        # writes <folder>/pairs.md: each pair's difference A - B in every setting of one run
    python scripts/toy_compare.py forms docs/results/toy-forms sigmoid
        # writes <folder>.md: one row per sub-folder (one run each, e.g. one preference form),
        # its one method in every setting, and its difference from the base sub-folder's

Both on the regularised value (the toy's primary metric since the tuned runs) and the
normalised return. The folders come from ``aihf experiment toy`` (commands in docs/results.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aihf.eval.stats import mean_interval, paired_difference, read_results, seed_scores

METRICS = {"regularised_value": "Regularised value, E[r*] - beta KL(pi || pi_ref)",
           "normalised_return": "Normalised return"}


def _cell(stat: dict, signed: bool = False) -> str:
    return f"{stat['mean']:{'+' if signed else ''}.3f} ± {stat['ci95']:.3f}"


def _footer(n: int) -> str:
    return f"\n\nOn held-out prompts (1 = the expert), mean ± 95% t-interval over {n} seeds; differences paired by seed.\n"


def pairs_page(folder: Path, pairs: list[tuple[str, str]]) -> str:
    """Per metric, a table: one row per setting, per pair A:B the means of A and B and A - B."""
    results = read_results(folder)
    parts = []
    for metric, title in METRICS.items():
        runs = seed_scores(results, metric)
        settings = list(dict.fromkeys(setting for setting, _ in runs))
        lines = ["| setting | " + " | ".join(f"{a} | {b} | {a} - {b}" for a, b in pairs) + " |",
                 "|---" * (1 + 3 * len(pairs)) + "|"]
        for setting in settings:
            cells = []
            for a, b in pairs:
                cells += [_cell(mean_interval(list(runs[setting, a].values()))),
                          _cell(mean_interval(list(runs[setting, b].values()))),
                          _cell(paired_difference(runs[setting, b], runs[setting, a]), signed=True)]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        n = len(next(iter(runs.values())))
        parts.append(f"## {title}\n\n" + "\n".join(lines) + _footer(n))
    return "\n".join(parts)


def forms_page(folder: Path, base: str) -> str:
    """Per metric, a table: one row per sub-folder of ``folder`` (its single method), per setting
    the mean and the paired difference from ``base``'s; the tuned choice where there is one."""
    variants = sorted(p.parent.name for p in folder.glob("*/results.json"))
    if base not in variants:
        raise ValueError(f"no {folder / base / 'results.json'}")
    variants.remove(base)
    variants.insert(0, base)
    results = {v: read_results(folder / v) for v in variants}
    parts = []
    for metric, title in METRICS.items():
        runs = {v: seed_scores(results[v], metric) for v in variants}
        keys = list(runs[base])
        if any(list(runs[v]) != keys for v in variants) or len({method for _, method in keys}) != 1:
            raise ValueError(f"each of {variants} must hold one method in the same settings")
        lines = ["| variant | " + " | ".join(f"{s} | chosen | minus {base}" for s, _ in keys) + " |",
                 "|---" * (1 + 3 * len(keys)) + "|"]
        for v in variants:
            cells = []
            for setting, method in keys:
                cells += [_cell(mean_interval(list(runs[v][setting, method].values()))),
                          results[v]["settings"][setting][method].get("chosen", "-"),
                          "" if v == base else _cell(paired_difference(runs[base][setting, method],
                                                                      runs[v][setting, method]), signed=True)]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        n = len(next(iter(runs[base].values())))
        parts.append(f"## {title}\n\n" + "\n".join(lines) + _footer(n))
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="view", required=True)
    pairs = sub.add_parser("pairs", help="method A against method B within one run folder")
    pairs.add_argument("folder", type=Path)
    pairs.add_argument("pairs", nargs="+", metavar="A:B")
    forms = sub.add_parser("forms", help="one run per sub-folder against the base sub-folder's")
    forms.add_argument("folder", type=Path)
    forms.add_argument("base")
    args = parser.parse_args()
    if args.view == "pairs":
        text, out = pairs_page(args.folder, [tuple(p.split(":", 1)) for p in args.pairs]), args.folder / "pairs.md"
    else:
        text, out = forms_page(args.folder, args.base), args.folder.with_suffix(".md")
    out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
