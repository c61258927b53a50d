"""The IMDb experiment end to end (docs/method.md section 6).

    aihf experiment imdb --preset balanced --output-dir outputs/imdb seeds=[0]

1. split (saved as ``split.json``), gold reward (cached, ``gold.py``);
2. SFT on the SFT split, one stage per checkpoint (``sft/stage-<i>``), the last is pi_SFT;
   it starts from ``model.name_or_path``, or from a small model built on that split
   (``model.name_or_path: scratch``, ``base.py``, saved in ``base/``);
3. every SFT checkpoint answers the build prompts; the answers get gold rewards and say
   whether they finished (``build_samples.jsonl``; shares of finished and of round-tripping
   answers in ``build_report.json``);
4. per setting: D and P from those answers (``settings/<name>/``);
5. per setting, method and seed: the method trains from pi_SFT through ``aihf.lm.train``
   (``runs/<setting>/<method>/seed-<s>/``), then answers the held-out test prompts,
   scored by gold reward, judge, KL to pi_SFT and win rate against pi_SFT's answers;
   pi_SFT itself is the row ``pi_sft``;
6. ``results.json``, ``results.md``, the figures (``plots.py``) and, per setting, every
   evaluation answer with its scores and a readable ``samples.md`` (``generations/``); a grid on
   the validation prompts also gets each method's best gold reward within KL budgets
   (``kl_budgets.md``, ``kl_frontier.png``; ``tuning.write_kl_budgets``).

A stage whose outputs exist is not run again, so an interrupted run resumes where it
stopped. The RL methods (RLHF's policy stage, AIHF's policy step) sample on the split's
training prompts (``train_prompts.jsonl``, docs/method.md section 6), less the validation
prompts that tuning runs evaluate on (``generation.evaluate_on``).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from aihf import logs, run_folder
from aihf.config import ConfigError, save_config, to_dict
from aihf.data import DataError, PromptRecord, write_jsonl
from aihf.data.builders import BuildConfig, BuiltData, ScoredResponse, build_datasets
from aihf.eval.gold import GoldScorer, load_gold
from aihf.eval.judge import Judge, make_judge
from aihf.eval.generations import write_generations
from aihf.eval.metrics import generation_metrics, kl_to_reference, summarise_runs
from aihf.eval.plots import plot_ratio_sweep, write_outputs
from aihf.experiments.imdb import data, tuning
from aihf.lm.scratch import base_folder
from aihf.experiments.imdb.presets import ImdbConfig, RunSpec, load_preset
from aihf.experiments.imdb.sampling import Generations, generate
from aihf.experiments.units import evaluate_run, finished_unit, train_stage
from aihf.lm.models import load_causal_lm, weights_sha256
from aihf.runtime import provenance, set_torch_threads

log = logging.getLogger(__name__)
BASELINE = "pi_sft"


RUN_SELECTION = ("methods", "seeds", "variants", "grid", "setting_variants", "run_settings")


def unit_key(config: ImdbConfig, prompts: list[str], pi_sft_sha256: str | None) -> dict:
    """What a finished unit's result depends on beyond its own run config: the evaluation
    prompts and pi_SFT's weights (SHA-256), the start and reference of every run (None: not known
    yet, in ``plan``'s dry run before pi_SFT is trained)."""
    return {"evaluate_on": config.generation.evaluate_on, "prompts": prompts, "pi_sft_sha256": pi_sft_sha256}


def summarised(entry: dict) -> dict:
    """A results entry with the mean ± 95% interval over its runs of every metric (and of the
    held-out preference accuracy when every run has one)."""
    entry.update(summarise_runs(entry["runs"]))
    if entry["runs"] and all("heldout_pref_accuracy" in run for run in entry["runs"]):
        entry.update(summarise_runs(entry["runs"], ["heldout_pref_accuracy"]))
    return entry


def sft_stage_dir(out: Path, stage: int) -> Path:
    """The run folder of SFT stage ``stage`` (``sft/stage-<i>``; its policy at ``units.final_policy(..., "sft")``)."""
    return out / "sft" / f"stage-{stage}"


def run_sft(config: ImdbConfig, reviews: data.Reviews, split: data.Split, out: Path) -> list[Path]:
    """SFT stages on the SFT split's demonstrations from the base model's local folder
    (``aihf.lm.scratch.base_folder``); the checkpoints' policy directories, pi_SFT last (the
    base itself when ``sft.stage_steps`` is empty)."""
    indices = split.sft[: config.sft.num_reviews]
    demos = data.sft_demonstrations(reviews, indices, config.prompts, split.config.seed)
    path = out / "sft" / "demonstrations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(demos, path)
    texts = (demo.prompt + demo.response for demo in demos)
    base = base_folder(config.model.name_or_path, config.model.scratch, texts, out / "base")
    if not config.sft.stage_steps:
        return [base]
    start, checkpoints = str(base), []
    for stage, steps in enumerate(config.sft.stage_steps):
        spec = RunSpec("sft", "sft", config.method, replace(config.sft.loop, max_steps=steps))
        stage_dir = sft_stage_dir(out, stage)
        checkpoints.append(train_stage(config, spec, start, stage_dir, config.sft.loop.seed, path, None))
        start = str(checkpoints[-1])
    return checkpoints


def answer(config: ImdbConfig, model, tokenizer, prompts: list[str], seed: int, description: str) -> Generations:
    """One temperature-1 answer per prompt, with the run's lengths and batch size."""
    gen = config.generation
    return generate(
        model, tokenizer, prompts, gen.max_new_tokens, config.model.max_prompt_length, seed, gen.batch_size, description
    )


def read_build_samples(path: Path) -> list[ScoredResponse]:
    """The build answers saved by :func:`sample_build`.

    A file from before the answers recorded whether they finished is refused (ConfigError),
    not patched: its demonstrations and preferences encoded answers cut at
    ``max_new_tokens`` as if they had ended with eos, and the runs trained on them (which a
    resumed run would reuse) are stale with it.
    """
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("finished"), bool):
            raise ConfigError(
                f"{path}, line {number}: no boolean 'finished': the build answers were saved before they recorded "
                "whether they ended with eos or were cut at max_new_tokens, so the settings and runs made from "
                "them are stale; choose a new output directory (or delete build_samples.jsonl, settings/ and runs/)"
            )
    return [ScoredResponse(**row) for row in rows]


def sample_build(
    config: ImdbConfig, reviews: data.Reviews, split: data.Split, checkpoints: list[Path], gold: GoldScorer, out: Path
) -> list[ScoredResponse]:
    """Every SFT checkpoint's answer to each build prompt, with its gold reward and whether it
    finished (empty answers dropped); a single checkpoint (one SFT stage, or none) answers
    twice, with sampling seeds 0 and 1, so that a prompt can have the two answers a preference pairs.

    ``build_report.json`` gives the answers kept, the share that finished and the share whose
    ids round-trip (decoded text re-encoded as training encodes it gives the sampled ids).
    """
    path, report_path = out / "build_samples.jsonl", out / "build_report.json"
    if path.is_file():
        return read_build_samples(path)
    indices = split.build[: config.generation.num_build_prompts]
    prompts = data.prompts(reviews, indices, config.prompts, split.config.seed)
    samples, round_trips, device = [], [], config.model.torch_device()
    log.info("build sampling on %s", device)
    answerers = checkpoints if len(checkpoints) > 1 else checkpoints * 2
    for i, checkpoint in enumerate(answerers):
        if i == 0 or checkpoint != answerers[i - 1]:  # a single checkpoint is loaded once for both answers
            model, tokenizer = load_causal_lm(checkpoint, config.model.dtype, device=device)
        answers = answer(config, model, tokenizer, prompts, i, f"SFT checkpoint {i + 1}/{len(answerers)} answers build prompts")
        rewards = gold.score(answers.texts())
        for p, r, g, done, same in zip(prompts, answers.responses, rewards, answers.finished, answers.round_trips):
            if r.strip():
                samples.append(ScoredResponse(p, r, float(g), done))
                round_trips.append(same)
    report = {
        "answers": len(samples),
        "finished": sum(s.finished for s in samples) / len(samples) if samples else float("nan"),
        "response_ids_round_trip": sum(round_trips) / len(round_trips) if round_trips else float("nan"),
    }
    log.info("build answers: %s", report)
    report_path.write_text(json.dumps(report, indent=2), encoding="utf-8")  # before the file that marks the stage done
    path.write_text("".join(json.dumps(asdict(s)) + "\n" for s in samples), encoding="utf-8")
    return samples


def build_report(out: Path) -> dict[str, float]:
    """``build_report.json`` of :func:`sample_build` (empty, with a warning, if it is missing)."""
    path = out / "build_report.json"
    if not path.is_file():
        log.warning("%s is missing: the settings' reports go without the build answers' round-trip share", path)
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def write_rl_prompts(
    config: ImdbConfig, reviews: data.Reviews, split: data.Split, indices: tuple[int, ...], path: Path
) -> Path:
    """The RL methods' prompts (``indices``: the split's training prompts less the validation ones) as JSONL."""
    records = [PromptRecord(p) for p in data.prompts(reviews, indices, config.prompts, split.config.seed)]
    write_jsonl(records, path)
    return path


def evaluation_prompts(
    config: ImdbConfig, reviews: data.Reviews, split: data.Split, validation: tuple[int, ...]
) -> list[str]:
    """The held-out test prompts, or the ``validation`` prompts for a tuning run (``evaluate_on``)."""
    indices = validation if config.generation.evaluate_on == "validation" else split.eval_prompts
    return data.prompts(reviews, indices[: config.generation.num_eval_prompts], config.prompts, split.config.seed)


@dataclass(frozen=True)
class SettingData:
    """The files of one setting: D, P and the held-out preferences (None when empty), and the build report."""

    report: dict[str, float]
    demonstrations: Path | None
    preferences: Path | None
    eval_preferences: Path | None


def setting_data(samples: list[ScoredResponse], setting: BuildConfig) -> BuiltData:
    """D, P and the held-out preferences of ``setting`` from the build answers
    (``builders.build_datasets``); a setting they cannot fill is a ConfigError naming it."""
    try:
        return build_datasets(samples, setting)
    except ValueError as err:
        raise ConfigError(
            f"setting {setting.name!r}: {err}; raise generation.num_build_prompts or lower its counts"
        ) from err


def write_setting_data(
    samples: list[ScoredResponse], setting: BuildConfig, folder: Path, build: dict[str, float] | None = None
) -> SettingData:
    """D, P and the held-out preferences of one setting as JSONL in ``folder`` (with ``report.json``).

    The report is :func:`~aihf.data.builders.build_datasets`'s (shares of
    finished demonstrations, chosen and rejected responses included) with the build
    answers' ``response_ids_round_trip`` share from ``build`` (:func:`build_report`).
    A setting that the build answers cannot fill is a ConfigError naming it (``setting_data``).
    """
    built = setting_data(samples, setting)
    if build and "response_ids_round_trip" in build:
        built.report["response_ids_round_trip"] = build["response_ids_round_trip"]
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, records in (("demonstrations", built.demonstrations), ("preferences", built.preferences),
                          ("eval_preferences", built.eval_preferences)):
        files[name] = folder / f"{name}.jsonl" if records else None
        if records:
            write_jsonl(records, files[name])
    (folder / "report.json").write_text(json.dumps(built.report, indent=2), encoding="utf-8")
    return SettingData(built.report, **files)


class Evaluator:
    """Scores policies on the evaluation prompts against pi_SFT's answers to them (one set per seed).

    Every scored answer is kept in ``generations[(name, seed)]`` as ``{"prompt", "response",
    "gold_reward", "judge"}`` rows, for the sample files the run writes. pi_SFT and each
    policy sample and score on ``model.device`` (``self.device``).
    """

    def __init__(self, config: ImdbConfig, pi_sft: Path, prompts: list[str], gold: GoldScorer, judge: Judge):
        self.config, self.prompts, self.gold, self.judge = config, prompts, gold, judge
        self.device = config.model.torch_device()
        log.info("evaluation sampling and KL on %s", self.device)
        self.sft_model, self.tokenizer = load_causal_lm(pi_sft, config.model.dtype, device=self.device)
        self.sft_model.eval()
        self.baselines = {
            seed: answer(config, self.sft_model, self.tokenizer, prompts, seed, f"pi_SFT answers eval prompts (seed {seed})")
            for seed in config.seeds
        }
        self.baseline_gold = {seed: gold.score(answers.texts()) for seed, answers in self.baselines.items()}
        self.generations: dict[tuple[str, int], list[dict]] = {}

    def score(self, name: str, model, answers: Generations, seed: int) -> dict[str, float]:
        """Gold reward, judge score, KL to pi_SFT (from ``answers``, samples of ``model``) and win rate."""
        kl = kl_to_reference(
            model, self.sft_model, answers.sequences, self.tokenizer.pad_token_id, self.config.generation.batch_size
        )
        texts = answers.texts()
        gold, judged = self.gold.score(texts), self.judge.score(texts)
        self.generations[(name, seed)] = [
            {"prompt": p, "response": r, "gold_reward": float(g), "judge": float(j)}
            for p, r, g, j in zip(answers.prompts, answers.responses, gold, judged)
        ]
        return generation_metrics(gold, judged, self.baseline_gold[seed], kl)

    def baseline_runs(self) -> list[dict[str, float]]:
        """pi_SFT's own row: its KL is 0 and its win rate against itself 1/2 by construction."""
        return [{"seed": s, **self.score(BASELINE, self.sft_model, self.baselines[s], s)} for s in self.config.seeds]

    def policy_run(self, name: str, policy_dir: Path, seed: int) -> dict[str, float]:
        """The saved policy's metrics with its answers drawn from ``seed``."""
        model, _ = load_causal_lm(policy_dir, self.config.model.dtype, device=self.device)
        model.eval()
        answers = answer(self.config, model, self.tokenizer, self.prompts, seed, f"{name} seed {seed} answers eval prompts")
        return {"seed": seed, **self.score(name, model, answers, seed)}

    def write_generations(self, folder: Path, num_samples: int = 8) -> Path:
        """Every scored answer as ``<name>-seed-<s>.jsonl`` in ``folder``, and ``samples.md``: the
        first ``num_samples`` prompts with each policy's first-seed answer and its scores.
        The trained policies' answers are then dropped (pi_SFT's stay for the next setting)."""
        path = write_generations(folder, self.generations, self.config.seeds[0], self.prompts,
                                 f"gold reward / {self.judge.name} judge", ("gold_reward", "judge"), num_samples)
        self.generations = {key: rows for key, rows in self.generations.items() if key[0] == BASELINE}
        return path


def claim_output_dir(out: Path, config: ImdbConfig) -> None:
    """Write ``config.yaml`` into ``out`` after :func:`check_output_dir`."""
    check_output_dir(out, config)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")


def check_output_dir(out: Path, config: ImdbConfig) -> None:
    """Refuse (ConfigError) a directory ``out`` that holds a run with other settings.

    Finished stages are reused by path, so only the keys that add or select runs in their
    own folders (``RUN_SELECTION``: ``methods``, ``seeds``, ``variants``, ``grid``,
    ``setting_variants``, ``run_settings``; a reused run is checked against its variant, ``units.reuse_check``),
    ``model.device`` (where the rest is sampled) and the keys of the training and SFT loops that
    do not change a run's steps (output folder, resumption, progress bar) may change between
    runs into one directory, and so may a setting that the directory's config lacks (added to
    the code since) when it is at its default. ``settings`` are compared by name: each setting's
    data comes from its own entry, so entries may be added or left out (a preset that gained a
    setting continues its folders), but one that both configs name must be the same.
    """
    saved = out / "config.yaml"
    if saved.is_file():
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
        new, defaults = to_dict(config), to_dict(ImdbConfig())
        named = [{s["name"]: s for s in c.get("settings") or []} for c in (old, new)]
        both = [name for name in named[1] if name in named[0]]
        old, new = ({**c, "settings": {name: entries[name] for name in both}} for c, entries in zip((old, new), named))
        defaults["settings"] = {name: asdict(BuildConfig()) for name in both}  # an entry's keys added since
        loop_free = ("output_dir", "resume_from", "progress")
        may_change = (*RUN_SELECTION, "model.device", *(f"{loop}.{key}" for loop in ("loop", "sft.loop") for key in loop_free))
        changed = run_folder.differences(old, new, may_change, defaults=defaults)
        if changed:
            raise ConfigError(f"{out} holds a run made with other settings ({'; '.join(changed[:6])}): "
                              "choose another output directory")


def run(config: ImdbConfig, output_dir: str | Path) -> dict:
    """The whole experiment (see the module docstring); returns the results dict and writes the outputs."""
    out = Path(output_dir)
    claim_output_dir(out, config)
    if config.threads is not None:
        set_torch_threads(config.threads)
    reviews = data.load_reviews()
    split = data.load_or_make_split(out / "split.json", reviews, config.split, config.prompts)
    gold = load_gold(reviews, config.gold)
    judge, judge_report = make_judge(config.judge, reviews, config.minilm)
    checkpoints = run_sft(config, reviews, split, out)
    pi_sft = checkpoints[-1]
    samples = sample_build(config, reviews, split, checkpoints, gold, out)
    # every setting's D and P first: a setting the build answers cannot fill fails before any training
    build = build_report(out)
    built = {
        setting.name: write_setting_data(samples, setting, out / "settings" / setting.name, build)
        for setting in config.settings_to_run()
    }
    gen = config.generation
    rl_indices, validation = data.prompt_subsets(reviews, split, gen.num_validation_prompts, gen.num_train_prompts)
    rl_prompts = write_rl_prompts(config, reviews, split, rl_indices, out / "train_prompts.jsonl")
    evaluator = Evaluator(config, pi_sft, evaluation_prompts(config, reviews, split, validation), gold, judge)
    baseline_runs = evaluator.baseline_runs()
    key = unit_key(config, evaluator.prompts, weights_sha256(pi_sft))
    results: dict = {
        "config": asdict(config),
        "versions": provenance(),
        "gold_heldout_accuracy": gold.heldout_accuracy,
        "judge": {"name": judge.name, **judge_report},
        "data": {},
        "settings": {},
    }
    for setting in config.settings_to_run():
        data_files = built[setting.name]
        report, demos, prefs = data_files.report, data_files.demonstrations, data_files.preferences
        methods = {BASELINE: summarised({"runs": baseline_runs})}
        results["data"][setting.name] = report
        results["settings"][setting.name] = methods
        if config.unvaried_methods(setting.name):
            log.warning("%s: no variant of %s in setting_variants: not run in this setting",
                        setting.name, ", ".join(config.unvaried_methods(setting.name)))
        for spec in config.setting_runs(setting.name):
            runs = []
            for seed in config.seeds:
                run_dir = out / "runs" / setting.name / spec.name / f"seed-{seed}"
                row = finished_unit(evaluator, spec, run_dir, seed, key)
                if row is None:
                    policy = train_stage(
                        config, spec, str(pi_sft), run_dir, seed, demos, prefs, prompts=rl_prompts,
                        eval_prefs=data_files.eval_preferences,
                    )
                    row = evaluate_run(config, evaluator, spec, run_dir, policy, seed, pi_sft, data_files, key)
                runs.append(row)
            methods[spec.name] = summarised({"runs": runs, "spec": config.spec_overrides(spec)})
            write_results(config, results, out)  # after each method: a long run shows what it has so far
        evaluator.write_generations(out / "generations" / setting.name)
        write_results(config, results, out)
    return results


def write_results(config: ImdbConfig, results: dict, out: Path) -> None:
    """The results files (``plots.write_outputs``); for a grid on the validation prompts, each
    method's best validation gold reward within KL budgets (``tuning.write_kl_budgets``:
    kl_budgets.md, kl_frontier.png); with two or more of a ratio sweep's settings run, the
    sweep's gold reward and KL against the demonstrations' share (``plots.plot_ratio_sweep``:
    ratio_sweep.png)."""
    write_outputs(results, out)
    if config.generation.evaluate_on == "validation" and config.grid:
        tuning.write_kl_budgets(tuning.grid_points(results), out)
    sweep = [(s.name, s.num_demonstrations, s.num_preferences)
             for s in (config.ratio_sweep.settings() if config.ratio_sweep else []) if s.name in results["settings"]]
    if len(sweep) >= 2:
        plot_ratio_sweep(results, sweep, out / "ratio_sweep.png")


def run_from_cli(preset: str, output_dir: str, overrides: list[str]) -> int:
    """``aihf experiment imdb --preset NAME [key=value ...]``; returns the exit status."""
    logs.setup(logging.INFO)
    try:
        config = load_preset(preset, overrides)
        results = run(config, output_dir)
    except (ConfigError, DataError, FileNotFoundError, ImportError) as err:
        print(f"aihf: {err}", file=sys.stderr)
        return 2
    print(f"IMDb ({preset}): results in {output_dir}/results.md")
    print(f"gold reward held-out accuracy {results['gold_heldout_accuracy']:.3f}")
    return 0
