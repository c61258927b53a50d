"""Results of a dialogue experiment: ``results.json``, ``results.md`` and figures.

Layout as the IMDb experiment's: ``results["settings"][setting][method][metric] =
{"mean", "ci95", "n"}`` for the metrics of :data:`aihf.experiments.dialogue.evaluation.METRICS`
(judge reward, KL to the baseline, win rate against it) with the per-seed ``"runs"``, and
``results["judge"]["name"]``. The held-out preference accuracy and training-loss tables and
the bar charts are the IMDb experiment's (``aihf.eval.plots``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aihf.experiments.dialogue.evaluation import METRICS
from aihf.eval.plots import _pyplot, accuracy_table, format_stat, label, loss_table, plot_metric_bars


def results_table(results: dict) -> str:
    """A markdown table: one row per setting and method, one column per metric (mean ± 95% CI)."""
    lines = [
        "| setting | method | " + " | ".join(label(results, m) for m in METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for setting, methods in results["settings"].items():
        for method, entry in methods.items():
            lines.append(f"| {setting} | {method} | " + " | ".join(format_stat(entry[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def plot_judge_vs_kl(results: dict, path: Path) -> Path:
    """One panel per setting: each method's mean judge reward against its KL to the baseline (95% CI bars)."""
    plt = _pyplot()
    settings = list(results["settings"])
    fig, axes = plt.subplots(1, len(settings), figsize=(4.5 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for method, entry in results["settings"][setting].items():
            kl, judge = entry["kl"], entry["judge"]
            ax.errorbar(kl["mean"], judge["mean"], xerr=np.nan_to_num(kl["ci95"]), yerr=np.nan_to_num(judge["ci95"]),
                        fmt="o", capsize=3, label=method)
        ax.set_xlabel(label(results, "kl"))
        ax.set_ylabel(label(results, "judge"))
        ax.set_title(setting)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(results: dict, output_dir: Path) -> dict[str, Path]:
    """results.json, results.md (metrics, held-out preference accuracy, training losses),
    judge_vs_kl.png and one bar chart per metric."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "results.json", "table": output_dir / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2), encoding="utf-8")
    extra = [table for table in (accuracy_table(results), loss_table(results)) if table]
    paths["table"].write_text(results_table(results) + "\n" + "".join(f"\n{t}\n" for t in extra), encoding="utf-8")
    paths["judge_vs_kl"] = plot_judge_vs_kl(results, output_dir / "judge_vs_kl.png")
    for metric in METRICS:
        paths[metric] = plot_metric_bars(results, metric, output_dir / f"{metric}.png")
    return paths
