"""Anthropic-HH with a Pythia policy end to end (docs/method.md section 6), ``aihf experiment hh``.

    aihf experiment hh --preset pythia-1b --output-dir outputs/hh-pythia-1b

1. the HH train and test splits (``data.train`` / ``data.test``: the hub's
   Anthropic/hh-rlhf or local copies; the ``fixture`` preset generates small files in the
   same row format, :mod:`.fixtures`), read as preferences: the prompt is the conversation
   up to the last shared ``"\\n\\nAssistant:"`` (``aihf.data.rows``);
2. pi_SFT: the base model SFT-ed on every chosen response of the train split for
   ``sft.epochs`` epochs (the paper: one), the start, reference and baseline of every run;
   ``sft.epochs: 0`` takes a base that is SFT-ed already as pi_SFT, as it is;
3. per setting (:class:`HHSetting`), D and P from the train split (:func:`split_setting`):
   D is ``num_demonstrations`` rows chosen by ``selection`` (``random``: a seeded random
   draw; ``top-reward``: the rows whose chosen response the ``selector`` reward model scores
   highest), their ``demo_response`` (chosen, or the rejected one for a low-quality
   setting); P is ``num_preferences`` of the rows left (all by default) in a seeded order,
   and their prompts are the RL prompts;
4. per setting and seed, ``demo-sft`` (pi_SFT SFT-ed on D alone for ``sft.demo_epochs``
   epochs: the paper's "demonstration-SFT" model) and every run of ``methods`` from pi_SFT;
5. evaluation on held-out test prompts (the first ``evaluation.num_prompts`` distinct prompts
   of the test split; tuning runs: of ``evaluation.num_validation`` train rows held out of
   every stage, ``evaluation.on: validation``): the judge's reward (a reward model no method trains on, ``judge``),
   KL to pi_SFT and the win rate against pi_SFT; each run's reward scored on the first
   ``evaluation.num_preferences`` test pairs;
6. ``results.json``, ``results.md``, figures and ``generations/<setting>/samples.md``.

Finished stages are reused, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal


from aihf.config import ConfigError, Settings, load_config, setting
from aihf.data import Demonstration, Preference, read_preferences, write_jsonl
from aihf.experiments.dialogue import stages
from aihf.experiments.dialogue.dryrun import Stage, dry_run_text, run_stages
from aihf.experiments.dialogue.estimate import HardwareSection
from aihf.experiments.dialogue.fixtures import FixtureSection, fixture_paths, write_fixture
from aihf.experiments.dialogue.hub import Need, resolve
from aihf.experiments.dialogue.judge import JudgeSection, make_judge, prompt_text
from aihf.experiments.dialogue.presets import load_group_preset
from aihf.experiments.runs import RunSelection, RunSpec
from aihf.lm.methods import MethodConfig
from aihf.lm.trainer import LoopConfig
from aihf.runtime import provenance

log = logging.getLogger(__name__)
PAPER_METHODS = ["rlhf", "dpo", "ipo", "spin", "aihf-dpo", "self-play-aihf", "aihf"]
BASELINE = "pi_sft"
DEMO_SFT = "demo-sft"


@dataclass
class HHData(Settings):
    """Where the HH splits come from: hub dataset names with their split, or local files in
    the hub's row format (``.jsonl[.gz]``, ``.parquet``); ``fixture``: generate them."""

    train: str = setting("Anthropic/hh-rlhf", help="hub dataset or local file of the train split")
    train_split: str = setting("train", help="the hub split read for training")
    test: str = setting("Anthropic/hh-rlhf", help="hub dataset or local file of the test split")
    test_split: str = setting("test", help="the hub split read for evaluation")
    on_error: Literal["raise", "skip"] = setting("raise", help="a malformed row stops the run, or is skipped and counted")
    seed: int = setting(0, ge=0, help="seed of the order in which rows become D and P")
    fixture: FixtureSection | None = setting(None, help="generate small files in the hub format instead (offline)")


@dataclass
class HHSetting(Settings):
    """One data regime: how many demonstrations and preferences, and which demonstrations."""

    name: str = setting("paper", help="folder and results name")
    num_demonstrations: int = setting(10000, ge=1, help="rows of the train split that become D")
    num_preferences: int | None = setting(None, ge=1, help="rows left that become P; None: all of them")
    selection: Literal["random", "top-reward"] = setting("random", help="which rows become D")
    demo_response: Literal["chosen", "rejected"] = setting("chosen", help="the response of a D row (rejected: low quality)")


@dataclass
class HHSft(Settings):
    """SFT on every chosen response (pi_SFT; 0 epochs: the base is pi_SFT) and on D alone (demo-SFT), in epochs."""

    epochs: float = setting(1.0, ge=0, help="epochs over the chosen responses of the train split; 0: the base is pi_SFT as it is")
    demo_epochs: float = setting(1.0, gt=0, help="epochs of demo-SFT over D")
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        micro_batch_size=8, gradient_accumulation_steps=2, learning_rate=1e-5, lr_scheduler="cosine", warmup_steps=50))


@dataclass
class HHConfig(RunSelection):
    """Everything one HH run reads; the defaults are the Pythia-1B run of ``configs/hh/pythia-1b.yaml``
    on 8 GPUs, which the data-regime presets (balanced, few-preferences, low-quality-demos) keep."""

    data: HHData = field(default_factory=lambda: HHData(on_error="skip"))
    settings: list[HHSetting] = field(default_factory=lambda: [HHSetting()])
    model: stages.ModelSection = field(default_factory=stages.ModelSection)
    sft: HHSft = field(default_factory=HHSft)
    selector: JudgeSection = field(default_factory=JudgeSection)
    judge: JudgeSection = field(default_factory=JudgeSection)
    evaluation: stages.EvalSection = field(default_factory=lambda: stages.EvalSection(batch_size=32))
    hardware: HardwareSection = field(default_factory=HardwareSection)
    methods: list[str] = field(default_factory=lambda: list(PAPER_METHODS))
    method: MethodConfig = field(default_factory=lambda: MethodConfig(max_new_tokens=128, steps_per_round=500))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_steps=2000, micro_batch_size=8, gradient_accumulation_steps=2, learning_rate=1e-6, reward_learning_rate=5e-6,
        lr_scheduler="cosine", warmup_steps=100, save_every=500))

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [s.name for s in self.settings]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"settings must have unique names, got {names}")
        stages.check_sft_epochs(self.model, self.sft.epochs)


def load_preset(preset: str, overrides: list[str] | None = None) -> HHConfig:
    """A shipped ``configs/hh/<preset>.yaml`` (or a YAML path) with command-line overrides."""
    return load_config(HHConfig, load_group_preset("hh", preset), overrides)


# ---------------------------------------------------------------------------------- data


def needs(config: HHConfig) -> list[Need]:
    """The inputs a run reads (data splits, base model, judge, selector) as hub needs."""
    out = [Need("model.name_or_path", "model", config.model.name_or_path)]
    if config.data.fixture is None:
        out = [Need("data.train", "dataset", config.data.train, config.data.train_split),
               Need("data.test", "dataset", config.data.test, config.data.test_split), *out]
    for key, judge in (("judge", config.judge), ("selector", config.selector)):
        used = key == "judge" or any(s.selection == "top-reward" for s in config.settings)
        if used and judge.kind == "sequence-classifier":
            out.append(Need(f"{key}.name_or_path", "model", judge.name_or_path))
    return out


def read_splits(config: HHConfig, out: Path) -> tuple[list[Preference], list[Preference]]:
    """(train, test) preferences: the fixture's generated files, local copies or hub splits."""
    if config.data.fixture is not None:
        stages.on_main(lambda: write_fixture(config.data.fixture, "hh", out / "data"))
        files = fixture_paths("hh", out / "data")
        sources = {"data.train": files["train"], "data.test": files["test"]}
    else:
        sources = resolve(needs(config))
    train = read_preferences(sources["data.train"], on_error=config.data.on_error)
    test = read_preferences(sources["data.test"], on_error=config.data.on_error)
    for name, records in (("train", train), ("test", test)):
        log.info("HH %s split: %s", name, records.report.summary())
    return list(train), list(test)


def selection_scores(config: HHConfig, train: list[Preference], out: Path) -> list[float]:
    """The ``selector``'s reward of every train row's chosen response, scored by the main
    process and cached in ``selection_scores.json`` (reused while it has one score per row)."""
    path = out / "selection_scores.json"

    def score() -> None:
        if path.is_file() and len(json.loads(path.read_text(encoding="utf-8"))) == len(train):
            return
        scorer = make_judge(config.selector, config.model.torch_device())
        path.write_text(json.dumps(scorer.score([prompt_text(p) for p in train], [p.chosen for p in train])),
                        encoding="utf-8")

    stages.on_main(score)
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class SplitRows:
    """Row indices of the train split: D's and P's."""

    demonstrations: list[int]
    preferences: list[int]


def split_setting(setting_: HHSetting, n: int, seed: int, scores: list[float] | None = None) -> SplitRows:
    """D and P rows of one setting among ``n`` train rows.

    One seeded permutation of the rows orders everything. D: the first
    ``num_demonstrations`` rows of it (``random``), or the rows with the highest ``scores``
    (``top-reward``; ties in permutation order). P: the first ``num_preferences`` of the rows
    left, in permutation order (all by default). D does not depend on P's size, so settings
    that differ only in P share D.
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    if setting_.num_demonstrations >= n:
        raise ConfigError(f"setting {setting_.name!r}: {setting_.num_demonstrations} demonstrations of {n} train rows "
                          "leave no preferences")
    if setting_.selection == "top-reward":
        if scores is None or len(scores) != n:
            raise ValueError("top-reward selection needs one score per train row")
        rank = {row: i for i, row in enumerate(order)}
        demos = sorted(order, key=lambda row: (-scores[row], rank[row]))[: setting_.num_demonstrations]
    else:
        demos = order[: setting_.num_demonstrations]
    chosen = set(demos)
    rest = [row for row in order if row not in chosen]
    return SplitRows(demos, rest[: setting_.num_preferences] if setting_.num_preferences else rest)


def write_setting(setting_: HHSetting, rows: SplitRows, train: list[Preference], files: stages.SettingFiles) -> None:
    """D (each row's ``demo_response``), P and the RL prompts of one setting (``files``)."""
    demos = [Demonstration(train[i].prompt, getattr(train[i], setting_.demo_response)) for i in rows.demonstrations]
    report = {"selection": setting_.selection, "demo_response": setting_.demo_response}
    stages.write_setting_files(files, demos, [train[i] for i in rows.preferences], report)


# ------------------------------------------------------------------------------ pipeline


def sft_spec(config: HHConfig, name: str, records: int, epochs: float, processes: int) -> RunSpec:
    """SFT with the SFT loop for ``epochs`` over ``records``."""
    return stages.sft_run(name, records, epochs, config.method, config.sft.loop, processes)


def write_first_files(sft_file: Path, sft_demos: list[Demonstration], eval_file: Path | None,
                      eval_prefs: list[Preference]) -> None:
    """The SFT stage's demonstrations and the held-out pairs, unless a run wrote them before."""
    if not sft_file.is_file():
        sft_file.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(sft_demos, sft_file)
    if eval_file is not None and not eval_file.is_file():
        write_jsonl(eval_prefs, eval_file)


def run(config: HHConfig, output_dir: str | Path) -> dict:
    """The whole experiment (module docstring); returns the results dict (main process) and writes the outputs."""
    out = Path(output_dir)
    processes = stages.process_state().num_processes
    stages.on_main(lambda: stages.claim_output_dir(out, config, HHConfig()))
    train, test = read_splits(config, out)
    train, validation = stages.hold_out(train, config.evaluation.num_validation, config.data.seed, stages.prompt_key)
    sft_demos = [Demonstration(p.prompt, p.chosen) for p in train]
    sft_file = out / "sft" / "demonstrations.jsonl"
    eval_file = out / "eval_preferences.jsonl" if config.evaluation.num_preferences else None
    stages.on_main(lambda: write_first_files(sft_file, sft_demos, eval_file, test[: config.evaluation.num_preferences]))
    scores = selection_scores(config, train, out) if any(s.selection == "top-reward" for s in config.settings) else None
    start = stages.base_model(config.model, (d.prompt + d.response for d in sft_demos), out)
    pi_sft = Path(start) if config.sft.epochs == 0 else stages.train_stage(
        config, sft_spec(config, "sft", len(sft_demos), config.sft.epochs, processes), start, out / "sft",
        config.sft.loop.seed, sft_file, None)
    files = {s.name: stages.setting_files(out / "settings" / s.name, eval_file) for s in config.settings}
    stages.on_main(lambda: [write_setting(s, split_setting(s, len(train), config.data.seed, scores), train, files[s.name])
                            for s in config.settings])
    evaluator, key = stages.main_evaluator(config, pi_sft, BASELINE, test, validation, train)
    results: dict = {"config": asdict(config), "versions": provenance(), "data": {}, "settings": {}}
    if evaluator:
        results["judge"] = {"name": evaluator.judge.name}
        baseline = stages.summarised({"runs": evaluator.baseline_runs()})
    for s in config.settings:
        report = json.loads((out / "settings" / s.name / "report.json").read_text(encoding="utf-8"))
        results["data"][s.name] = report
        entries = results["settings"][s.name] = {BASELINE: baseline} if evaluator else {}
        runs = [sft_spec(config, DEMO_SFT, report["demonstrations"], config.sft.demo_epochs, processes), *config.runs()]
        stages.train_and_evaluate(config, s.name, runs, pi_sft, files[s.name], evaluator, key, out, entries)
        stages.save_results(results, out)
    return results


# ------------------------------------------------------------------------------- dry run

HUB_ROWS = {("Anthropic/hh-rlhf", "train"): 160_800, ("Anthropic/hh-rlhf", "test"): 8_552}  # the hub's split sizes


def split_rows(config: HHConfig, which: Literal["train", "test"]) -> int:
    """Rows of a split without the hub: the fixture's size, a local file's count, or the hub's published size."""
    if config.data.fixture is not None:
        return getattr(config.data.fixture, f"{which}_rows")
    name, split = getattr(config.data, which), getattr(config.data, f"{which}_split")
    if Path(name).is_file():
        return len(read_preferences(name, on_error=config.data.on_error))
    if (name, split) not in HUB_ROWS:
        raise ConfigError(f"data.{which}: the size of {name} ({split}) is not known offline; give a local file")
    return HUB_ROWS[(name, split)]


def plan(config: HHConfig, train_rows: int, processes: int) -> list[Stage]:
    """Every training stage of a run, for the dry run's estimate."""
    seeds = len(config.seeds)
    stages_ = [Stage("sft", "sft", sft_spec(config, "sft", train_rows, config.sft.epochs, processes).loop.max_steps,
                     config.method, config.sft.loop)] if config.sft.epochs > 0 else []
    for s in config.settings:
        demos = s.num_demonstrations
        prefs = min(s.num_preferences or train_rows, train_rows - demos)
        demo_sft = sft_spec(config, DEMO_SFT, demos, config.sft.demo_epochs, processes)
        stages_.append(Stage(f"{s.name}/{DEMO_SFT}", "sft", demo_sft.loop.max_steps, config.method, demo_sft.loop, seeds))
        for spec in config.runs():
            stages_ += run_stages(f"{s.name}/{spec.name}", spec, max(demos, prefs), demos, seeds, processes)
    return stages_


def dry_run(config: HHConfig, preset: str, output_dir: str, overrides: list[str]) -> str:
    """The dry run's report (:func:`aihf.experiments.dialogue.dryrun.report`) and the accelerate config's check."""
    train_rows, test_rows = split_rows(config, "train") - config.evaluation.num_validation, split_rows(config, "test")
    stages_ = plan(config, train_rows, config.hardware.gpus)
    sizes = {"train pairs (SFT on every chosen)": train_rows, "test pairs": test_rows}
    for s in config.settings:
        sizes[f"{s.name}: D ({s.selection}, {s.demo_response})"] = s.num_demonstrations
        sizes[f"{s.name}: P"] = min(s.num_preferences or train_rows, train_rows - s.num_demonstrations)
    policies = (1 + len(config.settings) * (1 + len(config.runs()))) * len(config.seeds)
    return dry_run_text("HH", "hh", preset, output_dir, overrides, config, stages_, sizes, policies, test_rows)


def run_from_cli(preset: str, output_dir: str, overrides: list[str], dry: bool = False) -> int:
    """``aihf experiment hh --preset NAME [--dry-run] [key=value ...]`` (``stages.run_from_cli``)."""
    return stages.run_from_cli("HH", load_preset, run, dry_run, preset, output_dir, overrides, dry)
