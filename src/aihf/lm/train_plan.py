"""``aihf train METHOD --dry-run``: what a training run would read and do, without loading a
model or touching its run folder.

A long run that stops at its first batch on a misnamed column, or that finds its folder holding
another run, costs the model's loading time at least; the dry run finds both first. It goes
through the run's own steps up to the model: the config as ``aihf train`` loads it
(``train.cli_config``), the data as ``train.train`` takes it (``in_memory.with_stored_data``: a
dataset, or data whose columns ``data.columns`` renames, is read and stored in the data cache, as
the run would store it), every data file the method uses read, checked and split into training
and held-out records (``train.read_data``, the same errors naming the file, the row and the field),
and the run folder's decision (``run_folder.plan``: start, resume from a checkpoint, finished, or
refused because it holds another run), for the preference-only reward stage too where the method
trains one first (``rlhf``, ``aihf`` with ``reward_init: preferences``). Settings the method does not read are listed
(``Recipe.ignored``). Nothing is trained and the run folder is neither created nor changed.
"""

from __future__ import annotations

from pathlib import Path

from aihf import run_folder
from aihf.lm.in_memory import with_stored_data
from aihf.lm.methods import RECIPES
from aihf.lm.models import aihf_cache_dir
from aihf.lm.train import (TrainConfig, cli_config, policy_stage_config, read_data, reward_stage_config,
                           reward_stage_model, trains_reward_stage)
from aihf.lm.trainer import latest_checkpoint

KINDS = ("demonstrations", "preferences", "prompts")


def folder_line(name: str, config: TrainConfig, overwrite: bool) -> tuple[str, bool]:
    """(the run folder ``loop.output_dir`` and what method ``name`` would do there, whether it would be refused)."""
    folder = Path(config.loop.output_dir)
    try:
        plan = run_folder.plan(folder, name, config, overwrite=False, latest=latest_checkpoint(folder))
    except run_folder.RunFolderError as err:
        if overwrite:
            return f"run folder {folder}: holds another run, which --overwrite would replace; starts at step 0", False
        return f"run folder: refused: {err}", True
    what = {"start": "starts at step 0", "finished": "finished already: nothing to train",
            "resume": f"resumes from {plan.checkpoint}"}[plan.action]
    return f"run folder {folder}: {what}", False


def run_stages(name: str, config: TrainConfig) -> list[tuple[str, str, TrainConfig]]:
    """(label, method, config) of each folder the run of ``name`` trains in, in order: the preference-only
    reward stage first where the method trains one, then ``config`` itself, or for ``rlhf`` its policy stage
    (``output_dir`` then holds the two stages only)."""
    if not trains_reward_stage(name, config):
        return [("", name, config)]
    reward = reward_stage_config(config)
    last = (("policy stage: ", name, policy_stage_config(config, reward_stage_model(reward))) if name == "rlhf"
            else ("", name, config))
    return [("reward stage: ", "reward", reward), last]


def describe(name: str, config: TrainConfig, overwrite: bool = False) -> tuple[list[str], bool]:
    """(the dry run's lines, whether the run would be refused) for method ``name`` and ``config``."""
    stored = with_stored_data(config, {}, aihf_cache_dir() / "data")
    splits = read_data(stored, name)
    lines = [f"model: {stored.model.name_or_path} (not loaded)"]
    if stored.model.reward_model:
        lines.append(f"reward model: {stored.model.reward_model} (not loaded)")
    for kind, split in zip(KINDS, splits):
        given, used = getattr(config.data, kind), getattr(stored.data, kind)
        source = f"{given} (stored as {used})" if given and used != given else given
        eval_given = getattr(config.data, f"eval_{kind}")
        if split:
            held = (f"held out: {len(split['eval'])}" + (f" from {eval_given}" if eval_given else
                                                         f" (data.eval_fraction {stored.data.eval_fraction})"))
            lines.append(f"{kind}: {source}: {len(split['train'])} to train on, {held}")
        elif given or eval_given:
            lines.append(f"{kind}: {given or eval_given}: not read by {name}")
    if stored.loop.output_dir is None:
        stored.loop.output_dir = run_folder.default_output_dir(name, stored)
    own, refused = folder_line(name, stored, overwrite)  # the run claims output_dir first
    if refused:
        return [*lines, own], True
    for label, method, stage in run_stages(name, stored):
        line, refused_here = (own, False) if stage is stored else folder_line(method, stage, overwrite)
        lines.append(label + line)
        refused = refused or refused_here
    lines.append(f"steps: loop.max_steps {stored.loop.max_steps}, micro-batches of {stored.loop.micro_batch_size}"
                 f" x {stored.loop.gradient_accumulation_steps} per step and process")
    ignored = RECIPES[name].ignored(stored.method)
    if ignored:
        lines.append(f"settings {name} does not read: method.{', method.'.join(ignored)}")
    return lines, refused


def dry_run_from_cli(method: str, config_path: str | None, overrides: list[str], output_dir: str | None = None,
                     overwrite: bool = False) -> int:
    """``aihf train METHOD --config FILE --dry-run [key=value ...]``: print :func:`describe`'s
    lines; exit status 2 when the run folder would refuse the run, else 0."""
    config = cli_config(method, config_path, overrides, output_dir)
    lines, refused = describe(method, config, overwrite)
    print(f"aihf train {method}: dry run, nothing trained, the run folder untouched")
    for line in lines:
        print(f"  {line}")
    return 2 if refused else 0
