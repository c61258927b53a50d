"""Write the preset of a confirmation run: each method's few best one-seed grid points, on more seeds.

    python scripts/imdb_confirm.py configs/imdb/scratch-cpu-confirm.yaml runs/imdb-tune/results.json [more results.json] --top 3 --seeds 0 1 [--max-kl 25]
    cp -r runs/imdb-tune runs/imdb-confirm
    aihf experiment imdb --preset configs/imdb/scratch-cpu-confirm.yaml --output-dir runs/imdb-confirm
    python scripts/imdb_choose.py configs/imdb/scratch-cpu-tuned.yaml runs/imdb-confirm/results.json --seeds 0 1 2 --max-kl 25

A one-seed grid's best point is chosen for its seed's luck as well as for its values, so its validation
score overstates it. Per setting and per ``methods`` entry of the tuning runs, the ``--top`` grid points
with the highest validation gold reward (with ``--max-kl``: among those within it) are run again on the
validation prompts over ``--seeds`` (``aihf.experiments.imdb.tuning.confirm_preset``). Run in a copy of the
grid's folder (the grid's own results.json stays as it was), the units it shares with the grid (same point,
same seed) are reused; its results.json holds those points with their means over the seeds, and
``imdb_choose.py`` on it chooses among them. The points and
their one-seed scores are written beside the preset (``.md``).
"""

import argparse

from aihf.experiments.imdb.tuning import write_confirm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="where to write the confirmation run's preset (YAML)")
    p.add_argument("results", nargs="+", help="results.json of tuning runs (generation.evaluate_on: validation), "
                   "one per setting or one for all")
    p.add_argument("--top", type=int, default=3, help="grid points per method and setting (default 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds of the confirmation run, the grid's among them (default 0 1)")
    p.add_argument("--max-kl", type=float, help="take the points among those with mean validation KL <= this (nats)")
    args = p.parse_args()
    write_confirm(args.results, args.preset, args.top, args.seeds, args.max_kl)
    print(f"confirmation preset {args.preset}; its points in {args.preset.rsplit('.', 1)[0]}.md")


if __name__ == "__main__":
    main()
