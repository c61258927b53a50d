"""Choose each method's values on the validation prompts of a tuning run and write the test preset.

    python scripts/imdb_choose.py runs/imdb-tune/results.json configs/imdb/scratch-cpu-tuned.yaml --seeds 0 1 2

Per setting and per ``methods`` entry of the tuning run (configs/imdb/scratch-cpu-tune.yaml),
the grid point with the highest mean validation gold reward; the preset runs every setting
with its own choice on the test prompts over ``--seeds`` (``aihf.experiments.imdb.tuning``).
It also writes the choice as a markdown table beside the preset (``.md``).
"""

import argparse

from aihf.experiments.imdb.tuning import write_choice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="results.json of a run with generation.evaluate_on: validation")
    p.add_argument("preset", help="where to write the test preset (YAML)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the test run (default 0 1 2)")
    args = p.parse_args()
    write_choice(args.results, args.preset, args.seeds)
    print(f"test preset {args.preset}; the choice in {args.preset.rsplit('.', 1)[0]}.md")


if __name__ == "__main__":
    main()
