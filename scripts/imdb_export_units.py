"""Export the small, committable part of an IMDb run folder, so that another session can
continue a long grid without training its finished units again.

    python scripts/imdb_export_units.py runs/imdb-tune docs/results/imdb-scratch-cpu-tune/imdb-tune

Copies results.json / results.md / config.yaml / split.json / build_report.json, each
setting's report.json, and per finished unit (run x seed with an ``evaluation.json``) that
file, its stage config(s) and, when the run kept one, its evaluations (``metrics.json``'s
per-round diagnostics) as ``diagnostics.json``; and writes ``state.json`` with the SHA-256 of
pi_SFT's weights and of the build answers, and the code, package versions and machine of
the exporting environment (pi_SFT depends on them: constraints.txt pins the packages; another
kind of CPU trains another pi_SFT, docs/reproducibility.md, which
`scripts/imdb_sft_fingerprint.py --expect state.json` tells before a grid starts). Weights
are not copied, unless ``--with-sft``. To continue: copy the exported folder to a run folder
and run the same command; the base, SFT and build stages are recomputed there and must give
the same pi_SFT (``state.json``): a unit is skipped only when its ``evaluation.json`` names
that pi_SFT (``pipeline.finished_unit``).

``--reported-only`` exports only the units results.json reports (its settings' runs and seeds): a folder
started from a copy of a grid (a confirmation, ``aihf tune confirm``) also holds the grid's other units,
which their own export already has.

``--with-sft`` also exports what the pipeline reuses instead of recomputing it: every SFT
stage's saved policy and config (``sft/stage-<k>/config.yaml`` and ``final/policy/``, pi_SFT
the last) and the build answers (``build_samples.jsonl``), 12.5 MB for the scratch model.
A continuation from it starts from this pi_SFT and these answers on any machine, so its
finished units are reused there (only the units it trains are made on the new CPU).
"""

import argparse
import json
import shutil
import subprocess
from pathlib import Path

from aihf.config import load_config
from aihf.experiments.imdb.presets import ImdbConfig
from aihf.lm.models import weights_sha256
from aihf.lm.scratch import base_folder
from aihf.runtime import file_sha256, provenance


def pi_sft_of(src: Path) -> Path:
    """The run folder's pi_SFT: its last SFT stage's final policy, or, in a run without SFT
    stages (``sft.stage_steps: []``), the base model its config.yaml names."""
    stages = list(src.glob("sft/stage-*/final/policy"))
    if stages:
        return max(stages, key=lambda f: int(f.parts[-3].split("-")[1]))
    config = load_config(ImdbConfig, src / "config.yaml")
    if config.sft.stage_steps:
        raise SystemExit(f"{src}: no finished SFT stage")
    return base_folder(config.model.name_or_path, config.model.scratch, [], src / "base")


def export_sft(src: Path, dest: Path) -> None:
    """Copy each finished SFT stage's config.yaml and final policy, and the build answers, from
    the run folder ``src`` to ``dest`` at the same paths: ``units.train_stage`` reuses a stage
    whose final policy is there and ``pipeline.sample_build`` the answers file. (The build
    answers come after every SFT stage; a run without SFT stages exports the answers alone.)"""
    if not (src / "build_samples.jsonl").is_file():
        raise SystemExit(f"{src}: no build answers, so no finished SFT stages, to export (--with-sft)")
    for config in sorted(src.glob("sft/stage-*/final/policy/config.json")):
        policy, stage = config.parent, config.parents[2]
        shutil.copytree(policy, dest / policy.relative_to(src), dirs_exist_ok=True)
        shutil.copy2(stage / "config.yaml", dest / stage.relative_to(src) / "config.yaml")
    shutil.copy2(src / "build_samples.jsonl", dest / "build_samples.jsonl")


def reported_units(src: Path) -> set[tuple[str, str, str]]:
    """(setting, run, ``seed-<n>``) of every unit the run folder's results.json reports."""
    results = json.loads((src / "results.json").read_text(encoding="utf-8"))
    return {(setting, run, f"seed-{unit['seed']}") for setting, rows in results["settings"].items()
            for run, row in rows.items() for unit in row["runs"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="an aihf experiment imdb output folder")
    p.add_argument("dest", type=Path, help="where to write the export")
    p.add_argument("--with-sft", action="store_true", help="also the SFT stages' policies and the build answers, so "
                   "that a continuation on another kind of CPU reuses them (and the finished units)")
    p.add_argument("--reported-only", action="store_true", help="only the units results.json reports (not the "
                   "other units of a grid the folder was started from)")
    args = p.parse_args()
    src, dest = args.run, args.dest
    reported = reported_units(src) if args.reported_only else None
    dest.mkdir(parents=True, exist_ok=True)
    if args.with_sft:
        export_sft(src, dest)
    for name in ("results.json", "results.md", "config.yaml", "split.json", "build_report.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    for report in src.glob("settings/*/report.json"):
        (dest / report.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(report, dest / report.relative_to(src))
    state = {"pi_sft_sha256": weights_sha256(pi_sft_of(src)), "build_samples_sha256": file_sha256(src / "build_samples.jsonl"),
             "units": 0, "versions": provenance()}  # pi_SFT depends on them: a continuation needs the same
    for evaluation in sorted(src.glob("runs/*/*/seed-*/evaluation.json")):
        unit = evaluation.parent
        if reported is not None and unit.relative_to(src / "runs").parts not in reported:
            continue
        out = dest / unit.relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        saved = json.loads(evaluation.read_text(encoding="utf-8"))
        saved["key"].setdefault("pi_sft_sha256", state["pi_sft_sha256"])  # files written before the key named it
        (out / "evaluation.json").write_text(json.dumps(saved), encoding="utf-8")
        for config in [unit / "config.yaml", *unit.glob("*/config.yaml")]:
            if config.is_file():
                (out / config.relative_to(unit)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(config, out / config.relative_to(unit))
        metrics = unit / "metrics.json"
        if metrics.is_file():
            evaluations = json.loads(metrics.read_text(encoding="utf-8"))["evaluations"]
            if evaluations:
                (out / "diagnostics.json").write_text(json.dumps(evaluations, indent=1), encoding="utf-8")
        state["units"] += 1
    (dest / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    print(f"{state['units']} finished units exported to {dest}")
    exported = "\n".join(str(p) for p in dest.rglob("*") if p.is_file())
    ignored = subprocess.run(["git", "check-ignore", "--stdin"], input=exported, capture_output=True, text=True,
                             cwd=dest).stdout.split()
    if ignored:  # an export that git would not commit continues nothing
        raise SystemExit(f"{len(ignored)} exported files are ignored by git, e.g. {ignored[0]}: fix .gitignore")


if __name__ == "__main__":
    main()
