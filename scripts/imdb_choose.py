"""Choose each method's values on the validation prompts of a tuning run and write the test preset.

    python scripts/imdb_choose.py configs/imdb/scratch-cpu-tuned.yaml runs/imdb-tune/results.json [more results.json] --seeds 0 1 2 [--max-kl 25]

Per setting and per ``methods`` entry of the tuning runs (configs/imdb/scratch-cpu-tune.yaml; several
runs of one config, each with some of its settings, are merged),
the grid point with the highest mean validation gold reward (with ``--max-kl``: among the
points whose mean validation KL to pi_SFT is within it); the preset runs every setting
with its own choice on the test prompts over ``--seeds`` (``aihf.experiments.imdb.tuning``).
It also writes the choice as a markdown table beside the preset (``.md``).
"""

import argparse

from aihf.experiments.imdb.tuning import write_choice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="where to write the test preset (YAML)")
    p.add_argument("results", nargs="+", help="results.json of tuning runs (generation.evaluate_on: validation), "
                   "one per setting or one for all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the test run (default 0 1 2)")
    p.add_argument("--max-kl", type=float, help="choose among grid points with mean validation KL <= this (nats)")
    args = p.parse_args()
    write_choice(args.results, args.preset, args.seeds, args.max_kl)
    print(f"test preset {args.preset}; the choice in {args.preset.rsplit('.', 1)[0]}.md")


if __name__ == "__main__":
    main()
