"""The standing-plateau diagnostics of the `paper` MuJoCo preset (docs/results.md): one curve
per run folder of docs/results/mujoco-diag/ (each a result.json as the MuJoCo experiment
writes it), drawn with the experiment's own plot, labelled by method and the reward step's
learning rate, beta and demo_horizon.

    python scripts/mujoco_diag_plot.py docs/results/mujoco-diag
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from aihf.experiments.mujoco import plot_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/mujoco/Hopper-v5"),
                        help="the data the runs used (its provenance.json holds the demonstrator's return)")
    args = parser.parse_args()
    records = [json.loads(path.read_text()) for path in sorted(args.folder.glob("*/result.json"))]
    if not records:
        raise SystemExit(f"no */result.json under {args.folder}")
    runs = {}
    for record in records:
        key, reward = record["key"], record["key"]["settings"]["reward"]
        label = (f"{key['method']} seed {key['seed']}, reward lr {reward['lr']:g}, beta {reward['beta']:g}, "
                 f"demo_horizon {reward.get('demo_horizon', 1)}")  # runs from before demo_horizon had 1
        runs[label] = [record["result"]]
    first = records[0]["key"]
    demonstrator = json.loads((args.data / "provenance.json").read_text())["demonstrator_return_mean"]
    results = {"runs": runs, "demonstrator_return": demonstrator, "seeds": [first["seed"]], "env": first["env"],
               "demos": first["demos"], "n_prefs": first["n_prefs"]}
    plot_curves(results, args.folder / "curves.png")
    print(args.folder / "curves.png")


if __name__ == "__main__":
    main()
