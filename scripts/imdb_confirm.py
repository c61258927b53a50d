"""``aihf tune confirm`` (aihf.experiments.imdb.tune_cli) under the path the commands in docs/results.md name."""

import sys

from aihf.experiments.imdb.tune_cli import main

if __name__ == "__main__":
    sys.exit(main("confirm"))
