"""The IMDb experiment's settings as one dataclass, and its named YAML presets.

A preset is a name, ``configs/imdb/<name>.yaml`` as shipped in the package (``aihf.shipped``:
the repository's ``configs/`` is package data, so a wheel has it too), or a path to a YAML
file; it overrides :class:`ImdbConfig`'s defaults, and command-line ``dotted.key=value`` overrides
come last (``aihf.config.load_config``).

Runs: every entry of ``methods`` is a method (a recipe name) or a named ``variant``
(``{recipe, method: {...}, loop: {...}}``: a recipe with its own overrides of the
``method`` and ``loop`` sections, e.g. AIHF's Algorithm 1 with ``schedule: rounds``, or the
values a tuning run chose). ``grid`` expands an entry into one run per combination of the
listed values (``{"dpo": {"loop.learning_rate": [1e-4, 3e-4]}}`` -> runs
``dpo@learning_rate=0.0001`` and ``dpo@learning_rate=0.0003``), for tuning on the
validation prompts (``generation.evaluate_on: validation``). :meth:`ImdbConfig.runs` lists
them as :class:`RunSpec`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aihf import shipped
from aihf.config import ConfigError, load_config
from aihf.data.builders import BuildConfig, RatioSweep
from aihf.eval.gold import GoldConfig
from aihf.eval.judge import MiniLMJudgeConfig
from aihf.lm.scratch import SCRATCH, ScratchModelConfig
from aihf.experiments.imdb.data import PromptConfig, SplitConfig
from aihf.experiments.runs import RunSpec, check_methods, expand_runs, spec_overrides
from aihf.lm.methods import MethodConfig
from aihf.lm.trainer import LoopConfig

PRESET_GROUP = "imdb"  # configs/imdb/ of the installed package
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
PAPER_METHODS = ["rlhf", "dpo", "ipo", "spin", "aihf-dpo", "self-play-aihf", "aihf"]


@dataclass
class ModelSection:
    """The base model SFT starts from, and the token limits of every stage.

    ``name_or_path`` is anything ``aihf.lm.models.load_causal_lm`` loads, or ``"scratch"``:
    a small GPT-NeoX with the ``scratch`` sizes, built on the SFT split (``aihf.lm.scratch``).

    ``device`` is where the pipeline's own sampling (build answers, evaluation answers) and
    KL log-probs run: ``"auto"`` (CUDA when ``torch.cuda.is_available()``, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Training goes through accelerate, which picks
    the device itself (CUDA when present; ``CUDA_VISIBLE_DEVICES=`` keeps it on the CPU).
    Samples drawn on a GPU differ from the CPU's (other random streams), not in distribution.
    """

    name_or_path: str = "smollm2-135m"
    dtype: str = "float32"
    device: str = "auto"
    scratch: ScratchModelConfig = field(default_factory=ScratchModelConfig)
    max_length: int = 96
    max_prompt_length: int = 24

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"model.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def torch_device(self) -> str:
        """``device`` with ``"auto"`` resolved; ConfigError if it names CUDA and none is available."""
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ConfigError(f"model.device is {self.device!r} but torch sees no CUDA device (use auto or cpu)")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise ConfigError(f"model.device is {self.device!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
        return self.device


@dataclass
class SftSection:
    """SFT on the SFT split: one stage per checkpoint, each continuing from the previous one.

    Every checkpoint answers the build prompts (docs/method.md section 6); the last is pi_SFT,
    the start and the reference of every method. No stage (``stage_steps: []``) takes the
    base model, SFT-ed already, as pi_SFT as it is, and it alone answers the build prompts.
    """

    stage_steps: list[int] = field(default_factory=lambda: [300, 300])
    num_reviews: int | None = None  # None: the whole SFT split
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(micro_batch_size=8, learning_rate=5e-5))

    def __post_init__(self) -> None:
        if self.stage_steps and min(self.stage_steps) < 1:
            raise ValueError(f"stage_steps must be positive step counts, got {self.stage_steps}")


@dataclass
class GenerationSection:
    """How many prompts are answered, and how long the answers are (temperature 1 throughout).

    The split's training prompts are cut into validation prompts (the last
    ``num_validation_prompts``) and the RL prompts of the methods that sample (the first
    ``num_train_prompts`` of the rest). Runs that choose settings (learning rates, beta)
    evaluate on the validation prompts (``evaluate_on: validation``); reported results on
    the held-out test prompts, which no choice has seen.
    """

    # None: the whole build split. 3300: a 1k-demonstration pool of 2,000 prompts (demo_pool_factor 2) and
    # 1k preferences from the 1,300 prompts left, with room for prompts without two distinct answers
    num_build_prompts: int | None = 3300
    num_eval_prompts: int | None = None  # None: every evaluation prompt of the split
    num_train_prompts: int | None = None  # RL prompts of rlhf/aihf; None: every training prompt left
    num_validation_prompts: int = 200  # taken from the training prompts, never trained on
    evaluate_on: Literal["test", "validation"] = "test"  # "validation" for tuning runs
    max_new_tokens: int = 48
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.num_validation_prompts < 1:
            raise ValueError(f"num_validation_prompts must be >= 1, got {self.num_validation_prompts}")


@dataclass
class ImdbConfig:
    """Everything one IMDb run reads: data, gold reward, SFT, the settings, the methods and seeds."""

    split: SplitConfig = field(default_factory=SplitConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    judge: Literal["vader", "minilm"] = "vader"
    minilm: MiniLMJudgeConfig = field(default_factory=MiniLMJudgeConfig)
    settings: list[BuildConfig] = field(default_factory=lambda: [BuildConfig()])
    ratio_sweep: RatioSweep | None = None
    model: ModelSection = field(default_factory=ModelSection)
    sft: SftSection = field(default_factory=SftSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    methods: list[str] = field(default_factory=lambda: list(PAPER_METHODS))
    variants: dict[str, dict] = field(default_factory=dict)  # name -> {recipe, method: {...}, loop: {...}}
    grid: dict[str, dict] = field(default_factory=dict)  # methods entry -> {"method.KEY" | "loop.KEY": [values]}
    setting_variants: dict[str, dict] = field(default_factory=dict)  # setting -> its own variants, of which `methods` selects
    method: MethodConfig = field(default_factory=lambda: MethodConfig(steps_per_round=100, max_new_tokens=48))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(max_steps=300, micro_batch_size=8))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    threads: int | None = None  # torch threads (None: the machine's cores); OMP_NUM_THREADS overrides it
    # the names of the settings to run, in order (None: every one): a preset's settings one per
    # process (`run_settings=[balanced]`), each into its own output folder or one after another into one
    run_settings: list[str] | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")
        names = [s.name for s in self.all_settings()]
        if len(set(names)) != len(names):
            raise ValueError(f"setting names must be unique, got {names}")
        if not names:
            raise ValueError("no settings: give `settings` or `ratio_sweep`")
        # a methods entry names a recipe, a variant, or some setting's own variant (a tuned preset's)
        check_methods(self.methods, {**self.variants, **{name: variant for variants in self.setting_variants.values()
                                                         for name, variant in variants.items()}})
        if not self.seeds:
            raise ValueError("seeds is empty")
        if not self.sft.stage_steps and self.model.name_or_path == SCRATCH:
            raise ValueError("sft.stage_steps is [], so the base model is pi_SFT as it is, but model.name_or_path: "
                             "scratch is an untrained model the run builds: give it SFT stages or name a model SFT-ed "
                             "already")
        unknown_settings = sorted(set(self.setting_variants) - set(names))
        if unknown_settings:
            raise ValueError(f"setting_variants names no setting: {unknown_settings} (settings: {names})")
        if self.run_settings is not None:
            unknown_runs = [name for name in self.run_settings if name not in names]
            if unknown_runs or not self.run_settings or len(set(self.run_settings)) != len(self.run_settings):
                raise ValueError(f"run_settings must name distinct settings of the config, got {self.run_settings} "
                                 f"(settings: {names})")
        # the settings to run resolve their runs; one that is not run need not (a tuned preset's untuned ratio)
        for setting in self.settings_to_run():
            try:
                self.setting_runs(setting.name)
            except ConfigError as err:
                hint = ""
                if self.setting_variants and setting.name not in self.setting_variants:
                    hint = (f" (setting {setting.name!r} has no setting_variants of its own, so it runs methods with "
                            f"the shared variants; a tuned preset runs only the settings it chose values for: "
                            f"{', '.join(self.setting_variants)})")
                raise ValueError(f"{err}{hint}") from err

    def setting_runs(self, setting: str) -> list[RunSpec]:
        """The runs of one setting: its own ``setting_variants`` (e.g. values chosen on the
        validation prompts for it, ``tuning.tuned_preset``) that ``methods`` names, in the
        order of ``methods`` (:meth:`unvaried_methods` lists the names it has no variant for),
        or else :meth:`runs`."""
        if setting in self.setting_variants:
            variants = self.setting_variants[setting]
            return self.with_variants({name: variants[name] for name in self.methods if name in variants}).runs()
        return self.runs()

    def unvaried_methods(self, setting: str) -> list[str]:
        """``methods`` entries that a setting with ``setting_variants`` has no variant for (not run there)."""
        variants = self.setting_variants.get(setting)
        return [] if variants is None else [name for name in self.methods if name not in variants]

    def spec_overrides(self, spec: RunSpec) -> dict[str, Any]:
        """``spec`` as a variant of this config: its recipe and the method / loop fields it changes."""
        return spec_overrides(spec, self.method, self.loop)

    def runs(self) -> list[RunSpec]:
        """Every entry of ``methods`` as a :class:`RunSpec`, grid entries expanded (in order;
        ``aihf.experiments.runs.expand_runs``)."""
        return expand_runs(self.methods, self.variants, self.grid, self.method, self.loop)

    def with_variants(self, variants: dict[str, dict]) -> "ImdbConfig":
        """A copy whose ``methods`` are ``variants``' names, run with those variants and no grid."""
        out = copy.deepcopy(self)
        out.variants, out.grid, out.methods = copy.deepcopy(variants), {}, list(variants)
        out.setting_variants = {}
        out.__post_init__()
        return out

    def all_settings(self) -> list[BuildConfig]:
        """``settings`` followed by the ratio sweep's settings (if any)."""
        return [*self.settings, *(self.ratio_sweep.settings() if self.ratio_sweep else [])]

    def settings_to_run(self) -> list[BuildConfig]:
        """The settings this run trains and evaluates: ``run_settings`` in its order, or all."""
        if self.run_settings is None:
            return self.all_settings()
        by_name = {setting.name: setting for setting in self.all_settings()}
        return [by_name[name] for name in self.run_settings]


def preset_names() -> list[str]:
    """Names of the shipped presets (``configs/imdb/``)."""
    return shipped.config_names(PRESET_GROUP)


def preset_path(preset: str) -> Path:
    """The shipped ``configs/imdb/<preset>.yaml``, or ``preset`` itself when it is a path to a
    YAML file (``.yaml`` / ``.yml``; relative to the working directory)."""
    if shipped.is_path(preset):
        return Path(preset)
    path = shipped.config_file(PRESET_GROUP, preset)
    if path is None:
        raise ConfigError(f"unknown IMDb preset {preset!r}; known presets: {', '.join(preset_names()) or 'none'}")
    return path


def load_preset(preset: str, overrides: list[str] | None = None) -> ImdbConfig:
    """The config of a named preset (or YAML path) with command-line overrides applied."""
    return load_config(ImdbConfig, preset_path(preset), overrides)
