"""``aihf train METHOD``: the config dataclasses and the entry point that wires a method
(``aihf.lm.methods``) to the loop (``aihf.lm.trainer``).

    aihf train dpo --config configs/lm/dpo-tiny.yaml loop.max_steps=200 method.beta=0.05

A config has four sections: ``model`` (what to load), ``data`` (files, lengths),
``method`` (beta, weights, sampling: ``MethodConfig``) and ``loop`` (optimisation,
checkpoints, logging: ``LoopConfig``). ``rlhf`` runs two stages through the same loop:
the ``reward`` method into ``output_dir/reward`` (unless ``model.reward_model`` names a
saved reward model), then the RLOO policy stage into ``output_dir/policy``. ``aihf`` with
``method.reward_init: preferences`` trains the same preference-only stage 0 first and
starts its reward from it (the AIHF authors' round 0).

``data.prompts`` is the RL prompt set (docs/method.md section 6): ``rlhf``'s policy stage and
``aihf`` sample their RLOO responses on it instead of on the preferences' /
demonstrations' prompts; the other methods (and ``rlhf``'s reward stage) ignore it.
"""

from __future__ import annotations

import copy
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aihf.config import ConfigError, load_config, save_config
from aihf.data import DataError, read_demonstrations, read_preferences, read_prompts
from aihf.lm.batching import Encoder
from aihf.lm.methods import RECIPES, ExplicitRewardMethod, ImplicitRewardMethod, MethodConfig
from aihf.lm.models import LoraSettings, RewardModel, is_saved_reward_model, load_causal_lm, load_reward_model, reference_model
from aihf.lm.trainer import LoopConfig, Trainer, TrainResult

log = logging.getLogger(__name__)

METHODS: dict[str, str] = {name: recipe.description for name, recipe in RECIPES.items()}


@dataclass
class ModelConfig:
    """The policy (and reward model) to start from."""

    name_or_path: str = "tiny"
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    lora: LoraSettings | None = None
    trust_remote_code: bool = False
    reward_model: str | None = None  # a RewardModel.save directory or a causal LM; None: the policy's body


@dataclass
class DataConfig:
    """Record files (JSONL, Parquet) and token limits.

    ``prompts``: the RL prompt set (rows with a ``prompt``; ``read_prompts``), where
    ``rlhf``'s policy stage and ``aihf`` draw their RLOO samples (docs/method.md section 6).
    Unset, they sample on the preferences' (``rlhf``) or demonstrations' (``aihf``) prompts.
    """

    demonstrations: str | None = None
    preferences: str | None = None
    prompts: str | None = None
    eval_demonstrations: str | None = None
    eval_preferences: str | None = None
    eval_prompts: str | None = None
    eval_fraction: float = 0.0  # held out of the training files when no eval file is given
    max_length: int = 512
    max_prompt_length: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class TrainConfig:
    """Everything ``aihf train`` reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    reward_stage_steps: int | None = None  # rlhf, aihf's stage 0: steps of the reward stage (None: loop.max_steps)


def _split(records: list, fraction: float, seed: int) -> tuple[list, list]:
    if not fraction or not records:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    cut = max(1, round(fraction * len(records)))
    return [records[i] for i in order[cut:]], [records[i] for i in order[:cut]]


def read_data(config: TrainConfig, name: str) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """({split: demonstrations}, {split: preferences}, {split: prompts}) for the data kinds
    ``name`` uses; a kind it does not use is ``{}`` (and a file given for it is ignored
    with a warning). With ``data.prompts``, ``rlhf`` reads no preferences (its policy stage
    samples on the prompts)."""
    recipe, data, seed = RECIPES[name], config.data, config.loop.seed
    if data.eval_prompts and not data.prompts:
        raise ConfigError("data.eval_prompts is set but data.prompts is not")
    prompt_set = bool(data.prompts) and recipe.uses_prompts
    used = recipe.kinds(prompt_set)
    kinds = (
        ("demonstrations", "demo" in used, data.demonstrations, data.eval_demonstrations, read_demonstrations),
        ("preferences", "pref" in used, data.preferences, data.eval_preferences, read_preferences),
        ("prompts", "prompt" in used, data.prompts, data.eval_prompts, read_prompts),
    )
    out: list[dict[str, list]] = []
    for kind, uses, train_path, eval_path, read in kinds:
        if not uses:
            for path in (train_path, eval_path):
                if path:
                    log.warning("method %s does not use %s: %s is ignored", name, kind, path)
            out.append({})
            continue
        if not train_path:
            raise ConfigError(f"method {name!r} needs data.{kind}")
        train = list(read(train_path))
        held = list(read(eval_path)) if eval_path else []
        if not eval_path:
            train, held = _split(train, data.eval_fraction, seed)
        out.append({"train": train, "eval": held})
    return out[0], out[1], out[2]


def build_method(name: str, config: TrainConfig, reward_model: RewardModel | None = None):
    """(method, tokenizer) ready for ``Trainer``: models loaded, records read and encoded."""
    if name not in RECIPES:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(RECIPES)}")
    recipe, mc = RECIPES[name], config.model
    demos, prefs, prompts = read_data(config, name)
    needs_policy = recipe.train_policy or recipe.demo_term == "irl"
    policy = tokenizer = None
    if needs_policy:
        policy, tokenizer = load_causal_lm(
            mc.name_or_path, mc.dtype, mc.gradient_checkpointing, mc.lora, mc.trust_remote_code
        )
    if recipe.reward == "implicit":
        encoder = Encoder(tokenizer, config.data.max_length, config.data.max_prompt_length)
        return ImplicitRewardMethod(name, config.method, tokenizer, encoder, policy, demos, prefs), tokenizer
    if reward_model is None:
        reward_model, reward_tokenizer = load_reward_model(
            mc.reward_model or mc.name_or_path, mc.dtype, mc.trust_remote_code, seed=config.loop.seed
        )
        if recipe.train_reward and config.method.reward_frozen_layers:
            frozen = reward_model.freeze_lower_layers(config.method.reward_frozen_layers)
            log.info("%s: the reward body's embeddings and lowest %d layers are frozen (%d parameters)",
                     name, config.method.reward_frozen_layers, frozen)
        if tokenizer is not None and tokenizer.get_vocab() != reward_tokenizer.get_vocab():
            raise ConfigError(
                f"model.reward_model {mc.reward_model!r} has another tokenizer than the policy "
                f"{mc.name_or_path!r}: the reward model scores the policy's tokens, so they must share one"
            )
        tokenizer = tokenizer or reward_tokenizer
    encoder = Encoder(tokenizer, config.data.max_length, config.data.max_prompt_length)
    method = ExplicitRewardMethod(
        name, config.method, tokenizer, encoder, demos, prefs, reward_model,
        policy=policy, reference=reference_model(policy) if recipe.train_policy else None, prompts=prompts,
    )
    return method, tokenizer


def _save_final(trainer: Trainer, tokenizer, directory: Path) -> None:
    """Trained models for later use: the policy as ``save_pretrained`` (safetensors), the
    reward model as ``RewardModel.save``; both with the tokenizer."""
    acc = trainer.accelerator
    states = {name: acc.get_state_dict(module) for name, module in trainer.method.models.items()}
    if not acc.is_main_process:
        return
    for name, module in trainer.method.models.items():
        model = acc.unwrap_model(module)
        if name == "reward":
            model.save(directory / "reward", tokenizer)
        else:
            model.save_pretrained(directory / name, state_dict=states[name], safe_serialization=True)
            tokenizer.save_pretrained(directory / name)


def _reward_stage(config: TrainConfig) -> Path:
    """Train the preference-only ``reward`` method into ``output_dir/reward`` (skipped when
    that stage has finished before) and return the saved reward model's directory. It reads
    no prompt set and runs ``reward_stage_steps`` steps (default ``loop.max_steps``)."""
    stage = copy.deepcopy(config)
    stage.data.prompts = stage.data.eval_prompts = None
    stage.loop.output_dir = str(Path(config.loop.output_dir) / "reward")
    stage.loop.max_steps = config.reward_stage_steps or config.loop.max_steps
    trained = Path(stage.loop.output_dir) / "final" / "reward"
    if is_saved_reward_model(trained):
        log.info("reusing the reward model of a finished reward stage, %s", trained)
    else:
        train("reward", stage, report_ignored=False)
    return trained


def train(name: str, config: TrainConfig, report_ignored: bool = True) -> TrainResult:
    """Run method ``name``; weights end up in ``loop.output_dir/final``.

    ``rlhf`` first trains ``reward`` into ``output_dir/reward`` (skipped when that stage has
    finished before, or when ``model.reward_model`` is a saved reward model), then its
    policy stage into ``output_dir/policy``. The reward stage reads no prompt set; with
    one, the policy stage reads no preferences. ``aihf`` with ``method.reward_init:
    preferences`` (and no ``model.reward_model``) trains the same stage 0 first and warm
    starts its reward from it. Settings the method does not read are logged as a warning.
    """
    if report_ignored and (ignored := RECIPES[name].ignored(config.method)):
        log.warning("method %s does not read method.%s: ignored", name, ", method.".join(ignored))
    given = bool(config.model.reward_model) and is_saved_reward_model(config.model.reward_model)
    if name == "rlhf" and not given:
        config = copy.deepcopy(config)
        config.model.reward_model = str(_reward_stage(config))
        if config.data.prompts:  # the preferences served the reward stage
            config.data.preferences = config.data.eval_preferences = None
        config.loop.output_dir = str(Path(config.loop.output_dir) / "policy")
    elif name == "aihf" and config.method.reward_init == "preferences" and not config.model.reward_model:
        config = copy.deepcopy(config)
        config.model.reward_model = str(_reward_stage(config))  # the joint run stays in output_dir
    method, tokenizer = build_method(name, config)
    trainer = Trainer(method, config.loop)
    if trainer.accelerator.is_main_process:
        Path(config.loop.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(config, Path(config.loop.output_dir) / "config.yaml")
    result = trainer.fit()
    _save_final(trainer, tokenizer, Path(config.loop.output_dir) / "final")
    return result


def train_from_cli(method: str, config_path: str | None, overrides: list[str]) -> int:
    """``aihf train METHOD --config FILE key=value ...``; returns the exit status."""
    if method not in METHODS:
        print(f"aihf: unknown method {method!r}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(TrainConfig, config_path, overrides)
        result = train(method, config)
    except (ConfigError, DataError, FileNotFoundError) as err:
        print(f"aihf: {err}", file=sys.stderr)
        return 2
    last = result.history[-1] if result.history else {}
    print(f"{method}: {len(result.history)} steps, final loss {last.get('loss', float('nan')):.4f}; "
          f"weights in {result.output_dir / 'final'}")
    return 0


__all__ = ["METHODS", "ModelConfig", "DataConfig", "TrainConfig", "build_method", "train", "train_from_cli"]
