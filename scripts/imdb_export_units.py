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
are not copied. To continue: copy the exported folder to a run folder and run the same
command; the base, SFT and build stages are recomputed there and must give the same pi_SFT (``state.json``): a unit is skipped
only when its ``evaluation.json`` names that pi_SFT (``pipeline.finished_unit``).
"""

import argparse
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from aihf.runtime import provenance


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="an aihf experiment imdb output folder")
    p.add_argument("dest", type=Path, help="where to write the export")
    args = p.parse_args()
    src, dest = args.run, args.dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "config.yaml", "split.json", "build_report.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    for report in src.glob("settings/*/report.json"):
        (dest / report.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(report, dest / report.relative_to(src))
    pi_sft = max(src.glob("sft/stage-*/final/policy/model.safetensors"), key=lambda f: int(f.parts[-4].split("-")[1]))
    state = {"pi_sft_sha256": sha256(pi_sft), "build_samples_sha256": sha256(src / "build_samples.jsonl"), "units": 0,
             "versions": provenance()}  # pi_SFT depends on them: a continuation needs the same
    for evaluation in sorted(src.glob("runs/*/*/seed-*/evaluation.json")):
        unit = evaluation.parent
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
