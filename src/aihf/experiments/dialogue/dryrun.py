"""``--dry-run`` of the dialogue experiments: the stages, data sizes, the launch command and
the estimate of :mod:`.estimate`, without loading weights or data; and the check of the
accelerate config the launch command names.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from aihf import shipped
from aihf.config import ConfigError
from aihf.experiments.dialogue import estimate
from aihf.lm.methods import RECIPES, MethodConfig
from aihf.experiments.runs import RunSpec
from aihf.lm.trainer import LoopConfig

CONFIGS_PREFIX = "configs/"


@dataclass(frozen=True)
class Stage:
    """One training stage of the plan: its name, recipe, steps and sections, repeated ``times``
    (settings x seeds), and the demonstrations it reads (self-play samples one per round)."""

    name: str
    recipe: str
    steps: int
    method: MethodConfig
    loop: LoopConfig
    times: int = 1
    num_demos: int = 0


def run_stages(name: str, spec: RunSpec, records: int, demos: int, times: int, processes: int) -> list[Stage]:
    """The stages of one run: RLHF's reward stage first; Algorithm 1's rounds as their steps."""
    method, loop = spec.method, spec.loop
    steps = loop.max_steps
    if spec.recipe == "aihf" and method.schedule == "rounds":
        reward_steps = epochs_to_steps(records, method.reward_epochs, loop, processes)
        steps = method.rounds * (method.policy_steps_per_round + reward_steps)
    out = [Stage(name, spec.recipe, steps, method, loop, times, demos)]
    if spec.recipe == "rlhf":
        out.insert(0, Stage(f"{name}/reward", "reward", loop.max_steps, method, loop, times))
    return out


def accelerate_config_path(name: str) -> Path:
    """``configs/accelerate/X.yaml`` as shipped (the path the docs use), or a file of the user's."""
    if name.startswith(CONFIGS_PREFIX + "accelerate/") and not Path(name).is_file():
        found = shipped.config_file("accelerate", Path(name).stem)
        if found is not None:
            return found
    path = Path(name)
    if not path.is_file():
        raise ConfigError(f"hardware.accelerate_config: {name} is not a file")
    return path


def uses_launcher(hardware: estimate.HardwareSection) -> bool:
    """Whether the run goes through ``accelerate launch``: several GPUs, or ZeRO-3 (even on one)."""
    return hardware.gpus > 1 or hardware.zero3


def check_accelerate_config(hardware: estimate.HardwareSection, stages: list[Stage], dtype: str) -> list[str]:
    """Validate the accelerate config with accelerate's own reader (unknown keys, types) and
    against the run (when it goes through accelerate launch, :func:`uses_launcher`): its process count is ``hardware.gpus``, its mixed precision the model's
    dtype; under DeepSpeed it must be ZeRO stage 3 (``hardware.zero3``), its clipping each
    stage's ``loop.max_grad_norm``, and no stage may train two models (AIHF's Algorithm 1:
    use ddp.yaml). Returns the lines that describe it; ConfigError on the first problem."""
    from accelerate.commands.config.config_args import ClusterConfig

    if not uses_launcher(hardware):
        return ["one process (hardware.gpus 1, no ZeRO-3): no accelerate launcher, no accelerate config"]
    path = accelerate_config_path(hardware.accelerate_config)
    try:
        cluster = ClusterConfig.from_yaml_file(str(path))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: accelerate cannot read it: {err}") from err
    where = f"{hardware.accelerate_config}"
    if cluster.num_processes != hardware.gpus:
        raise ConfigError(f"{where}: num_processes {cluster.num_processes} but hardware.gpus is {hardware.gpus}")
    want = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}[dtype]
    if str(cluster.mixed_precision) != want:
        raise ConfigError(f"{where}: mixed_precision {cluster.mixed_precision} but model.dtype {dtype} needs {want}")
    deepspeed = str(cluster.distributed_type).endswith("DEEPSPEED")
    if deepspeed != hardware.zero3:
        raise ConfigError(f"{where}: distributed_type {cluster.distributed_type} but hardware.zero3 is {hardware.zero3}")
    lines = [f"accelerate config {where}: {cluster.distributed_type}, {cluster.num_processes} processes, "
             f"mixed precision {cluster.mixed_precision} (read by accelerate)"]
    if deepspeed:
        ds = cluster.deepspeed_config or {}
        if ds.get("zero_stage") != 3:
            raise ConfigError(f"{where}: deepspeed_config.zero_stage is {ds.get('zero_stage')}, not 3")
        if "gradient_accumulation_steps" in ds:
            raise ConfigError(f"{where}: leave deepspeed_config.gradient_accumulation_steps out (the loop's is used)")
        for stage in stages:
            if ds.get("gradient_clipping") != stage.loop.max_grad_norm:
                raise ConfigError(f"{where}: gradient_clipping {ds.get('gradient_clipping')} but stage {stage.name} "
                                  f"clips at loop.max_grad_norm {stage.loop.max_grad_norm}")
            recipe = RECIPES[stage.recipe]
            if recipe.train_policy and recipe.train_reward:
                raise ConfigError(f"stage {stage.name} trains a policy and a reward model: ZeRO-3 runs one trained "
                                  "model per stage; use configs/accelerate/ddp.yaml or drop it from methods")
        lines.append(f"  ZeRO-3: gradient_clipping {ds.get('gradient_clipping')}, offload "
                     f"{ds.get('offload_optimizer_device')}/{ds.get('offload_param_device')}")
    return lines


def report(title: str, stages: list[Stage], sizes: dict[str, int], command: str, shape: estimate.Shape,
           max_length: int, dtype: str, hardware: estimate.HardwareSection, evaluation: tuple[int, int, int, int]) -> str:
    """The dry run's text: stages with steps, memory and time, data sizes, the command.

    ``evaluation`` is (policies scored, prompts, batch size, max_new_tokens)."""
    weight_bytes = 4 if dtype == "float32" else 2
    lines = [f"{title}: dry run (nothing loaded; the figures are estimates, see aihf.experiments.dialogue.estimate)",
             "data: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()),
             f"model: {estimate.shape_line(shape)}",
             f"hardware: {hardware.gpus} GPU(s) x {hardware.gpu_memory_gib:g} GiB, {hardware.tflops:g} TFLOP/s peak at "
             f"{hardware.utilization:.0%}, {hardware.bandwidth_tb_s:g} TB/s",
             "stages:"]
    total, peak = 0.0, 0.0
    for stage in stages:
        work = estimate.workload(stage.recipe, stage.method, stage.loop, stage.num_demos, hardware.gpus)
        memory = estimate.memory_gib(shape, work, max_length, hardware, weight_bytes)
        seconds = stage.steps * estimate.step_seconds(shape, work, max_length, stage.method.max_new_tokens, stage.loop,
                                                      hardware, weight_bytes)
        total, peak = total + stage.times * seconds, max(peak, memory)
        fits = "" if memory <= hardware.gpu_memory_gib else "  DOES NOT FIT"
        lines.append(f"  {stage.name} ({stage.recipe}) x{stage.times}: {stage.steps:,} steps, "
                     f"~{memory:.3g} GiB per GPU, ~{estimate.hours(seconds)} each{fits}")
    policies, prompts, batch, new_tokens = evaluation
    sampling = policies * estimate.sampling_seconds(shape, prompts, batch, new_tokens, hardware, weight_bytes)
    lines.append(f"  evaluation: {policies} policy answer sets of {prompts} prompts, ~{estimate.hours(sampling)}")
    lines.append(f"total: ~{estimate.hours(total + sampling)}; peak ~{peak:.3g} GiB per GPU (estimates); the main "
                 f"process's GPU also holds the evaluation's baseline, {shape.params * weight_bytes / estimate.GIB:.3g} GiB more")
    lines.append(f"launch: {command}")
    return "\n".join(lines)


def dry_run_text(title: str, experiment: str, preset: str, output_dir: str, overrides: list[str], config,
                 plan: list[Stage], sizes: dict[str, int], policies: int, test_prompts: int) -> str:
    """The dry run of an experiment whose ``config`` has ``model``, ``evaluation`` and
    ``hardware`` sections: the accelerate config's check, then :func:`report`."""
    hardware, evaluation = config.hardware, config.evaluation
    checked = check_accelerate_config(hardware, plan, config.model.dtype)
    shape = estimate.model_shape(config.model.name_or_path, config.model.scratch)
    command = launch_command(hardware, experiment, preset, output_dir, overrides)
    answers = (policies, min(evaluation.num_prompts, test_prompts), evaluation.batch_size, evaluation.max_new_tokens)
    text = report(f"{title} ({preset})", plan, sizes, command, shape, config.model.max_length, config.model.dtype,
                  hardware, answers)
    return "\n".join([text, *checked])


def epochs_to_steps(records: int, epochs: float, loop: LoopConfig, processes: int) -> int:
    """Optimizer steps of ``epochs`` passes over ``records``:
    ceil(epochs x records / (micro batch x accumulation x processes))."""
    return max(1, math.ceil(epochs * records / (loop.micro_batch_size * loop.gradient_accumulation_steps * processes)))


def launch_command(hardware: estimate.HardwareSection, experiment: str, preset: str, output_dir: str,
                   overrides: list[str]) -> str:
    """The command that runs the experiment on ``hardware.gpus`` GPUs (or plainly on one)."""
    args = shlex.join(["experiment", experiment, "--preset", preset, "--output-dir", output_dir, *overrides])
    if not uses_launcher(hardware):
        return f"aihf {args}"
    return f"accelerate launch --config_file {hardware.accelerate_config} -m aihf.cli {args}"
