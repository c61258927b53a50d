"""IMDb methods compared at a like KL: each method's best validation gold reward within several KL
budgets, from its validation grid (docs/results.md, "The methods at a like KL on IMDb"):

    python scripts/imdb_kl_frontier.py docs/results/imdb-scratch-cpu-tune/imdb-tune/results.json \\
        docs/results/imdb-scratch-cpu-tune-dpo-beta/imdb-tune-dpo-beta/results.json ... \\
        --methods dpo-beta aihf-dpo --budgets 5 10 15 20 25 --out page.md --plot frontier.png

The tuning rule (``aihf.experiments.imdb.tuning``) compares methods each at the best point within
one budget (KL <= 25 nats), so a method whose best point needs 25 nats is compared with one whose
best needs 15. Here every budget is a column: per setting and method, the best grid point with mean
KL to pi_SFT at most that budget (``tuning.best_within``), and in the plot each method's reward-KL
frontier (``tuning.kl_frontier``: the choice at every budget) over its grid points. One seed on the
validation prompts: a description of the grids, not a test. A method of a setting in two results
files is an error (a variant copied under another name is another method).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aihf.eval.plots import LABELS
from aihf.experiments.imdb.tuning import best_within, grid_points, kl_frontier


def read_grids(paths: list[Path], methods: list[str] | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{setting: {method: grid points}} of validation results files (``tuning.grid_points``), the
    ``methods`` only (in their order) when given; settings and methods in the order first read."""
    grids: dict[str, dict[str, list[dict[str, Any]]]] = {}
    seen: dict[tuple[str, str], Path] = {}
    for path in paths:
        for setting, per_method in grid_points(json.loads(path.read_text(encoding="utf-8"))).items():
            for method, points in per_method.items():
                if methods is not None and method not in methods:
                    continue
                if (setting, method) in seen:
                    raise ValueError(f"{setting}/{method} is in both {seen[(setting, method)]} and {path}")
                seen[(setting, method)] = path
                grids.setdefault(setting, {})[method] = points
    if methods is not None:
        missing = [m for m in methods if not any(m in per_method for per_method in grids.values())]
        if missing:
            raise ValueError(f"no grid points of {missing} in {[str(p) for p in paths]}")
        grids = {s: {m: per_method[m] for m in methods if m in per_method} for s, per_method in grids.items()}
    return grids


def budget_page(grids: dict[str, dict[str, list[dict[str, Any]]]], budgets: list[float]) -> str:
    """Per setting a markdown table: one row per method, one column per budget (and one without),
    each cell the best validation gold reward within the budget with its KL in brackets, or a dash."""
    header = [f"KL <= {b:g}" for b in budgets] + ["any KL"]
    lines = []
    for setting, per_method in grids.items():
        lines += [f"### {setting}", "", "| method | points | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for method, points in per_method.items():
            picks = [best_within(points, b) for b in [*budgets, None]]
            cells = ["—" if p is None else f"{p['value']:.3f} ({p['kl']:.1f})" for p in picks]
            lines.append(f"| {method} | {len(points)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_frontiers(grids: dict[str, dict[str, list[dict[str, Any]]]], path: Path, budget: float | None = None) -> Path:
    """One panel per setting: each method's grid points (faint) and its reward-KL frontier as a step
    line (the best gold reward within a KL budget, as the budget grows); ``budget`` dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(m for per_method in grids.values() for m in per_method))
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    color = {m: palette(i % palette.N) for i, m in enumerate(methods)}  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 4.2), squeeze=False)
    for ax, (setting, per_method) in zip(axes[0], grids.items()):
        for method, points in per_method.items():
            frontier = kl_frontier(points)
            ax.step([p["kl"] for p in frontier], [p["value"] for p in frontier], where="post",
                    marker="o", markersize=4, color=color[method], label=method)
            ax.scatter([p["kl"] for p in points], [p["value"] for p in points], s=12, alpha=0.3, color=color[method])
        if budget is not None:
            ax.axvline(budget, linestyle="--", color="gray", linewidth=1)
        ax.set_xscale("symlog", linthresh=10)  # linear up to 10 nats, where the budgets are; logarithmic past it
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{LABELS['kl']} (nats)")
        ax.set_ylabel("validation gold reward")
        ax.set_title(setting)
        ax.legend(fontsize=7)
    fig.suptitle("best validation gold reward within a KL budget (one seed; faint: every grid point)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json of validation grids (runs or their exports)")
    p.add_argument("--methods", nargs="+", help="methods to show, in this order (default: all)")
    p.add_argument("--budgets", nargs="+", type=float, default=[5, 10, 15, 20, 25], help="KL budgets (nats)")
    p.add_argument("--out", type=Path, required=True, help="markdown page to write")
    p.add_argument("--plot", type=Path, help="PNG of the frontiers to write")
    p.add_argument("--budget-line", type=float, default=25.0, help="the tuning rule's budget, dashed in the plot")
    args = p.parse_args()
    grids = read_grids(args.results, args.methods)
    sources = ", ".join(f"`{path}`" for path in args.results)
    args.out.write_text(f"# Best validation gold reward within a KL budget\n\nFrom {sources}; made by "
                        "`scripts/imdb_kl_frontier.py`. Each cell: the best grid point's validation gold reward "
                        "(its KL to pi_SFT, nats) among the points within the budget; one seed, 200 validation "
                        "prompts.\n\n" + budget_page(grids, args.budgets), encoding="utf-8")
    if args.plot:
        plot_frontiers(grids, args.plot, args.budget_line)
    print(f"{args.out}" + (f", {args.plot}" if args.plot else ""))


if __name__ == "__main__":
    main()
