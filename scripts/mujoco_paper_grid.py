"""Issue 10's paper grid: the `paper` MuJoCo preset over environments, data settings and seeds,
two processes at a time, resumable.

    OMP_NUM_THREADS=1 python scripts/mujoco_paper_grid.py --envs Hopper-v5 --settings balanced \
        --seeds 0 1 2 --workers 2 --out runs/mujoco-paper --export docs/results/mujoco-paper

One process per run to train (env, setting, seed, method), `aihf experiment mujoco --preset paper
seeds=[s] methods=[m]` into `<out>/<env>-<setting>/` (a unit is one run: ~2,000 s on one core
for a 300k-step run), skipped when that run's result.json is there; every run writes its own
result.json and is reused when present, and a stopped run continues from its last resume point (docs/control.md), so
the grid picks up where it stopped. A run already finished in another setting of the same
env is copied when its method reads none of the data that differs (true-reward SAC always,
ML-IRL and BC across preference counts, RLHF across demonstration files and counts), so 48
of an env's 75 runs are trained, not 75 (30 of 45 in the first three settings; the fourth
and fifth, one episode and a tenth of one, train AIHF, ML-IRL and BC). Units go in the order given (the issue:
balanced Hopper first), `--workers` processes at once, except copies: a unit whose run is finished in another
setting runs as soon as it is, in the grid's own process (seconds; a new interpreter would spend 5 s on imports). When every seed of an (env, setting)
is finished (the preset's seeds and those asked for, whichever process ran them), one
more pass with all seeds (every run reused; in the grid's process too) writes that folder's results.json, results.md
(95% t-intervals over seeds) and curves.png, for the methods asked for and every other method
finished there (a grid given `methods=[bc]` keeps the cell's AIHF). `--export DIR` copies those three files of each
folder (no weights, no resume points) to DIR/<env>-<setting>/, and the result.json of every
finished run (the curves of a partly filled cell) to DIR/<env>-<setting>/runs/; and reads
them back first (`restore`), so a new machine's grid trains only what DIR lacks. A unit cut
off there loses its resume points: `--start-for` starts none that the session would cut off.
A run whose result.json was made with other settings (an older preset, or overrides that
change the runs) is not trained again, replacing it, unless `--replace` says so: the grid
lists them and stops, so that trying a setting in the paper grid's --out and --export cannot
overwrite its committed runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import yaml

AIHF_CLI = [sys.executable, "-m", "aihf.cli"]  # a unit's command starts with these; run_here drops them
PAPER_ENVS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]  # the order; --envs defaults to the first two
SETTINGS = {  # overrides of the paper preset (configs/mujoco/paper.yaml)
    "balanced": [],
    "low-quality-demos": ["demos=demos_low"],
    "few-preferences": ["n_prefs=200"],
    "few-demonstrations": ["n_demos=1000"],  # one expert episode against 20,000 pairs (added in session 23)
    "tenth-episode": ["n_demos=100"],  # the first 100 steps of that episode against 20,000 pairs (session 25)
}


def cell(env: str, setting: str) -> str:
    """The folder name of an (env, setting) cell: ``Hopper-v5-balanced`` (a namespace's ``/`` as ``-``)."""
    return f"{env.replace('/', '-')}-{setting}"


def command(env: str, setting: str, seeds: list[int], out: Path, preset: str = "paper",
            overrides: tuple[str, ...] = (), methods: list[str] | None = None) -> list[str]:
    """The command that runs ``methods`` (the preset's when None) on ``seeds``; it copies
    finished runs from the env's other settings where a method reads none of the data that
    differs (`reuse_from`, e.g. ML-IRL into few-preferences). The unit's seeds and methods
    come after ``overrides``, so that a cell's plan given there (``seeds=[10, 11, 12]``) does
    not make one unit run every planned seed."""
    seed_list = "[" + ", ".join(str(s) for s in seeds) + "]"
    only = [f"methods=[{', '.join(methods)}]"] if methods else []
    siblings = "[" + ", ".join(str(out / cell(env, other)) for other in SETTINGS if other != setting) + "]"
    return [*AIHF_CLI, "experiment", "mujoco", "--env", env, "--preset", preset,
            "--output-dir", str(out / cell(env, setting)), f"reuse_from={siblings}",
            *SETTINGS[setting], *overrides, f"seeds={seed_list}", *only]


def run_here(env: str, setting: str, seeds: list[int], out: Path, preset: str, overrides: tuple[str, ...],
             methods: list[str], log_path: Path) -> int:
    """Run in this process what ``command`` would run in a new one (``aihf.cli.main`` with its
    arguments: the same messages and exit codes), its output appended to ``log_path``. For a
    copy or a merge: seconds of work, where a new interpreter spends 5 s importing torch and
    gymnasium (a unit that trains runs in its own process: ``run_units``)."""
    from aihf.cli import main as aihf_main

    argv = command(env, setting, seeds, out, preset, overrides, methods)[len(AIHF_CLI):]
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            code = aihf_main(argv)
        except Exception:  # what aihf.cli.main does not expect: its traceback, and a subprocess's exit code
            traceback.print_exc()
            return 1
    if code == 130:  # Ctrl-C: stop the grid, as it stops a unit's process
        raise KeyboardInterrupt
    return code


def run_units(units: list[tuple[str, str, int, str]], out: Path, workers: int, logs: Path, preset: str,
              overrides: tuple[str, ...], start_until: float = math.inf,
              is_copy: Callable[[tuple[str, str, int, str]], bool] = lambda unit: False) -> dict:
    """Run ``units`` (env, setting, seed, method) in the given order, ``workers`` processes at a
    time, starting none after the ``time.time()`` ``start_until`` (those left are reported, not
    run); returns each started unit's exit code. A unit that ``is_copy`` (checked at the start
    and whenever a unit ends: its run is now finished in another setting, which the experiment
    copies in seconds) runs at once in this process instead (``run_here``), window or not."""
    logs.mkdir(parents=True, exist_ok=True)
    pending, running, codes, ended = list(units), {}, {}, True

    def report(unit, code: int, started: float) -> None:
        codes[unit] = code
        print(f"end {' '.join(map(str, unit))}: exit {code} after {time.time() - started:,.0f} s "
              f"({len(codes)}/{len(units)} units ended)", flush=True)

    while pending or running:
        for unit in [unit for unit in pending if is_copy(unit)] if ended else []:
            pending.remove(unit)
            env, setting, seed, method = unit
            print(f"copy {env} {setting} seed {seed} {method}", flush=True)
            started = time.time()
            report(unit, run_here(env, setting, [seed], out, preset, overrides, [method], unit_log(logs, unit)), started)
        if pending and time.time() >= start_until:
            print(f"not started (--start-for is over): {pending}", flush=True)
            pending = []
        while pending and len(running) < workers:
            env, setting, seed, method = unit = pending.pop(0)
            log = open(unit_log(logs, unit), "a", encoding="utf-8")
            print(f"start {env} {setting} seed {seed} {method}", flush=True)
            running[unit] = (subprocess.Popen(command(env, setting, [seed], out, preset, overrides, [method]),
                                              stdout=log, stderr=subprocess.STDOUT), log, time.time())
        time.sleep(1 if running else 0)
        ended = False
        for unit, (process, log, started) in list(running.items()):
            if process.poll() is not None:
                log.close()
                report(unit, process.returncode, started)
                del running[unit]
                ended = True
    return codes


def cell_config(preset: str, env: str, setting: str, overrides: tuple[str, ...] = ()):
    """The experiment config of an (env, setting) cell: the preset, the setting's overrides,
    then the grid's."""
    from aihf import shipped
    from aihf.config import load_config
    from aihf.experiments.mujoco import PRESET_GROUP, MujocoConfig

    path = Path(preset) if shipped.is_path(preset) else shipped.config_file(PRESET_GROUP, preset)
    return load_config(MujocoConfig, path, [*SETTINGS[setting], *overrides], defaults={"env": env})


def planned(cfg, seeds: list[int]) -> tuple[list[int], list[str]]:
    """The seeds and methods a cell holds when complete: the seeds of its config ``cfg`` (the
    preset's unless overridden) and those asked for (a grid process may run some of them while
    another runs the rest), and the config's methods."""
    return sorted(set(cfg.seeds) | set(seeds)), list(cfg.methods)


def finished(out: Path, cfg, setting: str, seed: int, method: str) -> bool:
    """Whether the (method, seed) run of the cell ``cfg`` describes holds, in the folder of
    ``setting``, a result.json made with the run key that ``cfg`` gives it (``experiments.mujoco.same_run``): one made with
    other settings (an older preset, a restored export) is not finished, and the experiment
    trains it again (with ``--replace``: ``replaced_runs``)."""
    from aihf.experiments.mujoco import data_dir_of, same_run, unit_key

    path = out / cell(cfg.env, setting) / "runs" / method / f"seed{seed}" / "result.json"
    if not path.is_file():
        return False
    saved = json.loads(path.read_text(encoding="utf-8")).get("key", {})
    return same_run(saved, unit_key(cfg, method, seed, data_dir_of(cfg)))


def cell_methods(out: Path, cfg, setting: str, seeds: list[int], methods: list[str]) -> list[str]:
    """The methods a cell's tables merge: those asked for (``methods``) and every other method
    whose runs of all ``seeds`` are ``finished`` in the cell, in ``ALL_METHODS`` order. A grid
    asked for some of a cell's methods (``methods=[bc]``) thus merges and exports the cell with
    the methods other grid processes finished there, never without them."""
    from aihf.experiments.mujoco import ALL_METHODS

    return [m for m in ALL_METHODS if m in methods or all(finished(out, cfg, setting, s, m) for s in seeds)]


def replaced_runs(out: Path, units: list[tuple[str, str, int, str]]) -> list[Path]:
    """The result.json files that running ``units`` (runs not ``finished``) would replace: runs
    there made with another run key (an older preset, or the same preset under other overrides)."""
    paths = [out / cell(env, setting) / "runs" / method / f"seed{seed}" / "result.json"
             for env, setting, seed, method in units]
    return [path for path in paths if path.is_file()]


def copied(out: Path, configs: dict, unit: tuple[str, str, int, str]) -> bool:
    """Whether ``unit``'s run is finished in another setting of the same env, so that the
    experiment copies it (in seconds) instead of training it: its method reads none of the
    data that differs (``experiments.mujoco.same_run``)."""
    env, setting, seed, method = unit
    return any(finished(out, configs[env, setting], other, seed, method) for other in SETTINGS if other != setting)


def unit_log(logs: Path, unit: tuple[str, str, int, str]) -> Path:
    """The file a unit's output goes to: ``logs/<cell>-seed<k>-<method>.log``."""
    env, setting, seed, method = unit
    return logs / f"{cell(env, setting)}-seed{seed}-{method}.log"


TABLES = ("results.json", "results.md", "curves.png")  # what `aihf experiment mujoco` writes for the seeds it ran


def restore(exported: Path, folder: Path) -> int:
    """Copy the finished runs of an exported cell (``exported``: its config.yaml and each run's
    result.json, and the cell's tables where it was complete) into the grid's ``folder`` where
    they are missing, so that a grid on a new machine, whose ``--out`` did not travel, trains
    only what the export lacks (a result.json alone is reused: docs/control.md) and merges
    only what changed. Returns how many files were copied."""
    copied = 0
    for source in [exported / "config.yaml", *sorted(exported.glob("runs/*/seed*/result.json")),
                   *(exported / t for t in TABLES)]:
        destination = folder / source.relative_to(exported)
        if source.is_file() and not destination.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
            copied += 1
    return copied


def merged(folder: Path, seeds: list[int], methods: list[str]) -> bool:
    """Whether ``folder``'s results.json already merges ``seeds`` of ``methods``: each method's
    runs in it are its runs' result.json, seed by seed, so that merging again would change only
    the stamps. ``methods`` is the cell's whole list (``cell_methods``), so tables that hold
    other methods are merged again."""
    tables = folder / "results.json"
    if not tables.is_file():
        return False
    saved = json.loads(tables.read_text(encoding="utf-8"))
    if saved.get("seeds") != seeds or set(saved.get("runs", {})) != set(methods):
        return False
    runs = {m: [json.loads((folder / "runs" / m / f"seed{s}" / "result.json").read_text(encoding="utf-8"))["result"]
                for s in seeds] for m in methods}
    return saved.get("runs") == runs


def export(folder: Path, target: Path, complete: bool, seeds: list[int], methods: list[str]) -> None:
    """config.yaml (with the cell's planned ``seeds`` and ``methods``, not the one run's of the
    unit that wrote it last)
    and every finished run's result.json; the cell's tables only when it is ``complete`` (every
    planned seed merged): each unit's own run writes them for its one seed, and those must not
    pass for the cell's (a stale copy in ``target`` is removed)."""
    target.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    (target / "config.yaml").write_text(yaml.safe_dump({**config, "methods": methods, "seeds": seeds}, sort_keys=False), encoding="utf-8")
    for name in TABLES:
        if complete:
            shutil.copy2(folder / name, target / name)
        else:
            (target / name).unlink(missing_ok=True)
    for result in sorted(folder.glob("runs/*/seed*/result.json")):
        destination = target / "runs" / result.parent.parent.name / result.parent.name
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(result, destination / "result.json")


def _mean_pm(summary: dict, metric: str) -> str:
    """``0.91 +- 0.04`` from ``summarise``'s ``<metric>_mean`` and ``<metric>_ci95``; the mean
    alone where one seed has no interval."""
    ci95 = summary[f"{metric}_ci95"]
    return f"{summary[f'{metric}_mean']:.2f}" + (f" +- {ci95:.2f}" if math.isfinite(ci95) else "")


def exported_envs(export_dir: Path, envs: list[str]) -> list[str]:
    """``envs`` and every other environment with a cell exported in ``export_dir`` (its
    config.yaml names it), so that a grid run on one environment keeps the others' rows; in
    the order of ``PAPER_ENVS``, then by name, whichever were asked for."""
    found = {yaml.safe_load(c.read_text(encoding="utf-8"))["env"] for c in export_dir.glob("*/config.yaml")}
    return sorted(found | set(envs), key=lambda env: (PAPER_ENVS.index(env) if env in PAPER_ENVS else len(PAPER_ENVS), env))


def cell_demonstrators(exported_cell: Path, env: str) -> tuple[dict, float, str]:
    """An exported cell's config.yaml, the expert's return (the demonstrator behind demos.npz,
    the normaliser in every setting) and, where the cell learns from other demonstrations,
    their name and return for its row label ("; demos_low 2,167"; else "")."""
    from aihf import shipped
    from aihf.control.expert_data import demonstrator_return

    config = yaml.safe_load((exported_cell / "config.yaml").read_text(encoding="utf-8"))
    data_dir = config["data_dir"] or shipped.mujoco_data_dir(env)
    learned_from = "" if config["demos"] == "demos" else \
        f"; {config['demos']} {demonstrator_return(data_dir, config['demos']):,.0f}"
    return config, demonstrator_return(data_dir), learned_from


def method_status(saved: list[dict], expert: float, planned: int) -> str:
    """One method's status cell from its finished runs' result.json contents ``saved``:
    ``k/planned: mean +- ci (each seed's final return, (c) for a copy); last 5: mean +- ci``,
    normalised by ``expert`` with the experiment's own table figures (``summarise``); "-"
    when none is finished."""
    from aihf.experiments.mujoco import LATE_EVALUATIONS, summarise

    if not saved:
        return "-"
    summary = summarise({"method": [s["result"] for s in saved]}, expert)["method"]
    seeds_text = ", ".join(f"{s['result']['returns'][-1]:,.0f}{' (c)' if 'copied_from' in s else ''}" for s in saved)
    return (f"{len(saved)}/{planned}: {_mean_pm(summary, 'normalised')} ({seeds_text}); "
            f"last {LATE_EVALUATIONS}: {_mean_pm(summary, 'late_normalised')}")


def finished_runs(exported_cell: Path, method: str) -> list[dict]:
    """The result.json contents of ``method``'s finished runs exported in ``exported_cell``, by seed."""
    return [json.loads(r.read_text(encoding="utf-8")) for r in sorted(exported_cell.glob(f"runs/{method}/seed*/result.json"))]


STATUS_NOTE = ("Final true return of each finished seed, and the mean normalised by the expert's "
               "return (the demonstrator behind demos.npz, in every setting; where a cell learns from other "
               "demonstrations, their own return follows) +- the half-width of the 95% "
               "t-interval over the finished seeds; then the secondary metric "
               "(chosen after a run fell at its final evaluation): each seed's mean over its last {late} "
               "evaluations, normalised the same way. (c): copied from another "
               "setting, the same run (the method reads none of the data that differs; docs/control.md).")


def write_status(export_dir: Path, envs: list[str], seeds: list[int]) -> Path:
    """``export_dir/status.md``: for every exported cell and method, the finished seeds, each
    seed's final true return, and their mean normalised by the expert's return with the
    95% t-interval (none below 2 seeds); runs copied from another setting are marked. Written
    from the exported result.json files, so no number in it is typed by hand. A cell not yet
    merged gets ``curves-partial.png``: the curves of its finished runs."""
    from aihf.experiments.mujoco import ALL_METHODS, LATE_EVALUATIONS, plot_curves

    lines = ["# The paper grid: which runs are finished", "",
             f"Written by `scripts/mujoco_paper_grid.py` from the runs exported here; {len(seeds)} seeds per cell "
             f"planned. {STATUS_NOTE.format(late=LATE_EVALUATIONS)}", ""]
    for env in envs:
        lines += [f"## {env}", "", "| setting | " + " | ".join(ALL_METHODS) + " |", "|---|" + "---|" * len(ALL_METHODS)]
        for setting in SETTINGS:
            exported_cell = export_dir / cell(env, setting)
            if not list(exported_cell.glob("runs/*/seed*/result.json")):
                continue
            config, expert, learned_from = cell_demonstrators(exported_cell, env)
            saved = {method: finished_runs(exported_cell, method) for method in ALL_METHODS}
            row = [method_status(saved[method], expert, len(seeds)) for method in ALL_METHODS]
            lines.append(f"| {setting} (expert {expert:,.0f}{learned_from}) | " + " | ".join(row) + " |")
            partial = exported_cell / "curves-partial.png"
            if (exported_cell / "results.json").is_file():  # exported only once complete
                partial.unlink(missing_ok=True)
            else:
                curves = {method: [s["result"] for s in runs] for method, runs in saved.items() if runs}
                plot_curves({"env": env, "demos": config["demos"], "n_prefs": config["n_prefs"], "seeds": seeds,
                             "demonstrator_return": expert, "runs": curves},
                            partial)
        lines.append("")
    path = export_dir / "status.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=PAPER_ENVS[:2])
    p.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("runs/mujoco-paper"))
    p.add_argument("--export", type=Path, help="copy results (no weights) here, e.g. docs/results/mujoco-paper")
    p.add_argument("--preset", default="paper", help="the MuJoCo preset (another one for a smoke run)")
    p.add_argument("--no-run", action="store_true", help="start no unit: only merge finished cells, export, "
                   "and write the status (e.g. beside a grid that is running)")
    p.add_argument("--start-for", type=float, default=math.inf, metavar="SECONDS",
                   help="start no unit after this many seconds (those started run to the end): a unit stopped "
                   "with the session loses what its resume points held if --out does not travel")
    p.add_argument("--replace", action="store_true", help="train again the runs whose result.json was made with "
                   "other settings (without it the grid refuses: an override would otherwise replace every "
                   "finished run of --out, and with --export the committed ones)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="more overrides for every unit (settings that "
                   "change the runs belong in another --out and --export)")
    args = p.parse_args()
    overrides = tuple(args.overrides)
    configs = {(env, setting): cell_config(args.preset, env, setting, overrides)
               for env in args.envs for setting in args.settings}
    seeds, methods = planned(next(iter(configs.values())), args.seeds)  # the settings change neither
    if not set(seeds) <= set(args.seeds):
        print(f"note: each cell plans seeds {seeds} (the preset's and --seeds) and is merged when all are finished; "
              f"pass \"seeds={sorted(set(args.seeds))}\" to plan only --seeds", flush=True)
    start_until = time.time() + args.start_for
    if args.export:
        for env in args.envs:
            for setting in args.settings:
                restored = restore(args.export / cell(env, setting), args.out / cell(env, setting))
                if restored:
                    print(f"restored {restored} file(s) (finished runs, tables) of {cell(env, setting)} "
                          f"from {args.export}", flush=True)
    units = [(env, setting, seed, method) for env in args.envs for setting in args.settings for seed in args.seeds
             for method in methods if not finished(args.out, configs[env, setting], setting, seed, method)]
    replaced = [] if args.no_run or args.replace else replaced_runs(args.out, units)
    if replaced:
        listed = "\n  ".join(map(str, replaced[:10])) + (f"\n  ... {len(replaced) - 10} more" if len(replaced) > 10 else "")
        sys.exit(f"{len(replaced)} finished run(s) were made with other settings and would be trained again, "
                 f"replacing them:\n  {listed}\nrun settings that change the runs with another --out and --export, "
                 "or pass --replace to train these again")
    logs = args.out / "logs"
    codes = {} if args.no_run else run_units(units, args.out, args.workers, logs, args.preset, overrides, start_until,
                                             is_copy=lambda unit: copied(args.out, configs, unit))
    for env in args.envs:
        for setting in args.settings:
            complete = all(finished(args.out, configs[env, setting], setting, seed, method)
                           for seed in seeds for method in methods)
            merging = cell_methods(args.out, configs[env, setting], setting, seeds, methods)
            if complete and not merged(args.out / cell(env, setting), seeds, merging):
                logs.mkdir(parents=True, exist_ok=True)
                code = run_here(env, setting, seeds, args.out, args.preset, overrides, merging,
                                logs / f"{cell(env, setting)}-merge.log")
                print(f"merged {env} {setting} ({', '.join(merging)}): exit {code}", flush=True)
                complete = code == 0
            if args.export and (args.out / cell(env, setting)).is_dir():
                export(args.out / cell(env, setting), args.export / cell(env, setting), complete, seeds, merging)
    if args.export and args.export.is_dir():
        print(f"status: {write_status(args.export, exported_envs(args.export, args.envs), seeds)}", flush=True)
    elif args.export:  # no unit of this grid has run yet (--start-for over before the first)
        print(f"status: nothing exported to {args.export} yet", flush=True)
    failed = [unit for unit, code in codes.items() if code != 0]
    if failed:
        print(f"{len(failed)} unit(s) failed: {failed} (see {args.out / 'logs'})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
