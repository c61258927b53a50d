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

import contextlib
import copy
import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from aihf import logs, run_folder, runtime, shipped
from aihf.config import ConfigError, Settings, load_config, setting
from aihf.data import read_demonstrations, read_preferences, read_prompts, split_without_leaks
from aihf.lm.batching import Encoder
from aihf.lm.in_memory import Data, check_columns, with_stored_data, with_stored_model
from aihf.lm.methods import RECIPES, ExplicitRewardMethod, ImplicitRewardMethod, MethodConfig
from aihf.lm.model_card import model_card
from aihf.lm.models import (
    LoraSettings, RewardModel, aihf_cache_dir, check_chunked_logprobs, check_packing, compile_body,
    is_saved_reward_model, load_causal_lm, load_reward_model, reference_model,
)
from aihf.lm.trainer import LoopConfig, Trainer, TrainResult, latest_checkpoint

log = logging.getLogger(__name__)

METHODS: dict[str, str] = {name: recipe.description for name, recipe in RECIPES.items()}
CONFIG_GROUP = "lm"  # --config NAME: the shipped configs/lm/NAME.yaml


@dataclass
class ModelConfig(Settings):
    """The policy (and reward model) to start from."""

    name_or_path: str = setting("tiny", help="hub name or local folder (safetensors), smollm2-135m, or tiny")
    dtype: Literal["float32", "bfloat16", "float16"] = setting("float32", help="weights' dtype")
    gradient_checkpointing: bool = setting(False, help="recompute activations in the backward pass")
    padding_free: bool = setting(False, help="pack each batch's sequences into rows without padding (position ids "
                                 "restart per sequence; checked against the padded forward pass at the start)")
    logprob_chunk: int | None = setting(None, ge=1, help="score log-probs from the last hidden states, this many "
                                        "response tokens at a time, without the full-vocabulary logits (checked "
                                        "against the logits at the start); None: from the logits")
    lora: LoraSettings | None = setting(None, help="LoRA adapters (peft); None: full fine-tuning")
    compile: bool = setting(False, help="torch.compile the policy's transformer body (and its reference copy) "
                            "with dynamic shapes; the first batches pay for the compilation")
    compile_backend: str = setting("inductor", help="torch.compile backend of model.compile (inductor; eager or "
                                   "aot_eager only trace, to find graph breaks)")
    compile_scope: Literal["body", "blocks"] = setting(
        "body", help="model.compile: the whole body (faster steps) or each block alone (one compilation reused by "
        "every block: a start that does not grow with depth; models.compile_body)")
    attn_implementation: str | None = setting(
        None, help="transformers' attention kernel for the policy and the reward body: sdpa, eager, flex_attention, "
        "flash_attention_2 (its package installed)...; None: the model's default (sdpa). With padding_free, flash or "
        "flex attention skip the pairs of packed sequences that cannot see each other")
    trust_remote_code: bool = setting(False, help="run a hub model's own code (off: only transformers' classes)")
    disable_dropout: bool = setting(True, help="dropout off in the policy and reward models (their log-probs are "
                                    "compared with a reference's or a sampler's, computed without it); lora.dropout "
                                    "stays")
    reward_model: str | None = setting(
        None, help="a RewardModel.save folder or a causal LM to start the reward from; None: the policy's body"
    )


@dataclass
class DataConfig(Settings):
    """Record files (JSONL, Parquet) and token limits. Each file key also takes a dataset that
    ``datasets`` loads: a ``save_to_disk`` folder, a folder of data files or a hub dataset
    ``NAME[:SPLIT]`` (split ``train`` by default; ``NAME:CONFIG:SPLIT`` for a dataset of several
    configurations), whose rows ``train`` stores as a JSONL file
    named by their hash (``aihf.lm.in_memory``); the run's config then names that file.

    ``columns``: per data key, the data's own names for the columns aihf reads
    (``in_memory.KIND_COLUMNS``), e.g. ``{demonstrations: {prompt: question, response:
    answer}}``; an ``eval_`` key without an entry of its own takes its kind's. Those keys' files
    or datasets are read under those names and their records stored (as a dataset's are), and the
    run's config names the stored files with ``columns`` empty: the same records are the same run
    whatever their columns were called.

    ``prompts``: the RL prompt set (rows with a ``prompt``; ``read_prompts``), where
    ``rlhf``'s policy stage and ``aihf`` draw their RLOO samples (docs/method.md section 6).
    Unset, they sample on the preferences' (``rlhf``) or demonstrations' (``aihf``) prompts.
    """

    demonstrations: str | None = setting(None, help="demonstrations file (JSONL / Parquet: prompt, response)")
    preferences: str | None = setting(None, help="preferences file (prompt, chosen, rejected; or trl's implicit prompt)")
    prompts: str | None = setting(None, help="RL prompt set (rows with a prompt) for rlhf's policy stage and aihf")
    eval_demonstrations: str | None = setting(None, help="held-out demonstrations")
    eval_preferences: str | None = setting(None, help="held-out preferences")
    eval_prompts: str | None = setting(None, help="held-out RL prompts (needs data.prompts)")
    eval_fraction: float = setting(0.0, ge=0, lt=1, help="held out of the training files when no eval file is given")
    dedupe: bool = setting(True, help="drop exact duplicate records (counted in the log); False: keep them, "
                           "every copy on one side of the train/eval split")
    max_length: int = setting(512, ge=2, help="tokens of prompt + response")
    max_prompt_length: int = setting(256, ge=1, help="tokens of the prompt (kept from its end)")
    columns: dict[str, dict[str, str]] = setting(factory=dict, help="per data key, the data's own names of aihf's "
                                                 "columns, e.g. {demonstrations: {prompt: question, response: answer}}")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be < max_length ({self.max_length})")
        check_columns(self.columns)


@dataclass
class TrainConfig(Settings):
    """Everything ``aihf train`` reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    reward_stage_steps: int | None = setting(None, ge=1, help="rlhf, aihf's stage 0: steps of the reward stage; None: loop.max_steps")


def _data_kinds(config: TrainConfig, name: str) -> list[tuple[str, bool, str | None, str | None]]:
    """(kind, used by ``name``, training file, eval file) per data kind; a missing file that
    the method needs is a ConfigError (checked before any long work)."""
    recipe, data = RECIPES[name], config.data
    if data.eval_prompts and not data.prompts:
        raise ConfigError("data.eval_prompts is set but data.prompts is not")
    used = recipe.kinds(bool(data.prompts) and recipe.uses_prompts)
    kinds = [
        ("demonstrations", "demo" in used, data.demonstrations, data.eval_demonstrations),
        ("preferences", "pref" in used, data.preferences, data.eval_preferences),
        ("prompts", "prompt" in used, data.prompts, data.eval_prompts),
    ]
    for kind, uses, train_path, eval_path in kinds:
        if uses and not train_path:
            raise ConfigError(f"method {name!r} needs data.{kind}")
        for path in (train_path, eval_path) if uses else ():
            if path and not Path(path).is_file():
                raise ConfigError(f"data.{kind if path == train_path else 'eval_' + kind}: {path} is not a file")
    return kinds


def read_data(config: TrainConfig, name: str) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """({split: demonstrations}, {split: preferences}, {split: prompts}) for the data kinds
    ``name`` uses; a kind it does not use is ``{}`` (and a file given for it is ignored
    with a warning). With ``data.prompts``, ``rlhf`` reads no preferences (its policy stage
    samples on the prompts)."""
    readers = {"demonstrations": read_demonstrations, "preferences": read_preferences, "prompts": read_prompts}
    out: list[dict[str, list]] = []
    for kind, uses, train_path, eval_path in _data_kinds(config, name):
        if not uses:
            for path in (train_path, eval_path):
                if path:
                    log.warning("method %s does not use %s: %s is ignored", name, kind, path)
            out.append({})
            continue
        read = readers[kind]
        train, held, _ = split_without_leaks(
            read(train_path), config.data.eval_fraction, config.loop.seed, dedupe=config.data.dedupe,
            eval_records=read(eval_path) if eval_path else None, name=train_path,
        )
        out.append({"train": train, "eval": held})
    return out[0], out[1], out[2]


def _reads_the_same_ids(policy_tokenizer, reward_tokenizer) -> bool:
    """Whether the reward model reads the policy's token ids as the policy does: one vocabulary,
    but for a pad token of the reward's own (an exported reward's, a TRL reward model's added
    pad), an id no policy sample holds."""
    policy, reward = policy_tokenizer.get_vocab(), dict(reward_tokenizer.get_vocab())
    if reward_tokenizer.pad_token is not None and reward_tokenizer.pad_token not in policy:
        reward.pop(reward_tokenizer.pad_token)
    return reward == policy


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
            mc.name_or_path, mc.dtype, mc.gradient_checkpointing, mc.lora, mc.trust_remote_code,
            attn_implementation=mc.attn_implementation, no_dropout=mc.disable_dropout,
        )
    if policy is not None and mc.padding_free:
        log.info("%s: padding-free batches (packed sequences differ from padded ones by %.2g in log-prob)",
                 name, check_packing(policy, len(tokenizer)))
    if policy is not None and mc.logprob_chunk:
        log.info("%s: log-probs from hidden states, %d response tokens at a time (%.2g from the logits' ones)",
                 name, mc.logprob_chunk, check_chunked_logprobs(policy, len(tokenizer), mc.logprob_chunk))
    chunk = mc.logprob_chunk if policy is not None else None
    if policy is not None and mc.compile:
        compile_body(policy, mc.compile_backend, mc.compile_scope)
        log.info("%s: the policy's body is compiled (torch.compile, backend %s, scope %s)", name, mc.compile_backend,
                 mc.compile_scope)
    if recipe.reward == "implicit":
        encoder = Encoder(tokenizer, config.data.max_length, config.data.max_prompt_length)
        return ImplicitRewardMethod(name, config.method, tokenizer, encoder, policy, demos, prefs,
                                    padding_free=mc.padding_free, logprob_chunk=chunk), tokenizer
    if reward_model is None:
        reward_model, reward_tokenizer = load_reward_model(
            mc.reward_model or mc.name_or_path, mc.dtype, mc.trust_remote_code, seed=config.loop.seed,
            attn_implementation=mc.attn_implementation, heads=config.method.reward_ensemble,
            no_dropout=mc.disable_dropout,
        )
        if recipe.train_reward and config.method.reward_frozen_layers:
            frozen = reward_model.freeze_lower_layers(config.method.reward_frozen_layers)
            log.info("%s: the reward body's embeddings and lowest %d layers are frozen (%d parameters)",
                     name, config.method.reward_frozen_layers, frozen)
        if tokenizer is not None and not _reads_the_same_ids(tokenizer, reward_tokenizer):
            raise ConfigError(
                f"model.reward_model {mc.reward_model!r} has another tokenizer than the policy "
                f"{mc.name_or_path!r}: the reward model scores the policy's tokens, so they must share one"
            )
        tokenizer = tokenizer or reward_tokenizer
    encoder = Encoder(tokenizer, config.data.max_length, config.data.max_prompt_length)
    method = ExplicitRewardMethod(
        name, config.method, tokenizer, encoder, demos, prefs, reward_model,
        policy=policy, reference=reference_model(policy) if recipe.train_policy else None, prompts=prompts,
        padding_free=mc.padding_free and policy is not None, logprob_chunk=chunk,
    )
    return method, tokenizer


def _save_final(trainer: Trainer, tokenizer, directory: Path, name: str, config: TrainConfig) -> None:
    """Trained models for later use, written atomically (a full disk leaves the previous
    ``final/`` or none, never a half): the policy as ``save_pretrained`` (safetensors), the
    reward model as ``RewardModel.save``; both with the tokenizer and a model card."""
    acc = trainer.accelerator
    states = {name: acc.get_state_dict(module) for name, module in trainer.method.models.items()}
    if not acc.is_main_process:
        return
    with runtime.atomic_directory(directory) as tmp:
        for kind, module in trainer.method.models.items():
            model = acc.unwrap_model(module)
            if kind == "reward":
                model.save(tmp / "reward", tokenizer)
            else:
                model.save_pretrained(tmp / kind, state_dict=states[kind], safe_serialization=True)
                tokenizer.save_pretrained(tmp / kind)
            card = model_card(name, kind, config, trainer.history, trainer.evaluations, str(directory / kind))
            (tmp / kind / "README.md").write_text(card, encoding="utf-8")


def trains_reward_stage(name: str, config: TrainConfig) -> bool:
    """Whether method ``name`` first trains the preference-only reward stage (:func:`reward_stage_config`):
    ``rlhf`` unless ``model.reward_model`` is a saved reward model, ``aihf`` with
    ``method.reward_init: preferences`` and no ``model.reward_model``."""
    if name == "rlhf":
        return not (bool(config.model.reward_model) and is_saved_reward_model(config.model.reward_model))
    return name == "aihf" and config.method.reward_init == "preferences" and not config.model.reward_model


def reward_stage_config(config: TrainConfig) -> TrainConfig:
    """The config of the preference-only ``reward`` stage of ``config``'s run: in
    ``output_dir/reward``, no prompt set, ``reward_stage_steps`` steps (default ``loop.max_steps``)."""
    stage = copy.deepcopy(config)
    stage.data.prompts = stage.data.eval_prompts = None
    stage.loop.output_dir = str(Path(config.loop.output_dir) / "reward")
    stage.loop.max_steps = config.reward_stage_steps or config.loop.max_steps
    return stage


def policy_stage_config(config: TrainConfig, reward_model: Path) -> TrainConfig:
    """The config of ``rlhf``'s policy stage after its reward stage: in ``output_dir/policy`` (the
    run's result folder), with that stage's ``reward_model``; with a prompt set it reads no
    preferences (they served the reward stage)."""
    stage = copy.deepcopy(config)
    stage.model.reward_model = str(reward_model)
    if stage.data.prompts:
        stage.data.preferences = stage.data.eval_preferences = None
    stage.loop.output_dir = str(Path(config.loop.output_dir) / "policy")
    return stage


def _reward_stage(config: TrainConfig, overwrite: bool) -> Path:
    """Train the reward stage (:func:`reward_stage_config`; a finished stage of the same config is
    reused: ``resume_from=auto``) and return the saved reward model's directory."""
    stage = reward_stage_config(config)
    train("reward", stage, report_ignored=False, overwrite=overwrite)
    return reward_stage_model(stage)


def reward_stage_model(stage: TrainConfig) -> Path:
    """Where the reward stage of config ``stage`` (:func:`reward_stage_config`) saves its reward model."""
    return Path(stage.loop.output_dir) / "final" / "reward"


def checkpoint_bytes(method) -> int:
    """Disk a checkpoint of ``method`` takes: every model's weights plus AdamW's two float32
    moments of each trainable parameter (what ``Trainer.save_checkpoint`` writes)."""
    total = 0
    for module in method.models.values():
        for p in module.parameters():
            total += p.numel() * p.element_size() + (8 * p.numel() if p.requires_grad else 0)
    return total


def _fit(name: str, config: TrainConfig, plan: run_folder.Plan) -> TrainResult:
    """One stage in ``config.loop.output_dir``: build, check the disk, train (resuming as
    ``plan`` says), save ``final/`` atomically."""
    method, tokenizer = build_method(name, config)
    loop = config.loop
    checkpoints = (loop.keep_checkpoints or math.ceil(loop.max_steps / loop.save_every)) + 1 if loop.save_every else 0
    final = sum(p.numel() * p.element_size() for m in method.models.values() for p in m.parameters())
    run_folder.check_free_space(Path(loop.output_dir), checkpoints * checkpoint_bytes(method) + final)
    loop = dataclasses.replace(loop, resume_from=str(plan.checkpoint) if plan.action == "resume" else None)
    trainer = Trainer(method, loop)
    result = trainer.fit()
    _save_final(trainer, tokenizer, Path(loop.output_dir) / "final", name, config)
    return result


def _finished_result(folder: Path, record: dict) -> TrainResult:
    result_dir = Path(record.get("result_dir") or folder)
    metrics = json.loads((result_dir / "metrics.json").read_text(encoding="utf-8"))
    log.info("%s holds this run, finished at step %s: nothing to train (its final weights are in %s)",
             folder, record.get("step"), result_dir / "final")
    return TrainResult(metrics["history"], metrics["evaluations"], result_dir)


def _claim(folder: Path, name: str, config: TrainConfig, overwrite: bool, state: PartialState,
           held: contextlib.ExitStack) -> run_folder.Plan:
    """The main process takes the folder's lock (held until ``held`` closes), removes dead
    writers' files, plans and records the run; every process gets that plan, or raises the
    main process's refusal (so no process waits on a collective the others never reach)."""
    decided: run_folder.Plan | run_folder.RunFolderError | None = None
    if state.is_main_process:
        try:
            held.enter_context(run_folder.locked(folder))
            run_folder.remove_dead_writers_files(folder)
            decided = run_folder.plan(folder, name, config, overwrite, latest_checkpoint(folder))
            if decided.action != "finished":
                run_folder.write_record(folder, name, config, state.num_processes, "running")
                log.info("%s: %s in %s, %d process(es)%s", name, decided.action, folder, state.num_processes,
                         f" from {decided.checkpoint}" if decided.checkpoint else "")
        except run_folder.RunFolderError as err:
            decided = err
    if state.num_processes > 1:
        decided = broadcast_object_list([decided])[0]
    if isinstance(decided, run_folder.RunFolderError):
        raise decided
    return decided


def train(name: str, config: TrainConfig, report_ignored: bool = True, overwrite: bool = False, *,
          demonstrations: Data | None = None, preferences: Data | None = None, prompts: Data | None = None,
          eval_demonstrations: Data | None = None, eval_preferences: Data | None = None,
          eval_prompts: Data | None = None, model: Any = None, tokenizer: Any = None, reward_model: Any = None,
          reward_tokenizer: Any = None) -> TrainResult:
    """Run method ``name`` in its run folder ``loop.output_dir`` (default
    ``runs/METHOD-HASH``); weights end up in ``<result folder>/final``.

    The data are ``config.data``'s files or datasets (``DataConfig``), or given here, each in
    place of its ``config.data`` field: a path, a ``datasets.Dataset``, a list of dicts or a list
    of records. Rows held in memory or loaded by ``datasets`` are read (checked as a file's rows
    are) and stored as a content-addressed JSONL file under ``aihf_cache_dir()/data`` that the
    run's config then names (``aihf.lm.in_memory``): the same rows are the same run, and the
    folder's ``config.yaml`` reruns it from the command line.
    A ``model`` and its ``tokenizer`` given here (transformers objects) replace
    ``model.name_or_path`` the same way: saved once into a folder named by the hash of its files;
    a ``reward_model`` and its ``reward_tokenizer`` (a ``RewardModel``, or a one-label sequence
    classifier such as a TRL reward model) replace ``model.reward_model`` so.

    The folder is claimed first (``aihf.run_folder``: lock, record, refusal of another run
    unless ``overwrite``, ``resume_from=auto``: a checkpoint of this run is resumed and a
    finished run is returned as it is). ``rlhf`` first trains ``reward`` into
    ``output_dir/reward`` (unless ``model.reward_model`` is a saved reward model), then its
    policy stage into ``output_dir/policy`` (the result folder). The reward stage reads no
    prompt set; with one, the policy stage reads no preferences. ``aihf`` with
    ``method.reward_init: preferences`` (and no ``model.reward_model``) trains the same
    stage 0 first and warm starts its reward from it. Settings the method does not read
    are logged as a warning.
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(RECIPES)}")
    given_data = {"demonstrations": demonstrations, "preferences": preferences, "prompts": prompts,
                  "eval_demonstrations": eval_demonstrations, "eval_preferences": eval_preferences,
                  "eval_prompts": eval_prompts}
    config = with_stored_data(config, given_data, aihf_cache_dir() / "data")
    if model is not None or tokenizer is not None:
        config = with_stored_model(config, model, tokenizer, aihf_cache_dir() / "models")
    if reward_model is not None or reward_tokenizer is not None:
        config = with_stored_model(config, reward_model, reward_tokenizer, aihf_cache_dir() / "models", "reward_model")
    if report_ignored and (ignored := RECIPES[name].ignored(config.method)):
        log.warning("method %s does not read method.%s: ignored", name, ", method.".join(ignored))
    _data_kinds(config, name)  # a missing file fails before the folder is claimed
    if config.loop.output_dir is None:
        config = copy.deepcopy(config)
        config.loop.output_dir = run_folder.default_output_dir(name, config)
    folder = Path(config.loop.output_dir)
    state = runtime.process_state()
    with contextlib.ExitStack() as held:
        plan = _claim(folder, name, config, overwrite, state, held)
        if plan.action == "finished":
            return _finished_result(folder, run_folder.read_record(folder))
        stage = config
        if trains_reward_stage(name, config):
            reward = _reward_stage(config, overwrite)
            if name == "rlhf":  # its policy stage in output_dir/policy
                stage = policy_stage_config(config, reward)
                result = train(name, stage, report_ignored=False, overwrite=overwrite)
            else:  # aihf's joint run stays in output_dir, its reward warm-started from the stage's
                stage = copy.deepcopy(config)
                stage.model.reward_model = str(reward)
                result = _fit(name, stage, plan)
        else:
            result = _fit(name, config, plan)
        if state.is_main_process:
            run_folder.write_record(folder, name, config, state.num_processes, "finished", step=len(result.history),
                                    result_dir=str(result.output_dir), reward_model=stage.model.reward_model)
    return result


def cli_config(method: str, config_path: str | None, overrides: list[str], output_dir: str | None = None) -> TrainConfig:
    """The config of ``aihf train METHOD --config FILE [--output-dir DIR] key=value ...``:
    ``config_path`` is a YAML file or the name of a shipped ``configs/lm/`` config (``tiny``), as
    for experiment presets; the log is set up for the command."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    logs.setup(logging.INFO)
    path = None
    if config_path is not None:
        path = shipped.find_config(CONFIG_GROUP, config_path)
        if path is None:
            raise ConfigError(f"--config {config_path}: no such file, nor a shipped config of that name "
                              f"(configs/lm: {', '.join(shipped.config_names(CONFIG_GROUP))})")
    config = load_config(TrainConfig, path, overrides)
    if output_dir is not None:
        config.loop.output_dir = output_dir
    if config_path is None and config.model.name_or_path == "tiny":
        log.warning("no --config and no model.name_or_path: training the random tiny model (aihf.lm.tiny)")
    return config


def train_from_cli(method: str, config_path: str | None, overrides: list[str],
                   output_dir: str | None = None, overwrite: bool = False) -> int:
    """``aihf train METHOD --config FILE key=value ...`` (:func:`cli_config`); returns the exit
    status (errors propagate to ``aihf.cli``, which prints them as one line)."""
    result = train(method, cli_config(method, config_path, overrides, output_dir), overwrite=overwrite)
    last = result.history[-1] if result.history else {}
    trained = "policy" if RECIPES[method].train_policy else "reward"
    print(f"{method}: {len(result.history)} steps, final loss {last.get('loss', float('nan')):.4f}; "
          f"{'policy' if trained == 'policy' else 'reward model'} in {result.output_dir / 'final' / trained}")
    return 0


__all__ = ["METHODS", "ModelConfig", "DataConfig", "TrainConfig", "build_method", "cli_config", "policy_stage_config",
           "reward_stage_config", "reward_stage_model", "train", "train_from_cli", "trains_reward_stage"]
