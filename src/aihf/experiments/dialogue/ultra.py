"""UltraFeedback + UltraChat at 7B end to end (docs/method.md section 6), ``aihf experiment ultra``.

    accelerate launch --config_file configs/accelerate/deepspeed-zero3.yaml -m aihf.cli \\
        experiment ultra --preset mistral-7b

1. P: HuggingFaceH4/ultrafeedback_binarized ``train_prefs`` (61.1k pairs; chosen/rejected
   message lists, the shared messages the prompt), D: HuggingFaceH4/ultrachat_200k
   ``train_sft`` (208k conversations; the last assistant turn the response), held-out
   pairs and prompts: ``test_prefs`` (``data.*`` take local copies; the ``fixture`` preset
   generates small files in these row formats, :mod:`.fixtures`); ``data.num_*`` keep a
   seeded random subset;
2. the base (HuggingFaceH4/mistral-7b-sft-beta, already SFT-ed on UltraChat) is the start,
   reference and baseline of every run; ``sft.epochs`` > 0 SFTs it on D first (the fixture
   does, so that its scratch model stands in for an SFT-ed base);
3. per seed, every run of ``methods`` from the base (ZeRO-3 trains one model per stage:
   AIHF's Algorithm 1, which trains a policy and a reward model together, needs ddp.yaml);
4. evaluation: held-out preference accuracy of each run's reward (the implicit reward
   beta log(pi / pi_base), or RLHF's reward model) on ``evaluation.num_preferences`` test
   pairs; on the first ``evaluation.num_prompts`` distinct test prompts the judge's reward
   (``judge``, a reward model no method trains on), KL to the base and the win rate against
   the base's answers (tuning runs: on the prompts of ``evaluation.num_validation`` rows of P
   held out of training, ``evaluation.on: validation``);
5. ``results.json``, ``results.md``, figures, ``generations/<setting>/samples.md``.

Benchmarks are the user's tools, run on a saved policy (docs/ultra.md has the commands):
lm-evaluation-harness, AlpacaEval, MT-Bench.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from aihf.config import ConfigError, Settings, load_config, setting
from aihf.data import read_demonstrations, read_preferences, write_jsonl
from aihf.experiments.dialogue import stages
from aihf.experiments.dialogue.dryrun import Stage, dry_run_text, run_stages
from aihf.experiments.dialogue.estimate import HardwareSection
from aihf.experiments.dialogue.fixtures import FixtureSection, fixture_paths, write_fixture
from aihf.experiments.dialogue.hub import Need, resolve
from aihf.experiments.dialogue.judge import JudgeSection
from aihf.experiments.dialogue.presets import load_group_preset
from aihf.experiments.runs import RunSelection
from aihf.lm.methods import MethodConfig
from aihf.lm.trainer import LoopConfig
from aihf.runtime import provenance

log = logging.getLogger(__name__)
BASELINE = "base"
SETTING = "ultra"
UF, UC = "HuggingFaceH4/ultrafeedback_binarized", "HuggingFaceH4/ultrachat_200k"
# the hub's split sizes, for the dry run
HUB_ROWS = {(UF, "train_prefs"): 61_135, (UF, "test_prefs"): 2_000, (UC, "train_sft"): 207_865, (UC, "test_sft"): 23_110}
ZERO3_METHODS = ["rlhf", "dpo", "ipo", "spin", "aihf-dpo", "self-play-aihf"]


@dataclass
class UltraData(Settings):
    """Where P, D and the held-out pairs come from (hub dataset and split, or a local file in
    the hub's row format), how many of each kind are kept, and the fixture."""

    preferences: str = setting(UF, help="hub dataset or local file of the training preferences")
    preferences_split: str = setting("train_prefs", help="its hub split")
    demonstrations: str = setting(UC, help="hub dataset or local file of the demonstrations")
    demonstrations_split: str = setting("train_sft", help="its hub split")
    test: str = setting(UF, help="hub dataset or local file of the held-out pairs (and prompts)")
    test_split: str = setting("test_prefs", help="its hub split")
    num_preferences: int | None = setting(None, ge=1, help="a seeded random subset of P; None: all")
    num_demonstrations: int | None = setting(None, ge=1, help="a seeded random subset of D; None: all")
    on_error: Literal["raise", "skip"] = setting("skip", help="a malformed row stops the run, or is skipped and counted")
    seed: int = setting(0, ge=0, help="seed of the subsets")
    fixture: FixtureSection | None = setting(None, help="generate small files in the hub formats instead (offline)")


@dataclass
class UltraSft(Settings):
    """Optional SFT of the base on D before every run (0 epochs: none, the base is SFT-ed)."""

    epochs: float = setting(0.0, ge=0, help="epochs over D; 0: the base is used as it is")
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(micro_batch_size=1, learning_rate=2e-5))


@dataclass
class UltraConfig(RunSelection):
    """Everything one UltraFeedback run reads; the defaults are ``configs/ultra/mistral-7b.yaml``'s."""

    data: UltraData = field(default_factory=UltraData)
    model: stages.ModelSection = field(
        default_factory=lambda: stages.ModelSection(name_or_path="HuggingFaceH4/mistral-7b-sft-beta"))
    sft: UltraSft = field(default_factory=UltraSft)
    judge: JudgeSection = field(default_factory=JudgeSection)
    evaluation: stages.EvalSection = field(
        default_factory=lambda: stages.EvalSection(num_preferences=2000, max_new_tokens=256))
    hardware: HardwareSection = field(default_factory=lambda: HardwareSection(
        zero3=True, accelerate_config="configs/accelerate/deepspeed-zero3.yaml"))
    methods: list[str] = field(default_factory=lambda: list(ZERO3_METHODS))
    method: MethodConfig = field(default_factory=lambda: MethodConfig(max_new_tokens=256, steps_per_round=1000))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(
        max_steps=3800, micro_batch_size=1, gradient_accumulation_steps=2, learning_rate=5e-7, lr_scheduler="cosine",
        warmup_steps=100, mixed_precision="bf16", save_every=500))

    def __post_init__(self) -> None:
        super().__post_init__()
        stages.check_sft_epochs(self.model, self.sft.epochs)


def load_preset(preset: str, overrides: list[str] | None = None) -> UltraConfig:
    """A shipped ``configs/ultra/<preset>.yaml`` (or a YAML path) with command-line overrides."""
    return load_config(UltraConfig, load_group_preset("ultra", preset), overrides)


def needs(config: UltraConfig) -> list[Need]:
    """The inputs a run reads (three data splits, base model, judge) as hub needs."""
    data = config.data
    out = [] if data.fixture else [
        Need("data.preferences", "dataset", data.preferences, data.preferences_split),
        Need("data.demonstrations", "dataset", data.demonstrations, data.demonstrations_split),
        Need("data.test", "dataset", data.test, data.test_split),
    ]
    out.append(Need("model.name_or_path", "model", config.model.name_or_path))
    if config.judge.kind == "sequence-classifier":
        out.append(Need("judge.name_or_path", "model", config.judge.name_or_path))
    return out


def subset(records: list, count: int | None, seed: int) -> list:
    """A seeded random ``count`` of ``records`` in their order (all when None or more)."""
    if count is None or count >= len(records):
        return records
    keep = sorted(random.Random(seed).sample(range(len(records)), count))
    return [records[i] for i in keep]


def read_data(config: UltraConfig, out: Path) -> tuple[list, list, list]:
    """(D, P, held-out pairs): the fixture's generated files, local copies or hub splits."""
    data = config.data
    if data.fixture is not None:
        stages.on_main(lambda: write_fixture(data.fixture, "ultra", out / "data"))
        files = fixture_paths("ultra", out / "data")
        sources = {"data.preferences": files["train_prefs"], "data.demonstrations": files["train_sft"],
                   "data.test": files["test_prefs"]}
    else:
        sources = resolve(needs(config))
    demos = read_demonstrations(sources["data.demonstrations"], on_error=data.on_error)
    prefs = read_preferences(sources["data.preferences"], on_error=data.on_error)
    test = read_preferences(sources["data.test"], on_error=data.on_error)
    for records in (demos, prefs, test):
        log.info("%s", records.report.summary())
    return (subset(list(demos), data.num_demonstrations, data.seed), subset(list(prefs), data.num_preferences, data.seed),
            list(test))


def run(config: UltraConfig, output_dir: str | Path) -> dict:
    """The whole experiment (module docstring); returns the results dict (main process) and writes the outputs."""
    out = Path(output_dir)
    processes = stages.process_state().num_processes
    stages.on_main(lambda: stages.claim_output_dir(out, config, UltraConfig()))
    demos, prefs, test = read_data(config, out)
    prefs, validation = stages.hold_out(prefs, config.evaluation.num_validation, config.data.seed, stages.prompt_key)
    eval_file = out / "eval_preferences.jsonl" if config.evaluation.num_preferences else None
    folder = out / "settings" / SETTING
    files = stages.setting_files(folder, eval_file)

    def write() -> None:
        if eval_file is not None:
            write_jsonl(test[: config.evaluation.num_preferences], eval_file)
        stages.write_setting_files(files, demos, prefs, {})

    stages.on_main(write)
    texts = (" ".join(m["content"] for m in d.conversation(d.response)) for d in demos)
    start = Path(stages.base_model(config.model, texts, out))
    if config.sft.epochs > 0:
        spec = stages.sft_run("sft", len(demos), config.sft.epochs, config.method, config.sft.loop, processes)
        start = stages.train_stage(config, spec, str(start), out / "sft", config.sft.loop.seed, files.demonstrations, None)
    evaluator, key = stages.main_evaluator(config, start, BASELINE, test, validation, [*demos, *prefs])
    results: dict = {"config": asdict(config), "versions": provenance(), "data": {}, "settings": {}}
    if evaluator:
        results["judge"] = {"name": evaluator.judge.name}
        results["data"][SETTING] = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    entries = results["settings"][SETTING] = {BASELINE: stages.summarised({"runs": evaluator.baseline_runs()})} if evaluator else {}
    stages.train_and_evaluate(config, SETTING, config.runs(), start, files, evaluator, key, out, entries)
    stages.save_results(results, out)
    return results


# ------------------------------------------------------------------------------- dry run


def split_rows(config: UltraConfig, key: Literal["preferences", "demonstrations", "test"]) -> int:
    """Rows of one input without the hub: the fixture's size, a local file's count, or the hub's published size."""
    data = config.data
    if data.fixture is not None:
        return data.fixture.test_rows if key == "test" else data.fixture.train_rows
    name, split = getattr(data, key), getattr(data, f"{key}_split")
    if Path(name).is_file():
        read = read_demonstrations if key == "demonstrations" else read_preferences
        return len(read(name, on_error=data.on_error))
    if (name, split) not in HUB_ROWS:
        raise ConfigError(f"data.{key}: the size of {name} ({split}) is not known offline; give a local file")
    return HUB_ROWS[(name, split)]


def dry_run(config: UltraConfig, preset: str, output_dir: str, overrides: list[str]) -> str:
    """The dry run's report and the accelerate config's check (ZeRO-3 for the 7B preset)."""
    hardware, data = config.hardware, config.data
    prefs = min(split_rows(config, "preferences"), data.num_preferences or 10**12) - config.evaluation.num_validation
    demos = min(split_rows(config, "demonstrations"), data.num_demonstrations or 10**12)
    test = split_rows(config, "test")
    plan: list[Stage] = []
    if config.sft.epochs > 0:
        spec = stages.sft_run("sft", demos, config.sft.epochs, config.method, config.sft.loop, hardware.gpus)
        plan.append(Stage("sft", "sft", spec.loop.max_steps, config.method, spec.loop))
    for spec in config.runs():
        plan += run_stages(f"{SETTING}/{spec.name}", spec, max(demos, prefs), demos, len(config.seeds), hardware.gpus)
    sizes = {"P (UltraFeedback)": prefs, "D (UltraChat)": demos, "held-out pairs": min(test, config.evaluation.num_preferences)}
    policies = (1 + len(config.runs())) * len(config.seeds)
    return dry_run_text("UltraFeedback", "ultra", preset, output_dir, overrides, config, plan, sizes, policies, test)


def run_from_cli(preset: str, output_dir: str, overrides: list[str], dry: bool = False) -> int:
    """``aihf experiment ultra --preset NAME [--dry-run] [key=value ...]`` (``stages.run_from_cli``)."""
    return stages.run_from_cli("UltraFeedback", load_preset, run, dry_run, preset, output_dir, overrides, dry)
