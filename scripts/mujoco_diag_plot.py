"""The MuJoCo diagnostic runs (docs/results.md): one figure per environment of the run folders
under docs/results/mujoco-diag/ (each a result.json as the MuJoCo experiment writes it), drawn
with the experiment's own plot, each curve labelled by method, seed and the settings the
diagnostics vary (the reward step's learning rate, beta and demo_horizon; SAC's entropy
temperature where it is not beta; reward_normalize where set). Hopper's figure is curves.png (the standing-plateau runs),
another environment's curves-<env>.png; the demonstrator's return comes from
<data-root>/<env>/provenance.json.

    python scripts/mujoco_diag_plot.py docs/results/mujoco-diag
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from aihf.experiments.mujoco import plot_curves


def label(key: dict) -> str:
    """A curve's label: what tells the diagnostic runs of one environment apart."""
    reward, temperature = key["settings"]["reward"], key["settings"]["sac"].get("ent_coef")
    text = (f"{key['method']} seed {key['seed']}, reward lr {reward['lr']:g}, beta {reward['beta']:g}, "
            f"demo_horizon {reward.get('demo_horizon', 1)}")  # runs from before demo_horizon had 1
    if key["settings"].get("reward_normalize"):
        text += ", reward / running std"
    return text if temperature is None else f"{text}, SAC temperature {temperature}"


def figure_name(env: str) -> str:
    return "curves.png" if env == "Hopper-v5" else f"curves-{env}.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--data-root", type=Path, default=Path("data/mujoco"),
                        help="holds <env>/provenance.json with the demonstrator's return")
    args = parser.parse_args()
    records = [json.loads(path.read_text()) for path in sorted(args.folder.glob("*/result.json"))]
    if not records:
        raise SystemExit(f"no */result.json under {args.folder}")
    by_env = defaultdict(list)
    for record in records:
        by_env[record["key"]["env"]].append(record)
    for env, env_records in by_env.items():
        runs = {label(record["key"]): [record["result"]] for record in env_records}
        first = env_records[0]["key"]
        demonstrator = json.loads((args.data_root / env / "provenance.json").read_text())["demonstrator_return_mean"]
        results = {"runs": runs, "demonstrator_return": demonstrator, "seeds": [first["seed"]], "env": env,
                   "demos": first["demos"], "n_prefs": first["n_prefs"]}
        plot_curves(results, args.folder / figure_name(env))
        print(args.folder / figure_name(env))


if __name__ == "__main__":
    main()
