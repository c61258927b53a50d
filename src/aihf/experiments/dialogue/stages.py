"""What the dialogue experiments (Anthropic-HH, UltraFeedback) share: their model and
evaluation sections, the base model, and the loop that trains and scores every run.

The training and scoring of one unit (setting, run, seed) is the IMDb experiment's
(``aihf.experiments.units``: ``train_stage``, ``finished_unit``, ``evaluate_run``;
``summarised`` with this experiment's metrics), so a unit's folder, its reuse rules and its ``evaluation.json`` are the same.

Several processes (``torchrun`` or ``accelerate launch`` running the whole experiment): every
process runs every training stage (a collective operation); the main process alone writes
the data files (the others read them after it, :func:`main_first`) and samples and scores the
evaluation, while the others go on to the next training stage, which waits for it.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Literal

import yaml

from aihf import logs, run_folder, runtime
from aihf.runtime import mix_seeds
from aihf.config import ConfigError, Settings, save_config, setting, to_dict
from aihf.data import PromptRecord, write_jsonl
from aihf.experiments.dialogue.dryrun import epochs_to_steps
from aihf.experiments.dialogue.evaluation import METRICS, Evaluator, SamplingSection
from aihf.experiments.dialogue.judge import make_judge
from aihf.lm.scratch import SCRATCH, ScratchModelConfig, base_folder
from aihf.eval.metrics import summarise_runs
from aihf.eval.plots import write_outputs
from aihf.experiments.units import evaluate_run, finished_unit, train_stage
from aihf.experiments.runs import RunSpec
from aihf.lm.methods import MethodConfig
from aihf.lm.models import weights_sha256
from aihf.lm.trainer import LoopConfig

log = logging.getLogger(__name__)
# keys that add or select runs (each in its own folder), or do not change a run's steps
MAY_CHANGE = ("methods", "seeds", "variants", "grid", "model.device", "hardware", "evaluation.batch_size",
              *(f"{loop}.{key}" for loop in ("loop", "sft.loop") for key in ("output_dir", "resume_from", "progress")))


@dataclass
class ModelSection(Settings):
    """The policy every stage starts from, and the token limits of every stage.

    ``name_or_path``: a hub name, a local ``save_pretrained`` folder, ``smollm2-135m`` (the
    packaged SmolLM2-135M-Instruct), ``tiny`` (the random test model) or ``scratch`` (a small
    GPT-NeoX with a BPE tokenizer trained on the experiment's training texts, ``scratch``
    sizes; ``aihf.lm.scratch``). ``device``: where the evaluation samples
    (``auto``: CUDA when there is one); training goes through accelerate.
    """

    name_or_path: str = setting("EleutherAI/pythia-1b", help="hub name, local folder, smollm2-135m, tiny or scratch")
    dtype: Literal["float32", "bfloat16", "float16"] = setting("bfloat16", help="weights' dtype")
    device: str = setting("auto", help="where evaluation samples: auto, cpu, cuda, cuda:N")
    max_length: int = setting(512, ge=2, help="tokens of prompt + response")
    max_prompt_length: int = setting(256, ge=1, help="tokens of the prompt (kept from its end)")
    scratch: ScratchModelConfig = field(default_factory=ScratchModelConfig)

    def torch_device(self) -> str:
        """``device`` with ``auto`` resolved (the main process's own GPU under a launcher)."""
        import torch
        from accelerate import PartialState

        if self.device != "auto":
            return self.device
        return f"cuda:{PartialState().local_process_index}" if torch.cuda.is_available() else "cpu"


@dataclass
class EvalSection(Settings):
    """The held-out evaluation: prompts answered, answer length, batch size, held-out pairs.

    Tuning runs (learning rates, beta, weights) are scored on validation prompts instead of
    the test prompts (``on: validation``): the prompts of ``num_validation`` training rows
    held out of every stage (:func:`hold_out`). A reported run keeps the same
    ``num_validation`` (the same training data) with ``on: test``.
    """

    num_prompts: int = setting(500, ge=1, help="held-out prompts each policy answers")
    num_preferences: int = setting(500, ge=0, help="held-out test pairs scored by each run's reward")
    max_new_tokens: int = setting(128, ge=1, help="tokens of an evaluation answer")
    batch_size: int = setting(16, ge=1, help="prompts per sampling batch")
    num_validation: int = setting(0, ge=0, help="training rows held out of every stage for validation prompts")
    on: Literal["test", "validation"] = setting("test", help="score on the test prompts, or the validation prompts (tuning)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.on == "validation" and not self.num_validation:
            raise ValueError("on: validation needs num_validation > 0 (the training rows held out for it)")


def hold_out(records: list, count: int, seed: int, key=None) -> tuple[list, list]:
    """(kept, held out): ``count`` of ``records`` chosen by a seeded draw (from ``seed`` mixed
    with 1, apart from the D/P order), both in their original order.

    With ``key`` (e.g. :func:`prompt_key`), records sharing a key are held out together, so
    no held-out prompt stays in training: the groups are drawn in a seeded order and taken
    while they fit in ``count`` (fewer rows only when no remaining group fits)."""
    if count >= len(records):
        raise ConfigError(f"evaluation.num_validation {count} leaves none of the {len(records)} training rows")
    rng = random.Random(mix_seeds(seed, 1))
    if key is None:
        held = set(rng.sample(range(len(records)), count))
    else:
        groups: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(key(record), []).append(i)
        order = list(groups)
        rng.shuffle(order)
        held = set()
        for name in order:
            if len(held) + len(groups[name]) <= count:
                held.update(groups[name])
            if len(held) == count:
                break
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def sampling(model: ModelSection, evaluation: EvalSection) -> SamplingSection:
    return SamplingSection(evaluation.max_new_tokens, evaluation.batch_size, model.max_length,
                           model.max_prompt_length, model.dtype, model.torch_device())


def check_sft_epochs(model: ModelSection, epochs: float) -> None:
    """ValueError when a run would take the scratch model untrained as pi_SFT: ``sft.epochs: 0``
    makes the base pi_SFT as it is, which only a model SFT-ed already can be."""
    if epochs == 0 and model.name_or_path == SCRATCH:
        raise ValueError("sft.epochs is 0, so the base model is pi_SFT as it is, but model.name_or_path: scratch is "
                         "an untrained model the run builds: SFT it (sft.epochs > 0) or name a model SFT-ed already")


def base_model(model: ModelSection, texts: Iterator[str], out: Path) -> str:
    """The local folder the run starts from (``aihf.lm.scratch.base_folder``): the scratch model
    built on ``texts``, or the tiny test model saved, into ``out/base``; a hub model's snapshot
    or the packaged SmolLM2's conversion. Made by the main process first, then asked for by the
    others (a hub snapshot is found in the cache, or downloaded on a node whose cache is not
    shared). A local folder, because a run without SFT (``sft.epochs: 0``) has the base as its
    baseline, which the units' key names by its weights' SHA-256."""
    def make() -> str:
        return str(base_folder(model.name_or_path, model.scratch, texts, out / "base"))

    on_main(make)
    return make()


def process_state():
    """accelerate's process state (``aihf.runtime.process_state``: torchrun ranks on a CPU
    included); each experiment makes it first."""
    return runtime.process_state()


def is_main() -> bool:
    return process_state().is_main_process


def on_main(write) -> None:
    """Run ``write()`` (a stage's files) on the main process alone; every process waits
    until it has, so the files are complete when any process reads them. If it fails, the
    main process raises the error (the command's one line) and the others exit quietly,
    instead of waiting for it in the next collective."""
    state = process_state()
    failed: BaseException | None = None
    if state.is_main_process:
        try:
            write()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the others know
            failed = err
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        if broadcast_object_list([failed is not None])[0] and not state.is_main_process:
            raise SystemExit(1)
    if failed is not None:
        raise failed


def claim_output_dir(out: Path, config, defaults) -> None:
    """Write ``config.yaml`` into ``out``; refuse a directory holding a run made
    with other settings, outside those that only add or select runs (:data:`MAY_CHANGE`) or
    a setting the saved config lacks that is at its default (``defaults``)."""
    saved = out / "config.yaml"
    if saved.is_file():
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
        changed = run_folder.differences(old, to_dict(config), MAY_CHANGE, defaults=to_dict(defaults))
        if changed:
            raise ConfigError(f"{out} holds a run made with other settings ({'; '.join(changed[:6])}): "
                              "choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, saved)


def main_evaluator(config, baseline: Path, name: str, test: list, validation: list,
                   training: Iterable) -> tuple[Evaluator | None, dict | None]:
    """On the main process: the evaluator of ``config.judge`` on the first
    ``config.evaluation.num_prompts`` distinct prompts of ``test`` (or of the held-out
    ``validation`` rows, ``evaluation.on``) that no ``training`` record has (a prompt seen in
    training is no test of generalisation: HH repeats first turns across its splits), against
    the policy ``baseline`` (a results row ``name``), and the units' key (:func:`unit_key`);
    elsewhere (None, None)."""
    if not is_main():
        return None, None
    judge = make_judge(config.judge, config.model.torch_device())
    rows = validation if config.evaluation.on == "validation" else test
    prompts, skipped = unseen_prompts(rows, training, config.evaluation.num_prompts)
    if not prompts:
        raise ConfigError(f"evaluation.on={config.evaluation.on}: every one of its {skipped} distinct prompts also "
                          "opens a training row, so none is left to evaluate on")
    if skipped:
        log.info("evaluation: %d distinct %s prompt(s) also open a training row and are left out",
                 skipped, config.evaluation.on)
    evaluator = Evaluator(baseline, name, prompts, judge, sampling(config.model, config.evaluation), config.seeds)
    return evaluator, unit_key(evaluator, baseline)


def unit_key(evaluator: Evaluator, baseline: Path) -> dict:
    """What a finished unit's result depends on beyond its own run: the evaluation prompts,
    the judge and the baseline's weights (SHA-256)."""
    return {"prompts": evaluator.texts, "judge": evaluator.judge.name, "baseline_sha256": weights_sha256(baseline)}


@dataclass(frozen=True)
class SettingFiles:
    """One setting's record files (None when empty): D, P, the RL prompts, held-out pairs."""

    demonstrations: Path | None
    preferences: Path | None
    prompts: Path | None
    eval_preferences: Path | None


def prompt_key(record) -> str:
    """A prompt's identity across record kinds and formats: its chat messages as JSON (a
    plain-text prompt is one user turn)."""
    return json.dumps(record.prompt_messages())


def unseen_prompts(rows, training: Iterable, count: int | None = None) -> tuple[list[PromptRecord], int]:
    """The first ``count`` distinct prompts of ``rows`` that no ``training`` record has, and
    how many distinct prompts of ``rows`` were left out for it."""
    seen = {prompt_key(record) for record in training}
    kept = distinct_prompts((r for r in rows if prompt_key(r) not in seen), count)
    return kept, len({prompt_key(r) for r in rows} & seen)


def distinct_prompts(records, count: int | None = None) -> list[PromptRecord]:
    """The distinct prompts of ``records`` in order (the first ``count``)."""
    seen: dict[str, PromptRecord] = {}
    for record in records:
        seen.setdefault(prompt_key(record), PromptRecord(record.prompt))
        if count is not None and len(seen) == count:
            break
    return list(seen.values())


def setting_files(folder: Path, eval_prefs: Path | None) -> SettingFiles:
    """Where one setting's D, P and RL prompts are (:func:`write_setting_files`) in ``folder``."""
    return SettingFiles(folder / "demonstrations.jsonl", folder / "preferences.jsonl", folder / "prompts.jsonl", eval_prefs)


def write_setting_files(files: SettingFiles, demos: list, prefs: list, report: dict) -> None:
    """D, P and the RL prompts (P's distinct prompts) of one setting as JSONL, and
    ``report.json`` beside them (``report`` with the three counts)."""
    files.demonstrations.parent.mkdir(parents=True, exist_ok=True)
    prompts = distinct_prompts(prefs)
    for path, records in zip((files.demonstrations, files.preferences, files.prompts), (demos, prefs, prompts)):
        write_jsonl(records, path)
    report = {"demonstrations": len(demos), "preferences": len(prefs), "rl_prompts": len(prompts), **report}
    (files.demonstrations.parent / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")


def sft_run(name: str, records: int, epochs: float, method: MethodConfig, loop: LoopConfig, processes: int) -> RunSpec:
    """SFT for ``epochs`` passes over ``records`` on ``processes`` processes, as a run."""
    return RunSpec(name, "sft", method, replace(loop, max_steps=epochs_to_steps(records, epochs, loop, processes)))


def train_and_evaluate(config, setting_name: str, runs: list[RunSpec], start: Path, files: SettingFiles,
                       evaluator: Evaluator | None, key: dict | None, out: Path, entries: dict) -> None:
    """Train every run of one setting and seed from ``start`` (``config.model`` gives the
    lengths) and score it; ``entries[run name]`` gets its summarised results. The evaluation
    (``evaluator``, main process only) is skipped where it is None."""
    for spec in runs:
        rows = []
        for seed in config.seeds:
            run_dir = out / "runs" / setting_name / spec.name / f"seed-{seed}"
            row = finished_unit(evaluator, spec, run_dir, seed, key) if evaluator else None
            if row is None:
                policy = train_stage(config, spec, str(start), run_dir, seed, files.demonstrations, files.preferences,
                                     prompts=files.prompts, eval_prefs=files.eval_preferences)
                if evaluator is None:
                    continue
                row = evaluate_run(config, evaluator, spec, run_dir, policy, seed, start, files, key)
            rows.append(row)
        if evaluator is not None:
            entries[spec.name] = summarised({"runs": rows, "spec": spec.recipe})
    if evaluator is not None:
        evaluator.write_generations(out / "generations" / setting_name)


def summarised(entry: dict) -> dict:
    """A results entry with the mean ± 95% interval over its runs of every metric (and of the
    held-out preference accuracy when every run has one)."""
    runs = entry["runs"]
    entry.update(summarise_runs(runs, METRICS))
    if runs and all("heldout_pref_accuracy" in run for run in runs):
        entry.update(summarise_runs(runs, ["heldout_pref_accuracy"]))
    return entry


def save_results(results: dict, out: Path) -> None:
    """The results files (main process): ``aihf.eval.plots.write_outputs`` with this
    experiment's metrics, the judge's reward against KL in ``reward_vs_kl.png``."""
    if is_main():
        write_outputs(results, out, METRICS, reward="judge")


def run_from_cli(title: str, load, run, dry_run, preset: str, output_dir: str, overrides: list[str], dry: bool) -> int:
    """``aihf experiment hh|ultra``: load the preset (``load``), then print the dry run
    (``dry_run``) or run the experiment (``run``); errors propagate to ``aihf.cli``, which
    prints them as one line."""
    logs.setup(logging.INFO)
    config = load(preset, overrides)
    if dry:
        print(dry_run(config, preset, output_dir, overrides))
        return 0
    run(config, output_dir)
    if is_main():
        print(f"{title} ({preset}): results in {output_dir}/results.md")
    return 0
