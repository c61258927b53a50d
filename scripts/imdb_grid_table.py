"""The table of a validation grid's finished units (``grid.md``) from exported run folders.

    python scripts/imdb_grid_table.py docs/results/imdb-scratch-cpu-tune imdb-tune:balanced imdb-tune-few:few-preferences

Reads every ``FOLDER/runs/SETTING/RUN/seed-0/evaluation.json`` (``scripts/imdb_export_units.py``
writes them) and writes ``grid.md`` beside the folders: one row per unit, the best
validation gold reward of each method in bold, and the pi_SFT hash from ``state.json``.
"""

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", type=Path, help="folder holding the exported run folders")
    p.add_argument("folders", nargs="+", help="FOLDER:SETTING pairs")
    args = p.parse_args()
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    lines = [f"# Finished units of the validation grid ({stamp}; one seed, 200 validation prompts)", ""]
    table = ["| setting | run | gold reward | VADER | KL to SFT | win rate vs SFT | held-out pref. accuracy of its reward |",
             "|---|---|---|---|---|---|---|"]
    hashes = set()
    for pair in args.folders:
        folder, setting = pair.split(":", 1)
        hashes.add(json.loads((args.base / folder / "state.json").read_text())["pi_sft_sha256"][:8])
        rows = [(f.parts[-3], json.loads(f.read_text())["row"])
                for f in sorted((args.base / folder / "runs" / setting).glob("*/seed-0/evaluation.json"))]
        best: dict[str, str] = {}
        for run, row in rows:
            method = run.split("@")[0]
            if method not in best or row["gold_reward"] > dict(rows)[best[method]]["gold_reward"]:
                best[method] = run
        for run, row in rows:
            gold = f"{row['gold_reward']:.3f}"
            accuracy = row.get("heldout_pref_accuracy")
            table.append(f"| {setting} | {run} | {f'**{gold}**' if best[run.split('@')[0]] == run else gold} | "
                         f"{row['judge']:.3f} | {row['kl']:.2f} | {row['win_rate']:.3f} | "
                         f"{'—' if accuracy is None else f'{accuracy:.3f}'} |")
    lines += [f"Rows from each folder's `runs/<setting>/<run>/seed-0/evaluation.json`; pi_SFT SHA-256 "
              f"{', '.join(sorted(hashes))}… Best validation gold reward per method in **bold**. Made by "
              "`scripts/imdb_grid_table.py`.", "", *table]
    (args.base / "grid.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(table) - 2} units in {args.base / 'grid.md'}")


if __name__ == "__main__":
    main()
