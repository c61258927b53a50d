"""``aihf experiment mujoco --dry-run``: what a run into an output folder would do, without doing it.

A MuJoCo experiment is a resumable grid of runs (method x seed, ``aihf.experiments.mujoco``), each
20-30 minutes at the paper's scale. Before one starts, the dry run says for each run one of

* ``reused``: its ``result.json`` was made with the same settings (``mujoco.same_run``);
* ``copied from <folder>``: a ``reuse_from`` folder holds it finished (the run copies it);
* ``to resume at outer iteration <k>``: a resume point of this run is in ``seed<k>.resume`` and the run
  keeps resume points (the ml_irl schedule with ``loop.resume_every``);
* ``to train again (its result.json was made with other settings)``;
* ``to train``;

then how many environment steps that is and, where runs of a method are there to time it
(finished, copied or of other settings), about how long: their mean wall time (on the machine
that made them) times the runs to train. Nothing is written, no resume point is removed, no data or model is loaded.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from aihf.experiments.mujoco import (RESULT, MujocoConfig, cli_config, data_dir_of, finished_result, resume_point,
                                     reuse_source, unit_key)
from aihf.logs import count, seeds_by_status


def run_status(cfg: MujocoConfig, method: str, seed: int, out: Path) -> tuple[str, dict | None]:
    """(What ``mujoco.run`` would do with one run of the experiment ``cfg`` into ``out``, the finished run's
    result when it is reused or copied): the same lookups the run makes (``finished_result``,
    ``reuse_source``, ``resume_point``), without their side effects."""
    folder, key = out / "runs" / method / f"seed{seed}", unit_key(cfg, method, seed, data_dir_of(cfg))
    result = finished_result(folder, key, warn=False)
    if result is not None:
        return "reused", result
    origin = reuse_source(folder, key, cfg.reuse_from)
    if origin is not None:
        return f"copied from {origin}", finished_result(origin, key, warn=False)
    resume = resume_point(cfg, method, folder, key)
    state = resume.held() if resume is not None else None
    if state is not None:
        return f"to resume at outer iteration {state['iteration']}", None
    if (folder / RESULT).is_file():
        return "to train again (its result.json was made with other settings)", None
    return "to train", None


def describe(cfg: MujocoConfig, out: Path) -> str:
    """The dry run's text: the data, one line per method (its seeds' statuses), the totals and the estimate."""
    data_dir = data_dir_of(cfg)
    lines = [f"MuJoCo {cfg.env} into {out}: dry run, nothing trained or written",
             f"data: {data_dir} (demos {cfg.demos}, n_demos {cfg.n_demos}, n_prefs {cfg.n_prefs}); "
             f"{cfg.loop.total_steps:,} environment steps per run, schedule {cfg.loop.schedule}"]
    walls: dict[str, list[float]] = defaultdict(list)
    to_train: dict[str, int] = defaultdict(int)
    for method in cfg.methods:
        statuses: list[tuple[int, str]] = []
        for seed in cfg.seeds:
            status, result = run_status(cfg, method, seed, out)
            statuses.append((seed, status))
            stale = out / "runs" / method / f"seed{seed}" / RESULT  # a run of other settings times the method too
            timed = result if result is not None else (
                json.loads(stale.read_text(encoding="utf-8")).get("result", {}) if stale.is_file() else {})
            if timed.get("wall_s"):
                walls[method].append(float(timed["wall_s"]))
            if result is None:
                to_train[method] += 1
        lines.append(f"  {method}: {seeds_by_status(statuses)}")
    trained = sum(n for method, n in to_train.items() if method != "bc")
    lines.append(f"to train: {count(trained, 'run')} (up to {trained * cfg.loop.total_steps:,} environment steps)"
                 + (f", and {count(to_train['bc'], 'BC fit')} (seconds each)" if to_train.get("bc") else ""))
    timed = {method: n for method, n in to_train.items() if method != "bc" and walls[method]}
    if timed:
        hours = sum(n * sum(walls[m]) / len(walls[m]) for m, n in timed.items()) / 3600
        untimed = [m for m, n in to_train.items() if m != "bc" and n and m not in timed]
        lines.append(f"about {hours:.1f} h for the runs of {', '.join(timed)} (the mean wall time of the runs of each "
                     "found here, on the machine that made them, one run at a time)"
                     + (f"; {', '.join(untimed)}: no finished run here to time" if untimed else ""))
    return "\n".join(lines)


def dry_run_from_cli(env: str, preset: str, output_dir: str | None, overrides: list[str]) -> int:
    """``aihf experiment mujoco --env ENV --preset NAME --dry-run [key=value ...]``: print :func:`describe`."""
    loaded = cli_config(env, preset, output_dir, overrides)
    if loaded is None:
        return 2
    print(describe(*loaded))
    return 0
