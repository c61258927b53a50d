"""Sampling responses y ~ pi(.|x) from token-id prompts.

Every sampler takes prompts as lists of token ids and returns, per prompt, the response
token ids only: the prompt is removed, and the response is cut just after its first eos
token. **The eos token is kept** when the model produced it, so a finished response ends
with eos and a response truncated by ``max_new_tokens`` does not: callers can tell them
apart, and training on a sampled response scores its end token as training on a
demonstration (which carries eos) does. Padding never appears in a response.

Sampling is from the full tempered distribution (no top-k, no repetition penalty, whatever
the model's ``generation_config`` says), optionally with nucleus ``top_p``: log pi(y|x) of a
sample is then the quantity the objectives assume. ``temperature=0`` is greedy decoding.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, Protocol, Sequence

import torch


class Sampler(Protocol):
    """Draws responses for token-id prompts."""

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[int]]:
        """Response token ids per prompt (eos kept, see the module docstring).

        ``seed`` fixes the draw; ``None`` draws from the global torch RNG, so results are
        reproducible under ``torch.manual_seed`` as well.
        """
        ...


CacheKind = Literal["auto", "static", "dynamic"]
CACHE_KINDS = ("auto", "static", "dynamic")


def cut_at_eos(tokens: Sequence[int], eos_ids: set[int]) -> list[int]:
    """``tokens`` up to and including the first eos (all of them if there is none)."""
    out: list[int] = []
    for token in tokens:
        out.append(int(token))
        if token in eos_ids:
            break
    return out


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (input_ids, attention_mask) for a batch of token-id prompts."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("prompts must be a non-empty list of non-empty token-id lists")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def stop_tokens(model: Any, tokenizer: Any) -> set[int]:
    """The eos ids a response ends at: the model's ``generation_config.eos_token_id`` (one or a
    list) and the tokenizer's eos. ValueError if there is none, or if the tokenizer has no pad
    token (left padding needs one)."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs a pad token (see aihf.lm.models.prepare_tokenizer)")
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos_list = eos if isinstance(eos, list) else [eos]
    ids = {int(e) for e in [*eos_list, tokenizer.eos_token_id] if e is not None}
    if not ids:
        raise ValueError("neither the tokenizer nor the model's generation_config names an eos token")
    return ids


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


class HFSampler:
    """Batched sampling with transformers' ``generate`` (left padding, attention mask).

    ``cache``: ``"static"`` pre-allocates the KV cache, and on a GPU transformers then compiles
    the decoding step (``torch.compile``; ~3x the dynamic cache's tokens/s at batch 64 on an
    H200, docs/benchmarks.md); ``"dynamic"`` grows the cache as it goes; ``"auto"`` (default) is
    static on a GPU for a model that compiles whole (``_can_compile_fullgraph``), else dynamic
    (on the CPU the compile is not made and the static cache only costs memory). Both give the
    same tokens under greedy decoding (tests/test_generation.py). ``batch_size`` splits a long list
    of prompts into chunks (``None``: one batch). The model is put in eval mode during
    generation and its previous mode restored.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        cache: CacheKind = "auto",
        batch_size: int | None = None,
    ) -> None:
        if cache not in CACHE_KINDS:
            raise ValueError(f"cache must be one of {CACHE_KINDS}, got {cache!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.cache = cache
        self.batch_size = batch_size
        self.eos_ids = stop_tokens(model, tokenizer)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def cache_implementation(self) -> Literal["static", "dynamic"]:
        """The KV cache ``generate`` uses: ``cache`` with ``"auto"`` resolved (class docstring)."""
        if self.cache != "auto":
            return self.cache
        on_gpu = self.device.type in ("cuda", "xpu")
        return "static" if on_gpu and getattr(self.model, "_can_compile_fullgraph", False) else "dynamic"

    def _generate_batch(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, top_p: float) -> list[list[int]]:
        ids, mask = left_pad(prompts, self.tokenizer.pad_token_id, self.device)
        sampling: dict[str, Any] = (
            dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
            if temperature > 0
            else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        )
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            num_beams=1,
            cache_implementation=self.cache_implementation if self.cache_implementation == "static" else None,
            **sampling,
        )
        return [cut_at_eos(row, self.eos_ids) for row in out[:, ids.shape[1] :].tolist()]

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[int]]:
        """See ``Sampler.generate``."""
        check_sampling(max_new_tokens, temperature, top_p)
        step = self.batch_size or len(prompts)
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                return [
                    response
                    for start in range(0, len(prompts), step)
                    for response in self._generate_batch(prompts[start : start + step], max_new_tokens, temperature, top_p)
                ]
        finally:
            self.model.train(was_training)


class VLLMSampler:
    """Sampling with vLLM (``pip install aihf[vllm]``), for large models on GPUs.

    vLLM loads the weights itself from ``model_path`` (a ``save_pretrained`` directory with
    safetensors). Inside a training loop, ``colocated`` builds the engine in the training
    process (each process its own, as trl's colocate mode does) and ``load_weights`` pushes
    the policy's current weights into it after an update, so no save-and-reload is needed.
    Extra keyword arguments go to ``vllm.LLM`` (e.g. ``gpu_memory_utilization``).
    """

    def __init__(self, model_path: str, dtype: str = "bfloat16", seed: int = 0, **llm_kwargs: Any) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ImportError("VLLMSampler needs vLLM: pip install aihf[vllm]")
        import vllm

        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model_path), dtype=dtype, seed=seed, trust_remote_code=False, **llm_kwargs)
        eos = self.llm.get_tokenizer().eos_token_id
        self.eos_ids = {int(eos)} if eos is not None else set()

    @classmethod
    def colocated(cls, model_path: str, process_index: int, local_process_index: int, num_processes: int,
                  gpu_memory_utilization: float, dtype: str = "bfloat16") -> "VLLMSampler":
        """An engine in this training process (vLLM's ``external_launcher`` executor, one per
        process, seeded by the process index), from ``model_path`` (the policy's checkpoint:
        its weights are replaced by ``load_weights`` before the first sample). Sets the
        torch.distributed variables vLLM reads when the launcher has not (one process)."""
        os.environ.setdefault("RANK", str(process_index))
        os.environ.setdefault("LOCAL_RANK", str(local_process_index))
        os.environ.setdefault("WORLD_SIZE", str(num_processes))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        return cls(model_path, dtype=dtype, seed=process_index, gpu_memory_utilization=gpu_memory_utilization,
                   distributed_executor_backend="external_launcher", max_num_batched_tokens=4096)

    def load_weights(self, model: Any) -> None:
        """Copy ``model``'s current parameters (transformers names) into the engine's model, then
        drop the prefix cache computed with the old ones (trl's colocate weight sync)."""
        try:
            engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError as err:
            raise RuntimeError(
                f"vLLM {getattr(self._vllm, '__version__', '?')} does not expose its model at "
                "llm_engine.model_executor.driver_worker.model_runner.model (where trl's colocate mode "
                "pushes weights): use a vLLM version that trl supports, or method.sampler=hf"
            ) from err
        engine_model.load_weights((name, param.data) for name, param in model.named_parameters())
        self.llm.reset_prefix_cache()

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[int]]:
        """See ``Sampler.generate``; prompt i is drawn with vLLM's per-request seed ``seed + i``."""
        check_sampling(max_new_tokens, temperature, top_p)
        params = [
            self._vllm.SamplingParams(
                max_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                top_k=-1,
                seed=None if seed is None else seed + i,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        return [cut_at_eos(out.outputs[0].token_ids, self.eos_ids) for out in outputs]

