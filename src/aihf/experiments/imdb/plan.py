"""``aihf experiment imdb --dry-run``: what a run into an output folder would do, without doing it.

A grid of IMDb units is resumed by running its command again: finished units (an
``evaluation.json`` whose key names the same evaluation prompts and pi_SFT) are read back,
the others trained (``pipeline.run``). Before a long grid, the dry run says which: for each
stage (the split, the SFT stages that make pi_SFT, the build answers) whether it is saved, and
for each unit (setting, run, seed) one of

* ``reused``: its ``evaluation.json`` has this run's key;
* ``reused if pi_SFT trains to <sha>``: the key's prompts are this run's, but pi_SFT is not
  trained yet, so whether it is the same weights is known only then (docs/reproducibility.md:
  another kind of CPU trains another pi_SFT, and every unit is then trained again);
* ``to train again (<why>)``: a saved ``evaluation.json`` of another key (``units.stale_because``);
* ``trained, to evaluate``: its final policy is saved, its evaluation is not;
* ``to train``: nothing finished there;
* ``refused (<why>)``: a saved stage trained with other settings than the run's variant, which
  the run would refuse (``units.reuse_check``).

Nothing is written and no model is loaded; the reviews are read (and the split made in
memory when none is saved) to know the evaluation prompts. With the build answers saved, each
setting's data is built from them in memory: one they cannot fill is the error the run would
stop with (before any unit), given now.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from aihf.config import ConfigError
from aihf.data import DataError
from aihf.experiments.imdb import data
from aihf.experiments.imdb.pipeline import (check_output_dir, evaluation_prompts, read_build_samples, setting_data,
                                            sft_stage_dir, unit_key)
from aihf.experiments.imdb.presets import ImdbConfig
from aihf.experiments.runs import RunSpec
from aihf.experiments.units import final_policy, reuse_check, stale_because
from aihf.lm.models import TINY, weights_sha256
from aihf.logs import seeds_by_status
from aihf.lm.scratch import SCRATCH


TRAINS = ("to train", "to train again")  # the statuses of the units the run would train
CONDITIONAL = "reused if pi_SFT trains to"  # followed by the saved pi_SFT's SHA-256


@dataclass(frozen=True)
class Unit:
    """One unit of the plan and what the run would do with it: ``status``, one of the module
    docstring's, and ``why`` (its parenthesis or sha there, else empty)."""

    setting: str
    run: str
    seed: int
    status: str
    why: str = ""

    def __str__(self) -> str:
        if self.status == CONDITIONAL:
            return f"{self.status} {self.why}"
        return f"{self.status} ({self.why})" if self.why else self.status


def sft_stages(config: ImdbConfig, out: Path) -> list[tuple[Path, bool]]:
    """Each SFT stage's policy folder (``pipeline.run_sft``'s layout) and whether it is saved."""
    folders = [final_policy(sft_stage_dir(out, stage), "sft") for stage in range(len(config.sft.stage_steps))]
    return [(folder, (folder / "config.json").is_file()) for folder in folders]


def unit_status(spec: RunSpec, run_dir: Path, key: dict) -> tuple[str, str]:
    """What ``pipeline.run`` would do with one unit: (status, why), the statuses of the module docstring.
    ``key`` is the run's ``pipeline.unit_key``, its ``pi_sft_sha256`` None when pi_SFT is not trained yet."""
    policy = final_policy(run_dir, spec.recipe)
    saved_path = run_dir / "evaluation.json"
    try:
        if saved_path.is_file():
            saved = json.loads(saved_path.read_text(encoding="utf-8"))
            old = saved.get("key") or {}
            # pi_SFT not trained yet (its SHA-256 None): compared on the rest of the key; the run compares all
            expected = {name: old.get(name) if value is None else value for name, value in key.items()}
            if old == expected:
                reuse_check(spec, policy)
                known = key["pi_sft_sha256"] is not None
                return ("reused", "") if known else (CONDITIONAL, f"{str(old.get('pi_sft_sha256'))[:12]}...")
            return "to train again", stale_because(saved, expected)
        if (policy / "config.json").is_file():
            reuse_check(spec, policy)
            return "trained, to evaluate", ""
    except ConfigError as err:
        return "refused", str(err)
    return "to train", ""


def plan_units(config: ImdbConfig, out: Path, key: dict) -> list[Unit]:
    """Every unit of the run (settings to run x their runs x seeds, the run's order) with its status."""
    return [
        Unit(setting.name, spec.name, seed, *unit_status(spec, out / "runs" / setting.name / spec.name / f"seed-{seed}", key))
        for setting in config.settings_to_run()
        for spec in config.setting_runs(setting.name)
        for seed in config.seeds
    ]


def describe(config: ImdbConfig, preset: str, out: Path) -> str:
    """The dry run's text: the stages, then the units, one line per setting and run, and the counts."""
    check_output_dir(out, config)
    reviews = data.load_reviews()
    split = data.saved_split(out / "split.json", reviews, config.split, config.prompts)
    lines = [f"IMDb ({preset}) into {out}: dry run, nothing trained or written",
             f"split: {'saved (split.json)' if split else 'to make (split.json)'}"]
    if split is None:
        split = data.make_split(reviews, config.split, config.prompts)
    gen = config.generation
    _, validation = data.prompt_subsets(reviews, split, gen.num_validation_prompts, gen.num_train_prompts)
    stages = sft_stages(config, out)
    pi_sft_sha256 = None
    if not stages:  # pi_SFT is the base: built into base/ (scratch, tiny), else a local folder's weights
        name = config.model.name_or_path
        base = out / "base" if name in (SCRATCH, TINY) else Path(name)
        if (base / "config.json").is_file():
            pi_sft_sha256 = weights_sha256(base)
        lines.append(f"pi_SFT: the base model {name} (no SFT stages), "
                     + (f"SHA-256 {pi_sft_sha256[:12]}..." if pi_sft_sha256 else "SHA-256 known once the run loads it"))
    else:
        for (folder, saved), steps in zip(stages, config.sft.stage_steps):
            lines.append(f"SFT stage {folder.parent.parent.name}: {steps} steps, {'saved' if saved else 'to train'}")
        folder, saved = stages[-1]
        if saved:
            pi_sft_sha256 = weights_sha256(folder)
            lines.append(f"pi_SFT: {folder}, SHA-256 {pi_sft_sha256[:12]}...")
    key = unit_key(config, evaluation_prompts(config, reviews, split, validation), pi_sft_sha256)
    answers = out / "build_samples.jsonl"
    lines.append(f"build answers: {'saved' if answers.is_file() else 'to sample'} (build_samples.jsonl)")
    if answers.is_file():  # a setting they cannot fill stops the run before its units: say so now (ConfigError)
        samples = read_build_samples(answers)
        for setting in config.settings_to_run():
            setting_data(samples, setting)
        lines.append("settings' data: each can be built from them")
    units = plan_units(config, out, key)
    lines.append(f"units: {len(units)} ({len(config.seeds)} seed(s) each), "
                 f"{sum(u.status in TRAINS for u in units)} to train:")
    by_run: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        by_run.setdefault((unit.setting, unit.run), []).append(unit)
    for (setting, run), group in by_run.items():
        lines.append(f"  {setting} / {run}: {seeds_by_status([(unit.seed, str(unit)) for unit in group])}")
    counts: dict[str, int] = {}
    for unit in units:
        status = "reused if pi_SFT is the saved one" if unit.status == CONDITIONAL else unit.status
        counts[status] = counts.get(status, 0) + 1
    lines.append("in all: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if any(unit.status == CONDITIONAL for unit in units):
        lines.append("whether this machine trains that pi_SFT: scripts/imdb_sft_fingerprint.py (docs/reproducibility.md)")
    return "\n".join(lines)


def dry_run_from_cli(preset: str, output_dir: str, overrides: list[str]) -> int:
    """``aihf experiment imdb --preset NAME --dry-run [key=value ...]``: print :func:`describe`; 2 on a bad config."""
    from aihf.experiments.imdb.presets import load_preset

    try:
        print(describe(load_preset(preset, overrides), preset, Path(output_dir)))
    except (ConfigError, DataError, FileNotFoundError, ValueError) as err:
        print(f"aihf: {err}", file=sys.stderr)
        return 2
    return 0
