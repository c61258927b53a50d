"""Results of a language-model experiment (IMDb; the dialogue experiments' bar charts) as
markdown tables and figures.

The results dict has the toy experiment's layout:
``results["settings"][setting][method][metric] = {"mean", "ci95", "n"}`` for each metric of
:data:`aihf.eval.metrics.METRICS` (plus the per-seed ``"runs"``), and
optionally ``results["judge"]["name"]`` for the judge axis label.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from aihf.eval.metrics import METRICS
from aihf.eval.stats import interval_caption

LABELS = {
    "gold_reward": "gold reward",
    "judge": "judge score",
    "kl": "KL to pi_SFT",  # no "||": a pipe in a markdown table cell splits the cell
    "win_rate": "win rate vs SFT",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label(results: dict, metric: str) -> str:
    """The metric's axis or column label; the judge's names the judge when the results say which."""
    judge = results.get("judge", {}).get("name")
    return f"judge score ({judge})" if metric == "judge" and judge else LABELS[metric]


def format_stat(stat: dict[str, float], digits: int = 3) -> str:
    """``mean ± ci95`` (just the mean when there is no interval, as for one seed)."""
    if math.isnan(stat["ci95"]):
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['ci95']:.{digits}f}"


def results_table(results: dict, metrics: Sequence[str] = METRICS) -> str:
    """A markdown table: one row per setting and method, one column per metric (mean ± 95% CI)."""
    lines = [
        "| setting | method | " + " | ".join(label(results, m) for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for setting, methods in results["settings"].items():
        for method, entry in methods.items():
            lines.append(f"| {setting} | {method} | " + " | ".join(format_stat(entry[m]) for m in metrics) + " |")
    return "\n".join(lines)


def loss_table(results: dict) -> str:
    """Mean training loss over the first and last 10 steps (mean over seeds), for runs that recorded it."""
    lines = ["| setting | method | training loss, first 10 steps | last 10 steps |", "|---|---|---|---|"]
    for setting, methods in results["settings"].items():
        for method, entry in methods.items():
            runs = [run for run in entry["runs"] if "train_loss_last" in run]
            if runs:
                first = np.mean([run["train_loss_first"] for run in runs])
                last = np.mean([run["train_loss_last"] for run in runs])
                lines.append(f"| {setting} | {method} | {first:.4f} | {last:.4f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def accuracy_table(results: dict) -> str:
    """Held-out preference accuracy of each run's reward (the reward model of RLHF and AIHF's
    Algorithm 1, the implicit reward beta log(pi/pi_SFT) of the others), mean ± 95% CI."""
    lines = ["| setting | method | held-out preference accuracy of its reward |", "|---|---|---|"]
    for setting, methods in results["settings"].items():
        for method, entry in methods.items():
            if "heldout_pref_accuracy" in entry:
                lines.append(f"| {setting} | {method} | {format_stat(entry['heldout_pref_accuracy'])} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _seed_counts(results: dict, *metrics: str) -> list[int]:
    """The number of seeds behind each plotted statistic (its ``n``)."""
    return [entry[m]["n"] for methods in results["settings"].values() for entry in methods.values()
            for m in metrics if m in entry]


def plot_reward_vs_kl(results: dict, path: str | Path, reward: str = "gold_reward") -> Path:
    """One panel per setting: each method's mean ``reward`` metric (the gold reward; the judge's
    for the dialogue experiments) against its KL to SFT, with 95% CI bars; the figure's title
    says what the bars are."""
    plt = _pyplot()
    settings = list(results["settings"])
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for method, entry in results["settings"][setting].items():
            kl, gold = entry["kl"], entry[reward]
            ax.errorbar(
                kl["mean"], gold["mean"], xerr=np.nan_to_num(kl["ci95"]), yerr=np.nan_to_num(gold["ci95"]),
                fmt="o", capsize=3, label=method,
            )
        ax.set_xlabel(LABELS["kl"])
        ax.set_ylabel(label(results, reward))
        ax.set_title(setting)
        ax.legend(fontsize=8)
    caption = interval_caption(_seed_counts(results, "kl", reward))
    fig.suptitle(f"{label(results, reward)} against {LABELS['kl']} ({caption})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_kl_frontiers(grids: dict[str, dict[str, tuple[list[dict], list[dict]]]], path: str | Path,
                      budget: float | None = None) -> Path:
    """One panel per setting of validation grids, {setting: {method: (grid points, frontier)}}, each point a
    dict with "value" and "kl" (``aihf.experiments.imdb.tuning.grid_points``, ``tuning.kl_frontier``):
    each method's points (faint) and its reward-KL frontier as a step line (the best gold reward within
    a KL budget as the budget grows); the tuning rule's ``budget`` dashed. KL axis linear to 10 nats,
    logarithmic past it."""
    plt = _pyplot()
    methods = list(dict.fromkeys(m for per_method in grids.values() for m in per_method))
    palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    color = {m: palette(i % palette.N) for i, m in enumerate(methods)}  # one colour per method in every panel
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 4.2), squeeze=False)
    for ax, (setting, per_method) in zip(axes[0], grids.items()):
        for method, (points, frontier) in per_method.items():
            ax.step([p["kl"] for p in frontier], [p["value"] for p in frontier], where="post",
                    marker="o", markersize=4, color=color[method], label=method)
            ax.scatter([p["kl"] for p in points], [p["value"] for p in points], s=12, alpha=0.3, color=color[method])
        if budget is not None:
            ax.axvline(budget, linestyle="--", color="gray", linewidth=1)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)
        ax.set_xlabel(f"{LABELS['kl']} (nats)")
        ax.set_ylabel("validation gold reward")
        ax.set_title(setting)
        ax.legend(fontsize=7)
    fig.suptitle("best validation gold reward within a KL budget (faint: every grid point)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_ratio_sweep(results: dict, sweep: Sequence[tuple[str, int, int]], path: str | Path,
                     reward: str = "gold_reward") -> Path:
    """A ratio sweep (docs/imdb.md: one budget of records split between demonstrations and
    preferences), ``sweep`` its settings as (name, demonstrations D, preferences P): two panels
    against the demonstrations' share D / (D + P), each method's mean ``reward`` and its mean KL
    to pi_SFT with 95% CI bars, one line per method (set a little apart at each share); the ticks give
    the counts."""
    plt = _pyplot()
    sweep = sorted(sweep, key=lambda row: row[1] / (row[1] + row[2]))
    shares = [d / (d + p) for _, d, p in sweep]
    methods = list(dict.fromkeys(m for name, _, _ in sweep for m in results["settings"][name]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    dodge = 0.015 * (max(shares) - min(shares) or 1.0)  # methods side by side at each share, so bars do not hide
    for ax, metric in zip(axes, (reward, "kl")):
        for i, method in enumerate(methods):
            stats = [results["settings"][name].get(method, {}).get(metric) for name, _, _ in sweep]
            offset = (i - (len(methods) - 1) / 2) * dodge
            ax.errorbar([share + offset for share in shares], [s["mean"] if s else np.nan for s in stats],
                        yerr=[np.nan_to_num(s["ci95"]) if s else 0.0 for s in stats],
                        marker="o", capsize=3, label=method)
        ax.set_xticks(shares, [f"{share:g}\n{d} D\n{p} P" for share, (_, d, p) in zip(shares, sweep)], fontsize=8)
        ax.set_xlabel("demonstrations' share of the records")
        ax.set_ylabel(label(results, metric))
        ax.legend(fontsize=8)
    caption = interval_caption(_seed_counts({"settings": {n: results["settings"][n] for n, _, _ in sweep}}, "kl", reward))
    fig.suptitle(f"{label(results, reward)} and {LABELS['kl']} across the ratio sweep ({caption})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_metric_bars(results: dict, metric: str, path: str | Path) -> Path:
    """Grouped bars of one metric: settings on the x axis, one bar per method, 95% CI error
    bars; the title names the metric and says what the bars are."""
    plt = _pyplot()
    settings = list(results["settings"])
    methods = list(dict.fromkeys(m for s in settings for m in results["settings"][s]))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(settings) * len(methods) / 2), 4))
    for i, method in enumerate(methods):
        stats = [results["settings"][s].get(method, {}).get(metric) for s in settings]
        ax.bar(
            np.arange(len(settings)) + i * width,
            [s["mean"] if s else np.nan for s in stats],
            width,
            yerr=[np.nan_to_num(s["ci95"]) if s else 0.0 for s in stats],
            capsize=3,
            label=method,
        )
    ax.set_xticks(np.arange(len(settings)) + width * (len(methods) - 1) / 2, settings)
    ax.set_ylabel(label(results, metric))
    ax.set_title(f"{label(results, metric)} per setting and method\n{interval_caption(_seed_counts(results, metric))}",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_outputs(results: dict, output_dir: str | Path, metrics: Sequence[str] = METRICS,
                  reward: str = "gold_reward") -> dict[str, Path]:
    """results.json, results.md (the metrics, the rewards' held-out accuracy, the training losses),
    reward_vs_kl.png (``reward`` against KL) and <metric>.png for each metric."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "results.json", "table": output_dir / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2), encoding="utf-8")
    extra = [table for table in (accuracy_table(results), loss_table(results)) if table]
    metrics_table = results_table(results, metrics)
    paths["table"].write_text(metrics_table + "\n" + "".join(f"\n{table}\n" for table in extra), encoding="utf-8")
    paths["reward_vs_kl"] = plot_reward_vs_kl(results, output_dir / "reward_vs_kl.png", reward)
    for metric in metrics:
        paths[metric] = plot_metric_bars(results, metric, output_dir / f"{metric}.png")
    return paths
