"""How many test seeds would the MuJoCo grid's pre-registered verdicts need to be decided?

    python scripts/mujoco_seed_power.py docs/results/mujoco-chosen.yaml

For each group of tasks of ``scripts/mujoco_chosen.py`` (``TASK_GROUPS``) whose tasks are all
complete and each method against which AIHF's probability of improvement is judged, the share
of simulated experiments with n seeds per task in which the rule's interval (95% stratified
bootstrap of P(aihf > method)) lies wholly above 0.5 (AIHF ahead) or wholly below (behind),
and the interval's median width: ``aihf.eval.aggregate.verdict_power``, which draws each set of
runs' scores from a normal with the mean and spread of its observed seeds (a run copied into
several tasks is drawn once for all of them). A planning estimate, not a result: it takes the
3-seed means and spreads as the truth. Written beside the YAML file as ``<stem>-seed-power.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("mujoco_chosen", Path(__file__).with_name("mujoco_chosen.py"))
chosen = importlib.util.module_from_spec(_spec)
sys.modules["mujoco_chosen"] = chosen  # its dataclasses look their module up by name
_spec.loader.exec_module(chosen)


def power_table(columns, rows, seed_counts: list[int], simulations: int, resamples: int, seed: int) -> list[str]:
    """The page's lines: a section per complete task group, a row per method and seed count."""
    from aihf.eval.aggregate import probability_of_improvement, verdict_power
    from aihf.logs import count

    lines = []
    for group, settings in chosen.TASK_GROUPS:
        found = chosen.task_scores(columns, rows, settings)
        if not found.tasks or found.left_out or chosen.REFERENCE not in found.methods:
            continue
        reference = chosen.REFERENCE
        lines += [f"## {group} ({count(len(found.tasks), 'task')})", "",
                  f"| method | P({reference} > method), observed | seeds per task | decided: {reference} ahead "
                  "| decided: behind | median width of the interval |", "|---|---|---|---|---|---|"]
        for method in found.methods:
            if method == reference:
                continue
            observed = probability_of_improvement(found.scores[reference], found.scores[method])
            for n in seed_counts:
                ahead, behind, width = verdict_power(found.scores[reference], found.scores[method], n, simulations,
                                                     resamples, seed, found.groups[reference], found.groups[method])
                lines.append(f"| {method} | {observed:.2f} | {n} | {ahead:.2f} | {behind:.2f} | {width:.2f} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("columns", type=Path, help="the YAML file of scripts/mujoco_chosen.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 8, 12], help="seed counts per task to simulate")
    parser.add_argument("--simulations", type=int, default=200, help="simulated experiments per seed count")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per simulated interval")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    args = parser.parse_args()
    columns = chosen.read_columns(args.columns)
    rows = {env: chosen.read_rows(env, env_columns) for env, env_columns in columns.items()}
    page = args.columns.with_name(f"{args.columns.stem}-seed-power.md")
    head = [
        "# MuJoCo test grid: how many seeds would decide the verdicts", "",
        f"Written by `scripts/mujoco_seed_power.py {args.columns}` (seed counts {args.seeds}, {args.simulations} "
        f"simulated experiments each, {args.resamples:,} bootstrap resamples per interval, seed {args.seed}). "
        "For each group of tasks whose every task is complete, and each method: the share of simulated experiments "
        "with that many seeds per task in which the pre-registered interval of P(aihf > method) lies wholly above "
        "0.5 or wholly below, and its median width. Each set of runs (a run copied into several tasks counts once) is "
        "simulated from a normal with its observed seeds' mean and standard deviation: a planning estimate that "
        "takes those as the truth, not a result (`aihf.eval.aggregate.verdict_power`).", ""]
    page.write_text("\n".join(head + power_table(columns, rows, args.seeds, args.simulations, args.resamples,
                                                 args.seed)), encoding="utf-8")
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
