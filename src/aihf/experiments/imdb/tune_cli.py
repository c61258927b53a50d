"""``aihf tune choose`` and ``aihf tune confirm``: the choice of each method's values on the
validation prompts (``aihf.experiments.imdb.tuning``), as commands (docs/imdb.md, "The fair
comparison is two runs").

    aihf tune choose configs/imdb/scratch-cpu-tuned.yaml runs/imdb-tune/results.json --seeds 0 1 2 --max-kl 25

Per setting and per ``methods`` entry of the tuning runs (validation grids, ``generation.evaluate_on:
validation``; several runs of one config, each with some of its settings or methods, are merged), the grid point
with the highest mean validation gold reward (with ``--max-kl``: among the points whose mean validation
KL to pi_SFT is within it); it writes a preset that runs every setting with its own choice on the test
prompts over ``--seeds``, and the choice as a markdown table beside it (``.md``).

    aihf tune confirm runs/confirm.yaml runs/imdb-tune/results.json --top 3 --seeds 0 1 --max-kl 25
    cp -r runs/imdb-tune runs/imdb-confirm
    aihf experiment imdb --preset runs/confirm.yaml --output-dir runs/imdb-confirm
    aihf tune choose configs/imdb/scratch-cpu-tuned.yaml runs/imdb-confirm/results.json --seeds 0 1 2 --max-kl 25

A one-seed grid's best point is chosen for its seed's luck as well as for its values, so its validation
score overstates it. ``confirm`` writes a validation run of each method's ``--top`` best points (within
``--max-kl``) over ``--seeds`` (``tuning.confirm_preset``), their one-seed scores beside it (``.md``); run
in a copy of the grid's folder, it reuses the grid's units of those points, and ``choose`` on its results
chooses among them by their means. (``scripts/imdb_choose.py`` and ``scripts/imdb_confirm.py`` are the
same commands.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``choose`` and ``confirm`` as sub-commands of ``p``."""
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    choose = actions.add_parser("choose", help="write the test preset of each method's choice on the validation prompts")
    choose.add_argument("preset", help="where to write the test preset (YAML)")
    choose.add_argument("--suffix", default="", help="append to each chosen variant's name (e.g. to test a choice "
                        "beside another of the same method, compared with aihf compare)")
    confirm = actions.add_parser("confirm", help="write a validation run of each method's best grid points on more seeds")
    confirm.add_argument("preset", help="where to write the confirmation run's preset (YAML)")
    confirm.add_argument("--top", type=int, default=3, help="grid points per method and setting (default 3)")
    confirm.add_argument("--methods", nargs="+", help="only these methods entries of the grid (default: all)")
    for action, seeds, text in ((choose, [0, 1, 2], "seeds of the test run"),
                                (confirm, [0, 1], "seeds of the confirmation run, the grid's among them")):
        action.add_argument("results", nargs="+", help="results.json of tuning runs (generation.evaluate_on: "
                            "validation), one per setting or one for all")
        action.add_argument("--seeds", type=int, nargs="+", default=seeds,
                            help=f"{text} (default {' '.join(map(str, seeds))})")
        action.add_argument("--max-kl", type=float, help="among grid points with mean validation KL <= this (nats)")


def run(args: argparse.Namespace) -> int:
    """Write the preset and its table; print where."""
    from aihf.experiments.imdb.tuning import write_choice, write_confirm  # plots and metrics: not for --help

    table = Path(args.preset).with_suffix(".md")  # where the writers put it
    if args.action == "choose":
        write_choice(args.results, args.preset, args.seeds, args.max_kl, args.suffix)
        print(f"test preset {args.preset}; the choice in {table}")
    else:
        write_confirm(args.results, args.preset, args.top, args.seeds, args.max_kl, args.methods)
        print(f"confirmation preset {args.preset}; its points in {table}")
    return 0


def main(action: str, argv: list[str] | None = None) -> int:
    """``python scripts/imdb_{choose,confirm}.py ...``: ``aihf tune ACTION ...``."""
    p = argparse.ArgumentParser(prog="aihf tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args([action, *(sys.argv[1:] if argv is None else argv)]))
