"""Two methods of IMDb validation grids side by side, grid point by grid point (docs/results.md,
"Self-Play-AIHF's preference reference on IMDb"):

    python scripts/imdb_grid_pairs.py self-play-aihf-start self-play-aihf runs/imdb-tune-start \\
        runs/imdb-tune-start-lq docs/results/imdb-scratch-cpu-tune/imdb-tune \\
        docs/results/imdb-scratch-cpu-tune/imdb-tune-few docs/results/imdb-scratch-cpu-tune/imdb-tune-lq

Reads every ``FOLDER/runs/SETTING/METHOD@VALUES/seed-0/evaluation.json`` (the runner's units, or
their export by ``scripts/imdb_export_units.py``) of the two methods, pairs the units of one setting
with the same values, and prints per setting a table of each point's validation gold reward and KL
to pi_SFT for A and B, and how many points have A's KL below B's. A unit made twice (two folders)
is an error, unless both give the same row; so is a point one method lacks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def grid_units(folders: list[Path], method: str) -> dict[tuple[str, str], dict]:
    """{(setting, values): results row} of ``method``'s seed-0 units in the folders."""
    units: dict[tuple[str, str], dict] = {}
    for folder in folders:
        for path in sorted(folder.glob(f"runs/*/{method}@*/seed-0/evaluation.json")):
            setting, values = path.parts[-4], path.parts[-3].split("@", 1)[1]
            row = json.loads(path.read_text(encoding="utf-8"))["row"]
            if (setting, values) in units and units[(setting, values)] != row:
                raise ValueError(f"{method}@{values} in {setting} is in two folders with different results")
            units[(setting, values)] = row
    return units


def pairs_page(folders: list[Path], first: str, second: str) -> str:
    """Per setting, a table of the two methods at each grid point and the count of points where
    ``first``'s KL is below ``second``'s."""
    a, b = grid_units(folders, first), grid_units(folders, second)
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))
        raise ValueError(f"grid points of only one method: {missing}")
    parts = []
    for setting in dict.fromkeys(s for s, _ in sorted(a)):
        points = sorted(values for s, values in a if s == setting)
        rows = [f"### {setting}", "", f"| values | {first}: gold (KL) | {second}: gold (KL) | KL lower for {first} |",
                "|---|---|---|---|"]
        lower = 0
        for values in points:
            ra, rb = a[(setting, values)], b[(setting, values)]
            below = ra["kl"] < rb["kl"]
            lower += below
            rows.append(f"| {values} | {ra['gold_reward']:.3f} ({ra['kl']:.1f}) | {rb['gold_reward']:.3f} "
                        f"({rb['kl']:.1f}) | {'yes' if below else 'no'} |")
        rows += ["", f"{first}'s KL below {second}'s at {lower} of {len(points)} points.", ""]
        parts.append("\n".join(rows))
    return "\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", help="method A (as its units are named: a recipe or a variant)")
    p.add_argument("second", help="method B")
    p.add_argument("folders", nargs="+", type=Path, help="grid run folders (or exports)")
    args = p.parse_args()
    print(pairs_page(args.folders, args.first, args.second))


if __name__ == "__main__":
    main()
