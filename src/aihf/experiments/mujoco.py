"""The MuJoCo setting (docs/method.md section 6): AIHF (Algorithm 1 with SAC) against RLHF, ML-IRL,
behaviour cloning and a true-reward SAC, on the shipped expert data, equal budgets.

    aihf experiment mujoco --env Hopper-v5 --preset quick [key=value ...]

Presets are YAML files in ``configs/mujoco/`` (``MujocoConfig`` fields), shipped in the package
with the expert data of ``data/mujoco/`` (``aihf.shipped``). Writes to the output
directory: ``config.yaml``, ``results.json`` (every curve), ``results.md`` (the table),
``curves.png`` (true return vs. environment steps, mean and std over seeds, normalised by the
demonstrator's return), and per run ``runs/<method>/seed<k>/`` with TensorBoard logs
(``tb/``), ``policy.safetensors``, ``reward_net.safetensors`` and ``result.json``.

The runs are a resumable grid: each run's folder is written atomically, ``result.json`` last,
and a run whose ``result.json`` was made with the same settings (``unit_key``) is reused,
so an interrupted experiment continues where it stopped and more seeds or methods can be
added to a finished one. On the ml_irl schedule with ``loop.resume_every`` an interrupted
run itself continues from its last resume point (``runs/<method>/seed<k>.resume``).
Runs are compared on what their method reads (``READS``): ML-IRL never reads the preferences,
so ``reuse_from`` lets a few-preferences experiment copy the finished ML-IRL runs of a
balanced one instead of training the same runs again (likewise RLHF across demonstration
files, and true-reward SAC across every data setting).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from aihf import shipped
from aihf.config import Settings, load_config, save_config, setting
from aihf.control.algorithm import CONTROL_METHODS, ControlLoopConfig, train_method
from aihf.control.bc import BCConfig, bc_actor, train_bc
from aihf.control.reward_step import RewardStepConfig
from aihf.control.expert_data import demonstrator_return, load_data
from aihf.control.reset_seeds import evaluation_seed
from aihf.control.rollout import run_episode
from aihf.control.run_checkpoint import ResumePoint
from aihf.eval.stats import mean_interval
from aihf.logs import count
from aihf.runtime import atomic_directory, provenance

log = logging.getLogger(__name__)

PRESET_GROUP = "mujoco"  # configs/mujoco/ of the installed package
RESULT = "result.json"  # in each run's folder: its curve, and the settings it was made with
ALL_METHODS = (*CONTROL_METHODS, "bc")
DATA_FIELDS = ("demos", "n_demos", "n_prefs")  # the MujocoConfig fields that choose the data
READS = {  # the data fields each method's training reads (ML-IRL's preference-accuracy diagnostic aside)
    "aihf": DATA_FIELDS,
    "ml_irl": ("demos", "n_demos"),
    "rlhf": ("n_prefs",),
    "sac_true": (),
    "bc": ("demos", "n_demos"),
}


@dataclass
class MujocoConfig(Settings):
    """One MuJoCo experiment: methods x seeds on one data setting, the same loop budget for all."""

    env: str = setting("Hopper-v5", help="gymnasium environment id")
    data_dir: str | None = setting(None, help="expert data folder (null: the shipped data/mujoco/<env>)")
    methods: list[str] = setting(factory=lambda: list(ALL_METHODS), help=f"methods to run, of {ALL_METHODS}")
    seeds: list[int] = setting(factory=lambda: [0, 1, 2], help="one run per method and seed")
    demos: Literal["demos", "demos_low"] = setting("demos", help="demonstration file: expert or low-quality")
    n_demos: int = setting(10_000, gt=0, help="demonstration transitions used")
    n_prefs: int = setting(20_000, gt=0, help="segment preference pairs used")
    loop: ControlLoopConfig = setting(factory=ControlLoopConfig, help="budget and schedule")
    bc: BCConfig = setting(factory=BCConfig, help="behaviour cloning")
    torch_threads: int = setting(1, gt=0, help="torch intra-op threads per process")
    reuse_from: list[str] = setting(factory=list, help="other output folders (same env) whose finished runs "
                                    "are copied here when made with the same settings in all their method reads")

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {list(ALL_METHODS)}")
        if not self.seeds:
            raise ValueError("seeds is empty")


SHIPPED_DATA = "shipped"  # a unit key's data_dir for the shipped data/mujoco/<env>, on any checkout


def data_identity(env: str, data_dir: Path) -> str:
    """The unit key's ``data_dir``: ``SHIPPED_DATA`` for the shipped folder of ``env`` (so that
    committed runs are reused from a checkout at any path, or an installed package), else the
    folder as given."""
    return SHIPPED_DATA if data_dir.resolve() == shipped.mujoco_data_dir(env).resolve() else str(data_dir)


def data_dir_of(cfg: MujocoConfig) -> Path:
    """The data folder ``cfg`` reads: ``data_dir``, or the shipped data of ``cfg.env``."""
    return Path(cfg.data_dir) if cfg.data_dir else shipped.mujoco_data_dir(cfg.env)


LATER_SETTINGS = {"reward_normalize": False, "eval_split": "test", "reward_ensemble": 1, "reward_ensemble_rule": "mean",
                  "reward_ensemble_penalty": 0.0, "reward_ensemble_resample": "none",
                  "reward.label_smoothing": 0.0, "reward.label_noise": "conservative"}  # loop settings (dotted below it) added after runs were made: the value that reproduces them
RETIRED_SETTINGS = {f"reward.{k}": v for k, v in RewardStepConfig.RETIRED.items()}  # loop settings removed
# since runs were made (dotted like LATER_SETTINGS): saved keys hold them at this value, new keys not at all
BC_EVALUATION = {"eval_split": LATER_SETTINGS["eval_split"], "eval_episodes": 10}  # the loop settings BC's evaluation reads: the values its runs were made with


def unit_key(cfg: MujocoConfig, method: str, seed: int, data_dir: Path) -> dict:
    """What makes a run (method x seed) what it is: a finished run whose ``result.json`` holds
    the same key is reused, and a stopped one continues from a resume point with the same key;
    ``methods``, ``seeds``, ``torch_threads``, ``reuse_from`` and ``loop.resume_every`` may change,
    and data fields the method does not read (``same_run``). A loop setting added after runs were
    made (``LATER_SETTINGS``, a dotted name for one nested below the loop: ``reward.label_smoothing``)
    enters the key only away from the value those runs had, so they stay the same run. BC's key is its own settings and the loop's evaluation settings it
    reads (``BC_EVALUATION``), those only away from the values every BC run was made with."""
    loop = asdict(cfg.loop)
    if method == "bc":
        settings = {**asdict(cfg.bc), **{k: loop[k] for k, made in BC_EVALUATION.items() if loop[k] != made}}
    else:
        settings = _without_made({k: v for k, v in loop.items() if k != "resume_every"}, LATER_SETTINGS)
    return json.loads(json.dumps({"method": method, "seed": seed, "env": cfg.env,
                                  "data_dir": data_identity(cfg.env, data_dir),
                                  "demos": cfg.demos, "n_demos": cfg.n_demos, "n_prefs": cfg.n_prefs,
                                  "settings": settings}))


def _without_made(settings: dict, made: dict) -> dict:
    """``settings`` (a run key's, nested) without each setting of ``made`` (a dotted name: its value)
    that holds that value; changed in place and returned."""
    for dotted, value in made.items():
        *parents, leaf = dotted.split(".")
        node = functools.reduce(lambda tree, key: tree.get(key, {}), parents, settings)
        if leaf in node and node[leaf] == value:
            del node[leaf]
    return settings


def same_run(saved: dict, key: dict) -> bool:
    """Whether a run made with ``saved`` (a ``unit_key``, or a resume point's) is the run ``key`` asks
    for: equal in everything but the data fields its method does not read (``READS``) and the
    settings retired since at the value they had (``RETIRED_SETTINGS``)."""
    unread = set(DATA_FIELDS) - set(READS[key["method"]])
    if "settings" in saved:
        saved = {**saved, "settings": _without_made(copy.deepcopy(saved["settings"]), RETIRED_SETTINGS)}
    return {k: v for k, v in saved.items() if k not in unread} == {k: v for k, v in key.items() if k not in unread}


def finished_result(folder: Path, key: dict, warn: bool = True) -> dict | None:
    """The result of the run ``key`` finished in ``folder`` (its ``result.json`` made with the same run,
    ``same_run``), or None; ``warn``: log when the folder holds a run made with other settings."""
    path = folder / RESULT
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if same_run(saved.get("key", {}), key):
        return saved["result"]
    if warn:
        log.warning("%s was made with other settings: the run is trained again", path)
    return None


def reuse_source(folder: Path, key: dict, sources: list[str]) -> Path | None:
    """The same place as ``folder`` (runs/<method>/seed<k>) in the first of ``sources`` (``reuse_from``)
    that holds the run ``key`` finished, or None."""
    relative = folder.relative_to(folder.parents[2])
    for source in sources:
        origin = Path(source) / relative
        if origin.resolve() != folder.resolve() and finished_result(origin, key, warn=False) is not None:
            return origin
    return None


def resume_point(cfg: MujocoConfig, method: str, folder: Path, key: dict) -> ResumePoint | None:
    """Where the run ``key`` in ``folder`` keeps its resume points (``<folder>.resume``): on the ml_irl
    schedule with ``loop.resume_every``, never for BC; else None."""
    if method == "bc" or cfg.loop.schedule != "ml_irl" or cfg.loop.resume_every <= 0:
        return None
    return ResumePoint(folder.with_name(f"{folder.name}.resume"), key, cfg.loop.resume_every, same_run)


def _reused(folder: Path, key: dict, sources: list[str], warn: bool = True) -> dict | None:
    """The run ``key`` from ``folder``, or else copied (weights, logs, result.json, which then
    names its source as ``copied_from``) from ``reuse_source``; None when neither holds it."""
    result = finished_result(folder, key, warn)
    if result is not None:
        return result
    origin = reuse_source(folder, key, sources)
    if origin is not None:
        with atomic_directory(folder) as tmp:
            shutil.copytree(origin, tmp, dirs_exist_ok=True)
            saved = json.loads((tmp / RESULT).read_text(encoding="utf-8"))
            (tmp / RESULT).write_text(json.dumps({**saved, "copied_from": str(origin)}, indent=1), encoding="utf-8")
        log.info("%s: copied from %s (the same run: %s reads none of the data that differs)", folder, origin, key["method"])
        return saved["result"]
    return None


def copied_from_cell(saved: dict) -> Path | None:
    """The experiment folder (a grid cell) whose run a reused ``result.json`` (``saved``) was
    copied from (``_reused``'s ``copied_from``: that folder's runs/<method>/seed<k>), or None."""
    return Path(saved["copied_from"]).parents[2] if "copied_from" in saved else None


def _bc_result(cfg: MujocoConfig, demos, seed: int) -> dict:
    env = gym.make(cfg.env)
    t0 = time.time()
    fit = train_bc(demos, cfg.bc, seed)
    act = bc_actor(fit.policy, env.action_space.low, env.action_space.high)
    first = evaluation_seed(cfg.loop.eval_split, seed, 0)  # the split's reset seeds, as SAC's first evaluation
    returns = [run_episode(act, env, first + i).ret for i in range(cfg.loop.eval_episodes)]
    return {"steps": [cfg.loop.total_steps], "returns": [float(np.mean(returns))], "stds": [float(np.std(returns))],
            "wall_s": time.time() - t0, "bc_update": fit.update, "bc_holdout_nll": fit.holdout_nll}


def run(cfg: MujocoConfig, output_dir: str | Path) -> dict:
    """Run every method and seed; write results, table and plot; return the results dict."""
    torch.set_num_threads(cfg.torch_threads)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    data_dir = data_dir_of(cfg)
    demos, prefs = load_data(data_dir, cfg.demos, cfg.n_demos, cfg.n_prefs)
    expert = demonstrator_return(data_dir)
    runs: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    units = [(seed, method, out / "runs" / method / f"seed{seed}") for seed in cfg.seeds for method in cfg.methods]
    done = {(seed, method): _reused(folder, unit_key(cfg, method, seed, data_dir), cfg.reuse_from)
            for seed, method, folder in units}
    to_train = [u for u in units if done[u[:2]] is None and u[1] != "bc"]
    if len(to_train) < len(units):
        log.info("%d of %d runs finished before: reused from their result.json", sum(r is not None for r in done.values()), len(units))
    with tqdm(total=len(to_train) * cfg.loop.total_steps, unit="step",
              desc="env steps", dynamic_ncols=True, mininterval=2.0) as bar:
        for seed, method, folder in units:
            result = done[seed, method]
            if result is None:  # again: another process may have finished it in a reuse_from folder meanwhile
                result = _reused(folder, unit_key(cfg, method, seed, data_dir), cfg.reuse_from, warn=False)
            if result is None:
                bar.set_postfix_str(f"{method} seed {seed}")
                result = _train_unit(cfg, method, seed, demos, prefs, folder, data_dir, bar)
            runs[method].append(result)
    results = {"versions": provenance(), "env": cfg.env, "data_dir": str(data_dir), "demos": cfg.demos, "n_demos": len(demos),
               "n_prefs": len(prefs), "demonstrator_return": expert, "total_steps": cfg.loop.total_steps,
               "schedule": cfg.loop.schedule, "reward_shift": cfg.loop.reward_shift,
               "reward_normalize": cfg.loop.reward_normalize, "eval_split": cfg.loop.eval_split,
               **reward_ensemble_entry(cfg.loop), "seeds": cfg.seeds, "summary": summarise(runs, expert), "runs": runs}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(results_table(results))
    plot_curves(results, out / "curves.png")
    return results


def reward_ensemble_entry(loop) -> dict:
    """``results.json``'s record of a reward ensemble (docs/control.md), only when one was used
    (results made with one net keep their files as they were)."""
    if loop.reward_ensemble == 1:
        return {}
    return {"reward_ensemble": {"members": loop.reward_ensemble, "rule": loop.reward_ensemble_rule,
                                "penalty": loop.reward_ensemble_penalty, "resample": loop.reward_ensemble_resample}}


def ensemble_label(members: int, rule: str, penalty: float, resample: str = "none") -> str:
    """A reward ensemble in a few words: ``5 wco``; ``5 uwo 0.5`` with its penalty; ``5 wco
    resampled segments`` when each member fits its own resample of the data."""
    return (f"{members} {rule}" + (f" {penalty:g}" if rule == "uwo" else "")
            + (f" resampled {resample}" if resample != "none" else ""))


def _ensemble_words(results: dict) -> str:
    ensemble = results.get("reward_ensemble")
    if not ensemble:
        return ""
    label = ensemble_label(ensemble["members"], ensemble["rule"], ensemble["penalty"], ensemble.get("resample", "none"))
    return f"an ensemble of reward nets ({label}), "


OPTIONAL_RESULTS = ("reward_scales", "eval_reward")
"""``RunResult`` lists a run's result.json holds only when the run made them (runs made without
them keep their files as they were)."""


def _train_unit(cfg: MujocoConfig, method: str, seed: int, demos, prefs, folder: Path, data_dir: Path, bar) -> dict:
    """Train one run into ``folder`` atomically; its ``result.json`` (written last, with the code,
    packages and machine that finished it: ``runtime.provenance``) marks it finished. On the ml_irl schedule with ``loop.resume_every`` the run keeps resume points in
    ``<folder>.resume`` (continued when the run is started again; removed once it is finished)."""
    key = unit_key(cfg, method, seed, data_dir)
    resume = resume_point(cfg, method, folder, key)
    with atomic_directory(folder) as tmp:
        if method == "bc":
            result = _bc_result(cfg, demos, seed)
        else:
            run_result = train_method(method, cfg.loop, cfg.env, seed, demos, prefs, out_dir=tmp, progress=bar,
                                      resume=resume)
            result = {"steps": run_result.steps, "returns": run_result.returns, "stds": run_result.stds,
                      "wall_s": run_result.wall_s, "reward_diagnostics": run_result.reward_diagnostics,
                      **{name: getattr(run_result, name) for name in OPTIONAL_RESULTS if getattr(run_result, name)}}
        (tmp / RESULT).write_text(json.dumps({"key": key, "result": result, "versions": provenance()}, indent=1),
                                  encoding="utf-8")
    if resume is not None:
        resume.clear()
    return result


LATE_EVALUATIONS = 5
"""The secondary metric's window: the last 5 evaluations (260k-300k steps in the ``paper``
preset). Chosen after the final evaluation of one Hopper run fell from ~3,400 to 216
(docs/results.md); the final return, fixed before any run, stays the primary metric."""


def late_return(result: dict) -> float:
    """The secondary metric of one run's result: its mean true return over its last
    ``LATE_EVALUATIONS`` evaluations (BC's one evaluation is its final return)."""
    return float(np.mean(result["returns"][-LATE_EVALUATIONS:]))


def summarise(runs: dict[str, list[dict]], expert: float) -> dict[str, dict]:
    """Per method: final true return (mean, std and 95% t-interval over seeds), normalised by
    ``expert``; the secondary metric, each seed's mean true return over its last
    ``LATE_EVALUATIONS`` evaluations (normalised, with its 95% t-interval over seeds; BC has
    one evaluation, so the same figure); and wall time."""
    summary = {}
    for method, seed_runs in runs.items():
        final = np.array([r["returns"][-1] for r in seed_runs])
        late = np.array([late_return(r) for r in seed_runs])
        summary[method] = {"final_return_mean": float(final.mean()), "final_return_std": float(final.std()),
                           "normalised_mean": float(final.mean() / expert),
                           "normalised_std": float(final.std() / abs(expert)),
                           "normalised_ci95": mean_interval(list(final / expert))["ci95"],
                           "late_normalised_mean": float(late.mean() / expert),
                           "late_normalised_ci95": mean_interval(list(late / expert))["ci95"],
                           "wall_s_mean": float(np.mean([r["wall_s"] for r in seed_runs]))}
    return summary


VALIDATION_NOTE = "on the validation reset seeds (for choosing settings, not a test result)"


def results_table(results: dict) -> str:
    """The results' markdown table; a validation run says so in its title (``eval_split``)."""
    on_validation = f" {VALIDATION_NOTE}" if results.get("eval_split") == "validation" else ""
    lines = [
        f"# {results['env']}: true return after {results['total_steps']} environment steps{on_validation}",
        "",
        f"Demonstrations: {results['n_demos']} transitions ({results['demos']}); preferences: "
        f"{results['n_prefs']} segment pairs; seeds {results['seeds']}; schedule {results['schedule']}; "
        f"learned rewards {_ensemble_words(results)}"
        f"{'divided by their running std and ' if results.get('reward_normalize') else ''}"
        f"shifted by {results['reward_shift']:g}; normalised by the expert's return (the "
        f"demonstrator behind demos.npz, whichever demonstrations the methods learn from) "
        f"{results['demonstrator_return']:.1f} = 1.0. Mean +- std over seeds; "
        "95% CI: the half-width of the Student-t interval of the normalised mean over seeds. "
        f"The primary metric is the final return; the last column (secondary, chosen after a run was seen "
        f"to fall at its final evaluation) is each seed's mean over its last {LATE_EVALUATIONS} evaluations.",
        "",
        "| method | final return | normalised | normalised 95% CI | wall s / seed "
        f"| last {LATE_EVALUATIONS} evaluations, normalised (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for method, s in results["summary"].items():
        lines.append(f"| {method} | {s['final_return_mean']:.1f} +- {s['final_return_std']:.1f} | "
                     f"{s['normalised_mean']:.3f} +- {s['normalised_std']:.3f} | "
                     f"{_half_width(s['normalised_ci95'])} | {s['wall_s_mean']:.0f} | "
                     f"{s['late_normalised_mean']:.3f} ({_half_width(s['late_normalised_ci95'])}) |")
    return "\n".join(lines) + "\n"


def _half_width(ci95: float) -> str:
    """``± 0.123``, or ``none (1 seed)`` where one seed has no interval."""
    return f"± {ci95:.3f}" if np.isfinite(ci95) else "none (1 seed)"


def plot_curves(results: dict, path: Path) -> None:
    """Normalised true return vs. environment steps; BC and the demonstrator as lines. Where
    a method holds fewer runs than ``results["seeds"]`` (a partly finished grid), each label
    says how many it holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expert = results["demonstrator_return"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    uneven = {len(seed_runs) for seed_runs in results["runs"].values()} != {len(results["seeds"])}
    for method, seed_runs in results["runs"].items():
        label = f"{method} ({count(len(seed_runs), 'seed')})" if uneven else method
        if method == "bc":
            ax.axhline(np.mean([r["returns"][-1] for r in seed_runs]) / expert, ls=":", color="gray", label=label)
            continue
        steps = seed_runs[0]["steps"]
        curves = np.array([r["returns"] for r in seed_runs]) / expert
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(steps, mean, marker="o", label=label)
        ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.axhline(1.0, ls="--", color="black", label="expert (demos.npz)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("true return / expert's return")
    seeds = "the finished seeds" if uneven else count(len(results["seeds"]), "seed")
    on_validation = ", validation reset seeds" if results.get("eval_split") == "validation" else ""
    ax.set_title(f"{results['env']} ({results['demos']}, {results['n_prefs']} prefs{on_validation})\n"
                 f"mean over {seeds}; shaded: ± 1 standard deviation over seeds", fontsize=10)
    ax.legend(fontsize=8)  # the diagnostic plots label each curve with its settings
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cli_config(env: str, preset: str, output_dir: str | None, overrides: list[str]) -> tuple[MujocoConfig, Path] | None:
    """The config and output folder of ``aihf experiment mujoco --env ENV --preset NAME [key=value ...]``:
    preset NAME is the shipped ``configs/mujoco/NAME.yaml`` or a path to a YAML file; ``output_dir``
    defaults to ``outputs/mujoco-ENV-NAME`` in the working directory. None (with the presets named)
    when there is no such preset."""
    path = Path(preset) if shipped.is_path(preset) else shipped.config_file(PRESET_GROUP, preset)
    if path is None or not path.exists():
        names = shipped.config_names(PRESET_GROUP)
        print(f"aihf: no MuJoCo preset {preset!r}; presets: {', '.join(names)}")
        return None
    cfg = load_config(MujocoConfig, path, overrides, defaults={"env": env})
    return cfg, Path(output_dir) if output_dir else Path("outputs") / f"mujoco-{cfg.env}-{path.stem}"


def run_from_cli(env: str, preset: str, output_dir: str | None, overrides: list[str]) -> int:
    """``aihf experiment mujoco --env ENV --preset NAME [key=value ...]`` (``cli_config``); its
    ``--dry-run`` is ``aihf.experiments.mujoco_plan.dry_run_from_cli``."""
    loaded = cli_config(env, preset, output_dir, overrides)
    if loaded is None:
        return 2
    cfg, out = loaded
    start = time.time()
    results = run(cfg, out)
    print(results_table(results))
    print(f"{count(len(cfg.methods), 'method')} x {count(len(cfg.seeds), 'seed')} in {time.time() - start:.0f} s")
    print(f"results: {out / 'results.json'}\ntable:   {out / 'results.md'}\nplot:    {out / 'curves.png'}")
    print(f"tensorboard --logdir {out / 'runs'}")
    return 0
