"""Settings compared on one split: for each experiment folder given (its
``config.yaml``, ``runs/<method>/seed*/result.json``), one row per method: the reward
weights and steps its runs were made with (read from their run keys), the seeds, the final
and last-5 returns normalised by the expert's (mean and 95% t-interval over seeds, the
experiment's own ``summarise``), the training-pair accuracy of the last reward step (mean over
seeds) and, where the runs' ``reward_net.safetensors`` are there, the correlation of learned
segment sums with true returns on the pool (``mujoco_reward_diag.reward_fit``, mean over seeds), and, for runs
that recorded it (``RunResult.eval_reward``), the learned reward per step at the final evaluation on the
evaluated policy's episodes and on the demonstrations (means over the seeds that recorded it): a policy scoring at or above the
demonstrations on the learned reward while below them on the true return is exploiting it. Which split the
returns were measured on is a column too: choose on validation, report on test. ``--plot``
draws every row's learning curve in one PNG; ``--plot-learned`` each seed's true return and learned-reward gap
along training (``plot_learned``).

    python scripts/mujoco_sweep.py runs/tune/*/Hopper-v5-balanced --plot sweep.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mujoco_reward_diag import reward_fit  # scripts/ is on the path of a script run from it

UNREAD_WEIGHTS = {"ml_irl": ("w_pref",), "rlhf": ("w_demo",), "sac_true": ("w_demo", "w_pref"), "bc": ("w_demo", "w_pref")}
"""The reward weights a method's runs carry in their settings but do not use (ML-IRL has no
preference term, RLHF's reward model no demonstration term; SAC and BC learn no reward)."""


def sweep_row(folder: Path, method: str, results: list[dict], expert: float, correlations: list[float]) -> dict:
    """One ``sweep`` row: ``results`` are the method's result.json files (key and result) in
    ``folder``, ``correlations`` the learned-vs-true segment correlations of those runs whose
    reward net was found (empty: none)."""
    from aihf.eval.stats import mean_interval
    from aihf.experiments.mujoco import summarise

    settings = [r["key"]["settings"] for r in results]

    def one(values: list) -> object:
        return values[0] if len(set(map(str, values))) == 1 else "mixed"

    summary = summarise({method: [r["result"] for r in results]}, expert)[method]
    accuracies = [r["result"]["reward_diagnostics"][-1]["pref_train_accuracy"] for r in results
                  if r["result"].get("reward_diagnostics") and "pref_train_accuracy" in r["result"]["reward_diagnostics"][-1]]
    final_learned = [r["result"]["eval_reward"][-1] for r in results if r["result"].get("eval_reward")]
    unread = UNREAD_WEIGHTS.get(method, ())
    return {"folder": str(folder), "method": method, "split": one([s.get("eval_split", "test") for s in settings]),
            **{w: "-" if w in unread else one([s["reward"][w] for s in settings]) for w in ("w_demo", "w_pref")},
            "reward_updates": "-" if method in ("bc", "sac_true") else one([s["reward_updates"] for s in settings]),
            "reward_normalize": "-" if method == "bc" else one([s.get("reward_normalize", False) for s in settings]),
            "reward_nets": "-" if method in ("bc", "sac_true") else one([reward_nets(s) for s in settings]),
            "steps": one([r["result"]["steps"][-1] for r in results]), "seeds": sorted(r["key"]["seed"] for r in results),
            "final": summary["normalised_mean"], "final_ci95": summary["normalised_ci95"],
            "late": summary["late_normalised_mean"], "late_ci95": summary["late_normalised_ci95"],
            "pair_accuracy": float(np.mean(accuracies)) if accuracies else None,
            "correlation": mean_interval(correlations) if correlations else None,
            "learned_per_step": {"policy": float(np.mean([e["policy_mean"] for e in final_learned])),
                                 "demo": float(np.mean([e["demo_mean"] for e in final_learned])),
                                 "seeds": len(final_learned)} if final_learned else None,
            **{field: one([r["key"][field] for r in results]) for field in ("env", "demos", "n_prefs")},
            "expert": expert, "runs": [r["result"] for r in results]}


def reward_nets(settings: dict) -> str:
    """A run's reward in a few words: ``1`` (one net), else ``experiments.mujoco.ensemble_label``
    (``5 wco``; ``5 uwo 0.5`` with its penalty; ``5 wco resampled segments``). A run's key holds
    a later setting only where it differs from ``LATER_SETTINGS`` (the value older runs had), so
    a missing one is that value."""
    from aihf.experiments.mujoco import LATER_SETTINGS, ensemble_label

    def value(name: str):
        return settings.get(name, LATER_SETTINGS[name])

    if value("reward_ensemble") == 1:
        return "1"
    return ensemble_label(value("reward_ensemble"), value("reward_ensemble_rule"), value("reward_ensemble_penalty"),
                          value("reward_ensemble_resample"))


def sweep_rows(folders: list[Path]) -> list[dict]:
    """``sweep_row`` for every method of every experiment folder (module docstring)."""
    import json

    import yaml

    from aihf import shipped
    from aihf.control.expert_data import demonstrator_return
    from aihf.control.reward_net import load_reward

    rows = []
    for folder in folders:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        data_dir = Path(config["data_dir"]) if config["data_dir"] else shipped.mujoco_data_dir(config["env"])
        segments, demos = dict(np.load(data_dir / "segments.npz")), dict(np.load(data_dir / f"{config['demos']}.npz"))
        for method_dir in sorted(p for p in (folder / "runs").iterdir() if p.is_dir()):
            runs = sorted(method_dir.glob("seed*/result.json"))
            if not runs:
                continue
            nets = [run.parent / "reward_net.safetensors" for run in runs]
            correlations = [reward_fit(load_reward(net), segments, demos)["correlation"] for net in nets if net.is_file()]
            rows.append(sweep_row(folder, method_dir.name, [json.loads(r.read_text(encoding="utf-8")) for r in runs],
                                  demonstrator_return(data_dir), correlations))
    return rows


def sweep_label(row: dict) -> str:
    """``aihf w_D=1 w_P=30``: the method, AIHF's two weights (the swept ones; another method
    reads one weight, or none) and ``normalised`` where SAC saw the reward divided by its scale."""
    def weight(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    weights = [f"w_D={weight(row['w_demo'])} w_P={weight(row['w_pref'])}"] if row["method"] == "aihf" else []
    normalised = ["normalised"] if row["reward_normalize"] is True else []
    ensemble = [f"ensemble {row['reward_nets']}"] if row.get("reward_nets", "1") not in ("1", "-") else []
    return " ".join([row["method"], *weights, *normalised, *ensemble])


def plot_sweep(rows: list[dict], path: Path) -> None:
    """Every row's learning curve (mean over its seeds, +- 1 sd) in one figure, normalised by
    the expert's return: ``experiments.mujoco.plot_curves`` with one curve per setting."""
    from aihf.experiments.mujoco import plot_curves

    first = rows[0]
    plot_curves({"env": first["env"], "demos": first["demos"], "n_prefs": first["n_prefs"], "seeds": first["seeds"],
                 "demonstrator_return": first["expert"], "eval_split": first["split"],
                 "runs": {label: r["runs"] for label, r in zip(_distinct_labels(rows), rows)}}, path)


def plot_learned(rows: list[dict], path: Path) -> int:
    """Each seed's run, along training, for the rows whose runs recorded ``eval_reward``: above,
    the true return / the expert's; below, the learned reward per step of the evaluated policy
    minus the demonstrations' under the same reward (``-margin``; 0: the policy scores like
    the demonstrations). One colour per row, one line per seed; a seed whose lower line nears
    or passes 0 while its upper line stays low is exploiting its reward. Returns how many runs
    it drew; draws nothing and returns 0 when no run recorded ``eval_reward``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aihf.logs import count

    recorded = [(label, row, [r for r in row["runs"] if r.get("eval_reward")]) for label, row in zip(_distinct_labels(rows), rows)]
    drawn = [entry for entry in recorded if entry[2]]
    if not drawn:
        return 0
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for colour, (label, row, runs) in enumerate(drawn):
        for k, run in enumerate(runs):
            name = f"{label} ({count(len(runs), 'seed')})" if k == 0 else None
            top.plot(run["steps"], np.array(run["returns"]) / row["expert"], color=f"C{colour}", lw=1, label=name)
            bottom.plot(run["steps"], [-e["margin"] for e in run["eval_reward"]], color=f"C{colour}", lw=1)
    top.axhline(1.0, ls="--", color="black", lw=0.8)
    bottom.axhline(0.0, ls="--", color="black", lw=0.8)
    top.set_ylabel("true return / expert's return")
    bottom.set_ylabel("learned reward per step:\npolicy minus demonstrations")
    bottom.set_xlabel("environment steps")
    first = drawn[0][1]
    top.set_title(f"{first['env']} ({first['split']} reset seeds): one line per seed", fontsize=10)
    top.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return sum(len(runs) for _, _, runs in drawn)


def _distinct_labels(rows: list[dict]) -> list[str]:
    """``sweep_label`` of each row, with the folder's grid name in front where two rows would
    share one (settings the label does not show)."""
    labels = [sweep_label(r) for r in rows]
    return [f"{Path(r['folder']).parent.name}: {label}" if labels.count(label) > 1 else label
            for label, r in zip(labels, rows)]


def sweep_table(rows: list[dict]) -> str:
    """``sweep_rows`` as a markdown table (a mean alone where one seed gives no interval)."""
    from aihf.logs import count

    def interval(mean: float, ci95: float) -> str:
        return f"{mean:.3f}" + (f" +- {ci95:.3f}" if np.isfinite(ci95) else "")

    lines = ["| folder | method | split | steps | w_D | w_P | reward steps | reward normalised | reward nets | seeds | "
             "final, normalised | last 5, normalised | training-pair accuracy | segment correlation | "
             "learned reward per step, final policy / demonstrations |", "|---" * 15 + "|"]
    for r in rows:
        correlation = "-" if r["correlation"] is None else interval(r["correlation"]["mean"], r["correlation"]["ci95"])
        accuracy = "-" if r["pair_accuracy"] is None else f"{r['pair_accuracy']:.3f}"
        learned = "-" if r["learned_per_step"] is None else \
            f"{r['learned_per_step']['policy']:.3f} / {r['learned_per_step']['demo']:.3f}" + \
            ("" if r["learned_per_step"]["seeds"] == len(r["seeds"]) else f" ({count(r['learned_per_step']['seeds'], 'seed')})")
        lines.append(f"| {r['folder']} | {r['method']} | {r['split']} | {r['steps']} | {r['w_demo']} | {r['w_pref']} | "
                     f"{r['reward_updates']} | {r['reward_normalize']} | {r['reward_nets']} | {', '.join(map(str, r['seeds']))} | {interval(r['final'], r['final_ci95'])} | "
                     f"{interval(r['late'], r['late_ci95'])} | {accuracy} | {correlation} | {learned} |")
    return "\n".join(lines)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+", help="experiment folders (config.yaml, runs/<method>/seed*/)")
    parser.add_argument("--plot", type=Path, help="also draw every row's learning curve into this PNG")
    parser.add_argument("--plot-learned", type=Path, help="also draw each seed's true return and learned-reward gap "
                        "(policy minus demonstrations) along training into this PNG")
    args = parser.parse_args()
    rows = sweep_rows(args.folders)
    print(sweep_table(rows))
    if args.plot:
        plot_sweep(rows, args.plot)
        print(f"plot: {args.plot}")
    if args.plot_learned:
        drawn = plot_learned(rows, args.plot_learned)
        print(f"learned-reward plot: {args.plot_learned} ({drawn} runs)" if drawn else
              "no run recorded the learned reward at its evaluations (eval_reward): no learned-reward plot")


if __name__ == "__main__":
    main()
