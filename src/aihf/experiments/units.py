"""One unit of a language-model experiment (a run of one method and seed in one setting):
train it, reuse it when it has finished, score it.

Shared by the IMDb and the dialogue experiments (Anthropic-HH, UltraFeedback). A unit's
folder is ``runs/<setting>/<run>/seed-<s>/``: the run folder of ``aihf.lm.train.train``
(RLHF's policy in its ``policy/`` stage), and ``evaluation.json`` with the unit's results row,
its scored answers and the key its result depends on. ``config`` is an experiment's config
with a ``model`` section (``dtype``, ``max_length``, ``max_prompt_length``); an evaluator
has ``policy_run(name, policy_dir, seed)`` and a ``generations`` dict of scored answers.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import yaml

from aihf import run_folder
from aihf.config import ConfigError
from aihf.experiments.runs import RunSpec
from aihf.lm.methods import RECIPES
from aihf.lm.train import DataConfig, ModelConfig, TrainConfig, train
from aihf.runtime import atomic_file, machine_of, provenance

log = logging.getLogger(__name__)


def reuse_check(spec: RunSpec, policy_dir: Path) -> None:
    """A finished run whose policy is ``policy_dir`` is reused only if its stage was trained with
    ``spec``'s method and loop sections (a variant redefined under its old name is a
    ConfigError, not a stale row). A setting the saved config lacks counts as the same when the
    spec holds it at its default: one added to aihf after the run, at the value that keeps what
    the old code did (``run_folder.differences``)."""
    run_dir = policy_dir.parent.parent
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    sections = {"method": spec.method, "loop": spec.loop}
    free = tuple(f"loop.{key}" for key in ("output_dir", "seed", "resume_from", "progress"))  # a unit's own, or no effect
    differs = run_folder.differences({name: old.get(name, {}) for name in sections},
                                     {name: asdict(value) for name, value in sections.items()}, may_change=free,
                                     defaults={name: asdict(type(value)()) for name, value in sections.items()})
    if differs:
        raise ConfigError(f"{run_dir} was trained with other settings than run {spec.name!r} ({'; '.join(differs)}): "
                          "give the variant a new name or remove that folder")


def final_policy(run_dir: Path, method: str) -> Path:
    """Where ``aihf.lm.train.train`` leaves a method's trained policy (RLHF trains it in a second stage)."""
    return run_dir / ("policy" if method == "rlhf" else "") / "final" / "policy"


def training_losses(policy_dir: Path, window: int = 10) -> dict[str, float]:
    """Mean training loss over the first and the last ``window`` steps of the stage that wrote
    ``policy_dir`` (its ``metrics.json``); empty if the stage kept none."""
    path = policy_dir.parent.parent / "metrics.json"
    if not path.is_file():
        return {}
    losses = [step["loss"] for step in json.loads(path.read_text(encoding="utf-8"))["history"]]
    if not losses:
        return {}
    return {
        "train_loss_first": sum(losses[:window]) / len(losses[:window]),
        "train_loss_last": sum(losses[-window:]) / len(losses[-window:]),
    }


def train_stage(
    config, spec: RunSpec, start: str, run_dir: Path, seed: int, demos: Path | None, prefs: Path | None,
    prompts: Path | None = None, eval_prefs: Path | None = None,
) -> Path:
    """Train ``spec`` (a recipe with its method and loop sections) from the policy at ``start``
    on the record files it uses (the RL methods sample on ``prompts``); returns its final
    policy's folder."""
    method = spec.recipe
    done = final_policy(run_dir, method)
    if (done / "config.json").is_file():
        reuse_check(spec, done)
        log.info("%s: already trained in %s", spec.name, done)
        return done
    model, recipe = config.model, RECIPES[method]
    train_config = TrainConfig(
        model=ModelConfig(name_or_path=start, dtype=model.dtype),
        data=DataConfig(
            demonstrations=str(demos) if demos and recipe.uses_demos else None,
            preferences=str(prefs) if prefs and recipe.uses_prefs else None,
            eval_preferences=str(eval_prefs) if eval_prefs and prefs and recipe.uses_prefs else None,
            prompts=str(prompts) if prompts and recipe.uses_prompts else None,
            max_length=model.max_length,
            max_prompt_length=model.max_prompt_length,
        ),
        method=copy.deepcopy(spec.method),
        loop=replace(spec.loop, output_dir=str(run_dir), seed=seed),
    )
    # one method section serves every method of the run; an unfinished unit's folder is this
    # unit's to replace (a finished one was reused above), or to resume when it is the same run
    train(method, train_config, report_ignored=False, overwrite=True)
    return done


def heldout_accuracy(config, spec: RunSpec, run_dir: Path, policy: Path, pi_sft: Path, eval_prefs: Path) -> float:
    """Preference accuracy on the held-out pairs of the run's reward: the reward model of
    RLHF (its reward stage) and of AIHF's Algorithm 1 (the joint reward at the end), the
    implicit reward beta log(pi / pi_SFT) of every other method."""
    from aihf.lm.evaluate import evaluate

    lengths = dict(max_length=config.model.max_length, max_prompt_length=config.model.max_prompt_length)
    recipe = RECIPES[spec.recipe]
    if recipe.reward == "explicit":
        reward = run_dir / "reward" / "final" / "reward" if spec.recipe == "rlhf" else run_dir / "final" / "reward"
        return evaluate(str(reward), preferences=str(eval_prefs), **lengths)["preference_accuracy"]
    return evaluate(str(policy), preferences=str(eval_prefs), reference_path=str(pi_sft), beta=spec.method.beta, **lengths)[
        "preference_accuracy"
    ]


def finished_unit(evaluator, spec: RunSpec, run_dir: Path, seed: int, key: dict) -> dict | None:
    """The results row of a unit (one run, one seed) that has finished before, from its
    ``evaluation.json``, or None. A unit is finished when that file names the same
    evaluation prompts and pi_SFT: its weights need not be there (the committed raw results
    of a tuning grid let a later session skip it), and its stage config, when there, must be
    the variant's (``reuse_check``)."""
    path = run_dir / "evaluation.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("key") != key:
        log.warning("%s: trained again: %s", run_dir, stale_because(saved, key))
        return None
    reuse_check(spec, final_policy(run_dir, spec.recipe))
    evaluator.generations[(spec.name, seed)] = saved["generations"]
    return saved["row"]


def stale_because(saved: dict, key: dict) -> str:
    """Why a saved ``evaluation.json`` (``saved``) does not count as this run's unit: the fields
    of its key that differ from ``key``; for other start weights (IMDb's ``pi_sft_sha256``, the
    dialogue experiments' ``baseline_sha256``), both hashes and the machines that made them: the
    same code and seed train another pi_SFT on another kind of CPU (docs/reproducibility.md)."""
    old = saved.get("key") or {}
    changed = sorted(name for name in {*old, *key} if old.get(name) != key.get(name))
    reason = f"its evaluation.json was made with another {', '.join(changed)}"
    weights = next((name for name in changed if name.endswith("_sha256") and name in key), None)
    if weights is not None:
        reason += (f" (start weights {str(old.get(weights))[:12]}... made on {machine_of(saved.get('versions'))}; "
                   f"this run's {key[weights][:12]}... on {machine_of(provenance())}: the same code and seed "
                   "give another pi_SFT on another kind of CPU; an IMDb export made with "
                   "scripts/imdb_export_units.py --with-sft carries its pi_SFT, docs/reproducibility.md)")
    return reason


def evaluate_run(
    config, evaluator, spec: RunSpec, run_dir: Path, policy: Path, seed: int,
    pi_sft: Path, data_files, key: dict,
) -> dict[str, float]:
    """One trained run's results row (evaluation metrics, training losses, held-out preference
    accuracy), written to ``run_dir/evaluation.json`` with its scored answers, ``key``
    (:func:`finished_unit` reads it back) and the code, packages and machine (``versions``)."""
    row = {**evaluator.policy_run(spec.name, policy, seed), **training_losses(policy)}
    if data_files.eval_preferences:
        row["heldout_pref_accuracy"] = heldout_accuracy(config, spec, run_dir, policy, pi_sft, data_files.eval_preferences)
    with atomic_file(run_dir / "evaluation.json") as tmp:
        tmp.write_text(json.dumps({"key": key, "row": row, "generations": evaluator.generations[(spec.name, seed)],
                                   "versions": provenance()}), encoding="utf-8")
    return row
