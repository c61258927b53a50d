"""GPU memory and time of a dialogue experiment, estimated from the model's shape alone
(no weights loaded), for ``--dry-run``.

These are estimates from first principles, not measurements; they ignore CUDA's context,
allocator fragmentation and communication. With P parameters, L layers, hidden size d,
vocabulary V, T = ``model.max_length`` tokens per sequence, b the weights' bytes (2 in
bf16), G GPUs (Z = G under ZeRO-3, else 1), per GPU:

* a trained model: P (b + b + s) / Z bytes (weights, gradients, optimizer state s: AdamW's
  two moments in the weights' dtype, 2b; DeepSpeed keeps fp32 master weights and moments, 12);
* a frozen model (the RL methods' reference, RLHF's reward model): P b / Z;
* activations of one micro-batch of S sequences: S T (34 L d + 4 V) bytes: 34 bytes per
  token, layer and hidden unit (Korthikanti et al. 2022, "Reducing Activation Recomputation
  in Large Transformer Models", bf16, no activation checkpointing, which the experiments'
  stages do not turn on), plus float32 logits.

Time: a training step costs 6 P tokens FLOPs (plus 2 P tokens for a frozen forward pass)
at ``hardware.utilization`` of the GPUs' peak ``tflops``; sampling is bound by reading the
weights once per decoding step: ``max_new_tokens`` steps of max(P b / bandwidth,
``decode_step_s``) seconds per generate call (HF generate's measured per-step time is the
floor for small models), plus P b / interconnect under ZeRO-3, which gathers every layer
on every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from aihf.config import ConfigError, Settings, setting
from aihf.lm.models import SMOLLM2, TINY
from aihf.lm.scratch import SCRATCH, ScratchModelConfig
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.methods import RECIPES, MethodConfig
from aihf.lm.trainer import LoopConfig

GIB = 2**30
# Published shapes (the models' config.json on the hub): parameters, layers, hidden size, vocabulary.
KNOWN_SHAPES = {
    "EleutherAI/pythia-160m": (162_322_944, 12, 768, 50_304),
    "EleutherAI/pythia-1b": (1_011_781_632, 16, 2_048, 50_304),
    "EleutherAI/pythia-2.8b": (2_775_208_960, 32, 2_560, 50_304),
    "HuggingFaceH4/mistral-7b-sft-beta": (7_241_732_096, 32, 4_096, 32_000),
    SMOLLM2: (134_515_008, 30, 576, 49_152),  # the packaged SmolLM2-135M-Instruct's conversion (tied embeddings)
}


@dataclass
class HardwareSection(Settings):
    """The GPUs the estimate is for (``--dry-run``; nothing else reads it)."""

    gpus: int = setting(8, ge=1, help="GPUs of the launch")
    gpu_memory_gib: float = setting(80.0, gt=0, help="memory of one GPU")
    tflops: float = setting(989.0, gt=0, help="peak dense bf16 TFLOP/s of one GPU (H100 SXM: 989)")
    bandwidth_tb_s: float = setting(3.35, gt=0, help="memory bandwidth of one GPU in TB/s (H100 SXM: 3.35)")
    utilization: float = setting(0.35, gt=0, le=1, help="share of peak FLOP/s a training step reaches")
    interconnect_gb_s: float = setting(450.0, gt=0, help="GB/s one GPU receives from the others (ZeRO-3's gathers; "
                                       "H100 NVLink: 450 each way)")
    decode_step_s: float = setting(0.0145, gt=0, help="the least time of one decoding step of HF generate: "
                                   "64 x 256 tokens at 4.4k tokens/s on an H200, Pythia-1B size (docs/benchmarks.md)")
    accelerate_config: str = setting("configs/accelerate/ddp.yaml", help="accelerate launch --config_file")
    zero3: bool = setting(False, help="DeepSpeed ZeRO-3 shards weights, gradients and optimizer state")


@dataclass(frozen=True)
class Shape:
    params: int
    layers: int
    hidden: int
    vocab: int


def model_shape(name_or_path: str, scratch: ScratchModelConfig) -> Shape:
    """The shape of a known hub model, of a local folder's ``config.json`` (counted on the
    meta device, no weights; tied embeddings once), of the tiny test model or of the scratch
    model; ConfigError for an unknown hub name."""
    if name_or_path in KNOWN_SHAPES:
        return Shape(*KNOWN_SHAPES[name_or_path])
    if name_or_path == TINY:
        config = tiny_causal_lm(tiny_tokenizer()).config
    elif name_or_path == SCRATCH:
        from transformers import GPTNeoXConfig

        config = GPTNeoXConfig(vocab_size=scratch.vocab_size, hidden_size=scratch.hidden_size,
                               num_hidden_layers=scratch.num_layers, num_attention_heads=scratch.num_heads,
                               intermediate_size=scratch.intermediate_size, max_position_embeddings=scratch.max_positions,
                               tie_word_embeddings=True)
    elif (Path(name_or_path) / "config.json").is_file():
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name_or_path)
    else:
        raise ConfigError(f"model.name_or_path: no shape known offline for {name_or_path!r}: give a local folder "
                          "with its config.json")
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    model.tie_weights()  # init_empty_weights leaves tied embeddings as two tensors
    text = config.get_text_config()
    return Shape(sum(p.numel() for p in model.parameters()), text.num_hidden_layers, text.hidden_size, text.vocab_size)


@dataclass(frozen=True)
class Workload:
    """Per micro-batch and GPU: sequences trained on, models trained and frozen, and
    generate calls (of ``max_new_tokens`` decoding steps) per optimizer step."""

    sequences: int
    trained: int
    frozen: int
    generate_calls: float


def workload(recipe_name: str, method: MethodConfig, loop: LoopConfig, num_demos: int, gpus: int) -> Workload:
    """The :class:`Workload` of one method (docs/lm_engine.md's table of methods)."""
    recipe, mb, acc = RECIPES[recipe_name], loop.micro_batch_size, loop.gradient_accumulation_steps
    demos = {"none": 0, "likelihood": mb, "self-play": 2 * mb, "irl": 2 * mb}[recipe.demo_term]
    prefs = 2 * mb if recipe.pref_term else 0
    if recipe.train_policy and recipe.reward == "explicit":  # RLOO on k samples per prompt: rlhf's policy stage, aihf
        return Workload(method.rloo_k * mb + demos + prefs, 1 + recipe.train_reward, 2 - recipe.train_reward, float(acc))
    generate = 0.0
    if recipe.demo_term == "self-play":  # a sample per demonstration per round, drawn in batches of mb
        generate = num_demos / (gpus * mb) / method.steps_per_round
    return Workload(demos + prefs, 1, 0, generate)


def memory_gib(shape: Shape, work: Workload, max_length: int, hardware: HardwareSection, weight_bytes: int = 2) -> float:
    """Per-GPU memory of one training stage (module docstring)."""
    shard = hardware.gpus if hardware.zero3 else 1
    optimizer = 12 if hardware.zero3 else 2 * weight_bytes
    states = shape.params * (work.trained * (2 * weight_bytes + optimizer) + work.frozen * weight_bytes) / shard
    per_token = 34 * shape.layers * shape.hidden + 4 * shape.vocab
    return (states + work.sequences * max_length * per_token) / GIB


def decode_step(shape: Shape, hardware: HardwareSection, weight_bytes: int = 2) -> float:
    """Seconds of one decoding step on one GPU: max(P b / bandwidth, ``decode_step_s``)."""
    return max(shape.params * weight_bytes / (hardware.bandwidth_tb_s * 1e12), hardware.decode_step_s)


def step_seconds(shape: Shape, work: Workload, max_length: int, max_new_tokens: int, loop: LoopConfig,
                 hardware: HardwareSection, weight_bytes: int = 2) -> float:
    """Seconds of one optimizer step (module docstring)."""
    tokens = work.sequences * max_length * loop.gradient_accumulation_steps
    flops = (6 * work.trained + 2 * work.frozen) * shape.params * tokens
    train = flops / (hardware.tflops * 1e12 * hardware.utilization)
    gather = shape.params * weight_bytes / (hardware.interconnect_gb_s * 1e9) if hardware.zero3 else 0.0
    decode = decode_step(shape, hardware, weight_bytes) + gather
    return train + work.generate_calls * max_new_tokens * decode


def sampling_seconds(shape: Shape, answers: int, batch_size: int, max_new_tokens: int, hardware: HardwareSection,
                     weight_bytes: int = 2) -> float:
    """Seconds to draw ``answers`` answers on one GPU (the evaluation: weights not sharded)."""
    return math.ceil(answers / batch_size) * max_new_tokens * decode_step(shape, hardware, weight_bytes)


def hours(seconds: float) -> str:
    """A duration in h, min or s."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.2g} s"


def shape_line(shape: Shape) -> str:
    return json.dumps({"parameters": shape.params, "layers": shape.layers, "hidden": shape.hidden, "vocab": shape.vocab})
