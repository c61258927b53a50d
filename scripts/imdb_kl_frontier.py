"""IMDb methods compared at a like KL: each method's best validation gold reward within several KL
budgets, from its validation grid (docs/results.md, "The implicit-reward methods at a like KL on IMDb"):

    python scripts/imdb_kl_frontier.py docs/results/imdb-scratch-cpu-tune/imdb-tune/results.json \\
        docs/results/imdb-scratch-cpu-tune-dpo-beta/imdb-tune-dpo-beta/results.json ... \\
        --methods dpo-beta aihf-dpo --out-dir docs/results/imdb-scratch-cpu-kl-frontier

The tuning rule (``aihf.experiments.imdb.tuning``) compares methods each at the best point within
one budget (KL <= 25 nats), so a method whose best point needs 25 nats is compared with one whose
best needs 15. Here every budget is a column (``kl_budgets.md``, ``tuning.budget_table``): per setting
and method, the best grid point with mean KL to pi_SFT at most that budget, and in ``kl_frontier.png``
each method's reward-KL frontier (``tuning.kl_frontier``: the choice at every budget) over its grid
points. A validation run with a grid writes both for its own methods; this script joins the grids of
several runs. One seed on the validation prompts: a description of the grids, not a test. A method
of a setting in two results files is an error (a variant copied under another name is another method).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aihf.experiments.imdb.tuning import KL_BUDGETS, grid_points, write_kl_budgets


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json of validation grids (runs or their exports)")
    p.add_argument("--methods", nargs="+", help="methods to show, in this order (default: all)")
    p.add_argument("--out-dir", type=Path, required=True, help="folder for kl_budgets.md and kl_frontier.png")
    p.add_argument("--budget-line", type=float, default=KL_BUDGETS[-1], help="the tuning rule's budget, dashed in the plot")
    args = p.parse_args()
    paths = write_kl_budgets(read_grids(args.results, args.methods), args.out_dir, args.budget_line, args.results)
    print(", ".join(str(path) for path in paths.values()))


if __name__ == "__main__":
    main()
