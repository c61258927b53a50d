"""Issue 10's paper grid: the `paper` MuJoCo preset over environments, data settings and seeds,
two processes at a time, resumable.

    OMP_NUM_THREADS=1 python scripts/mujoco_paper_grid.py --envs Hopper-v5 --settings balanced \
        --seeds 0 1 2 --workers 2 --out runs/mujoco-paper --export docs/results/mujoco-paper

One process per (env, setting, seed), `aihf experiment mujoco --preset paper seeds=[s]` into
`<out>/<env>-<setting>/`: every (method, seed) run writes its own result.json and is reused
when present, and a stopped run continues from its last resume point (docs/control.md), so
the grid picks up where it stopped. A run already finished in another setting of the same
env is copied when its method reads none of the data that differs (true-reward SAC always,
ML-IRL and BC across preference counts, RLHF across demonstration files), so 30 of an env's
45 runs are trained, not 45. Units go in the order given (the issue: balanced Hopper
first), `--workers` of them at once. When every seed of an (env, setting) is finished, one
more pass with all seeds (every run reused) writes that folder's results.json, results.md
(95% t-intervals over seeds) and curves.png. `--export DIR` copies those three files of each
folder (no weights, no resume points) to DIR/<env>-<setting>/, and the result.json of every
finished run (the curves of a partly filled cell) to DIR/<env>-<setting>/runs/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {  # overrides of the paper preset (configs/mujoco/paper.yaml)
    "balanced": [],
    "low-quality-demos": ["demos=demos_low"],
    "few-preferences": ["n_prefs=200"],
}


def cell(env: str, setting: str) -> str:
    """The folder name of an (env, setting) cell: ``Hopper-v5-balanced`` (a namespace's ``/`` as ``-``)."""
    return f"{env.replace('/', '-')}-{setting}"


def command(env: str, setting: str, seeds: list[int], out: Path, preset: str = "paper",
            overrides: tuple[str, ...] = ()) -> list[str]:
    """The unit's command; it copies finished runs from the env's other settings where its
    method reads none of the data that differs (`reuse_from`, e.g. ML-IRL into few-preferences)."""
    seed_list = "[" + ", ".join(str(s) for s in seeds) + "]"
    siblings = "[" + ", ".join(str(out / cell(env, other)) for other in SETTINGS if other != setting) + "]"
    return [sys.executable, "-m", "aihf.cli", "experiment", "mujoco", "--env", env, "--preset", preset,
            "--output-dir", str(out / cell(env, setting)), f"seeds={seed_list}", f"reuse_from={siblings}",
            *SETTINGS[setting], *overrides]


def run_units(units: list[tuple[str, str, int]], out: Path, workers: int, logs: Path, preset: str,
              overrides: tuple[str, ...]) -> dict:
    """Run ``units`` (env, setting, seed), ``workers`` at a time; returns each unit's exit code."""
    logs.mkdir(parents=True, exist_ok=True)
    pending, running, codes = list(units), {}, {}
    while pending or running:
        while pending and len(running) < workers:
            env, setting, seed = unit = pending.pop(0)
            log = open(logs / f"{cell(env, setting)}-seed{seed}.log", "a", encoding="utf-8")
            print(f"start {env} {setting} seed {seed}", flush=True)
            running[unit] = (subprocess.Popen(command(env, setting, [seed], out, preset, overrides), stdout=log, stderr=subprocess.STDOUT), log)
        time.sleep(5)
        for unit, (process, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                codes[unit] = process.returncode
                print(f"end {' '.join(map(str, unit))}: exit {process.returncode}", flush=True)
                del running[unit]
    return codes


def export(folder: Path, target: Path) -> None:
    """results.json / .md / curves.png of a merged folder, and every finished run's result.json."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "curves.png", "config.yaml"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, target / name)
    for result in sorted(folder.glob("runs/*/seed*/result.json")):
        destination = target / "runs" / result.parent.parent.name / result.parent.name
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result, destination / "result.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5"])
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/mujoco-paper"))
    p.add_argument("--export", type=Path, help="copy results (no weights) here, e.g. docs/results/mujoco-paper")
    p.add_argument("--preset", default="paper", help="the MuJoCo preset (another one for a smoke run)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="more overrides for every unit")
    args = p.parse_args()
    overrides = tuple(args.overrides)
    units = [(env, setting, seed) for env in args.envs for setting in args.settings for seed in args.seeds]
    codes = run_units(units, args.out, args.workers, args.out / "logs", args.preset, overrides)
    for env in args.envs:
        for setting in args.settings:
            if all(codes.get((env, setting, seed)) == 0 for seed in args.seeds):
                merged = subprocess.run(command(env, setting, args.seeds, args.out, args.preset, overrides),
                                        capture_output=True, text=True)
                print(f"merged {env} {setting}: exit {merged.returncode}", flush=True)
            if args.export and (args.out / cell(env, setting)).is_dir():
                export(args.out / cell(env, setting), args.export / cell(env, setting))
    failed = [unit for unit, code in codes.items() if code != 0]
    if failed:
        print(f"{len(failed)} unit(s) failed: {failed} (see {args.out / 'logs'})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
