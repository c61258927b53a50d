"""A decoding loop of our own over transformers' static KV cache: one compiled step per token
(the model's forward on the last token and the draw of the next), with no host
synchronisation between steps.

transformers' ``generate`` with ``cache_implementation="static"`` compiles the forward, but
each token still passes through its Python loop (input preparation, logits processors,
stopping criteria that read a device flag back to the host). Here the loop is a replay of one
compiled function per token; the host learns which rows have ended only every
``check_every`` steps, and the responses are cut at their first eos afterwards
(``generation.cut_at_eos``), so a response is the same whether or not other rows ran longer.

The draw: Gumbel-max. For logits l over the vocabulary at temperature tau,
argmax_v (l_v / tau + g_v) with g_v = -log(-log u_v), u_v ~ U(0, 1) independent, is a draw
from softmax(l / tau) (Gumbel 1954; Maddison, Tarlow and Minka 2014, "A* sampling").
u is not taken from a random generator: it is a hash of (seed, prompt index, token index,
vocabulary index) (splitmix64's finaliser, Steele, Lea and Flood 2014), so the draw is a
pure function of its inputs: the same tokens whatever the batch size or device, and nothing
in the compiled step holds generator state. Nucleus ``top_p``: tokens outside the smallest
set of most probable tokens whose probability reaches ``top_p`` get logit -inf first (as
transformers' TopPLogitsWarper, keeping at least one token). ``temperature=0``: argmax.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch

from aihf.lm.generation import check_sampling, cut_at_eos, left_pad, stop_tokens

_MIX = (0xBF58476D1CE4E5B9 - (1 << 64), 0x94D049BB133111EB - (1 << 64))  # splitmix64's multipliers, as int64
_STRIDES = tuple(c - (1 << 64) for c in (0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7,
                                          0xA0761D6478BD642F))  # odd 64-bit constants (golden ratio, wyhash's)


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 values: torch's >> is arithmetic."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def hashed_uniform(seed: torch.Tensor, rows: torch.Tensor, step: torch.Tensor, vocab: int) -> torch.Tensor:
    """u[b, v] in (0, 1), float64, a hash of (seed, rows[b], step, v): splitmix64's finaliser
    (a bijection of 64-bit words) on the sum of the four times odd 64-bit constants, the top
    53 bits as the mantissa, shifted by half a unit so that neither 0 nor 1 occurs."""
    v = torch.arange(vocab, device=rows.device, dtype=torch.int64)
    x = seed * _STRIDES[0] + rows[:, None] * _STRIDES[1] + step * _STRIDES[2] + v[None, :] * _STRIDES[3]
    x = (x ^ _shift_right(x, 30)) * _MIX[0]
    x = (x ^ _shift_right(x, 27)) * _MIX[1]
    x = x ^ _shift_right(x, 31)
    return (_shift_right(x, 11).to(torch.float64) + 0.5) * 2.0**-53


def choose_tokens(logits: torch.Tensor, temperature: float, top_p: float, seed: torch.Tensor, rows: torch.Tensor,
                  step: torch.Tensor) -> torch.Tensor:
    """The next token per row of ``logits`` [B, V] (module docstring: Gumbel-max on hashed
    uniforms, nucleus first when ``top_p < 1``, argmax when ``temperature == 0``)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits.float() / temperature
    if top_p < 1:
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # mass before each token; the first always stays
        scaled = scaled.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    gumbel = -torch.log(-torch.log(hashed_uniform(seed, rows, step, logits.shape[-1])))
    return (scaled.double() + gumbel).argmax(dim=-1)


class StaticLoopSampler:
    """Batched sampling with our decoding loop over a static KV cache (module docstring); the
    ``Sampler`` protocol of ``aihf.lm.generation``.

    ``compile``: the step under ``torch.compile(mode="reduce-overhead")`` (CUDA graphs on a
    GPU); ``None`` (default) compiles on a GPU and not on the CPU, where it does not pay.
    ``batch_size`` splits a long list of prompts into chunks (``None``: one batch); the tokens
    do not depend on it. ``check_every``: decoding stops early once every row has produced an
    eos, looked at every that many tokens (one host synchronisation each time).
    ``width_multiple``: prompts are left-padded to a multiple of this width, so that the
    shapes the step is compiled for (batch, prompt width + ``max_new_tokens``) repeat across
    calls; the KV cache of the last shape is kept and reset, not reallocated. A model with a
    sliding-window or otherwise non-static cache is refused by transformers' StaticCache.
    """

    def __init__(self, model: Any, tokenizer: Any, compile: bool | None = None, batch_size: int | None = None,
                 check_every: int = 32, width_multiple: int = 64) -> None:
        if check_every < 1 or width_multiple < 1:
            raise ValueError(f"check_every and width_multiple must be >= 1, got {check_every} and {width_multiple}")
        self.model, self.tokenizer, self.batch_size, self.check_every = model, tokenizer, batch_size, check_every
        self.width_multiple = width_multiple
        self.eos_ids = stop_tokens(model, tokenizer)
        self.compile = self.device.type == "cuda" if compile is None else compile
        # transformers renamed forward's past_key_values to cache (5.2x); the GPU image's 5.17 knows only the old name
        self._cache_keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self._steps: dict[tuple[float, float], Any] = {}  # (temperature, top_p) -> the step function
        self._cache: tuple[tuple[int, int], Any] | None = None  # ((batch, cache length), StaticCache)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _step(self, temperature: float, top_p: float):
        """The per-token step for these sampling settings: forward on the last tokens, then the
        draw; compiled once per setting when ``compile``."""
        key = (temperature, top_p)
        if key not in self._steps:
            def step(tokens, positions, cache_position, mask, cache, seed, rows, index):
                logits = self.model(input_ids=tokens, position_ids=positions, attention_mask=mask,
                                    cache_position=cache_position, use_cache=True, **{self._cache_keyword: cache}).logits
                return choose_tokens(logits[:, -1, :], temperature, top_p, seed, rows, index)

            self._steps[key] = torch.compile(step, mode="reduce-overhead", dynamic=False) if self.compile else step
        return self._steps[key]

    def _generate_batch(self, prompts: Sequence[Sequence[int]], first_row: int, max_new_tokens: int,
                        temperature: float, top_p: float, seed: int) -> list[list[int]]:
        from transformers import StaticCache

        device = self.device
        ids, prompt_mask = left_pad(prompts, self.tokenizer.pad_token_id, device)
        extra = -ids.shape[1] % self.width_multiple  # more left padding: prompt widths of a run share a few shapes
        ids = torch.nn.functional.pad(ids, (extra, 0), value=self.tokenizer.pad_token_id)
        prompt_mask = torch.nn.functional.pad(prompt_mask, (extra, 0), value=0)
        batch, width = ids.shape
        # ones over the new tokens: the causal mask that cache_position gives hides those not yet written
        mask = torch.cat([prompt_mask, prompt_mask.new_ones(batch, max_new_tokens)], dim=1)
        if self._cache is None or self._cache[0] != (batch, width + max_new_tokens):
            # one cache, kept while the shape holds: the compiled step's CUDA graphs read it at fixed addresses
            self._cache = ((batch, width + max_new_tokens),
                           StaticCache(config=self.model.config, max_cache_len=width + max_new_tokens))
        else:
            self._cache[1].reset()
        cache = self._cache[1]
        positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
        seed_t = torch.tensor(seed, dtype=torch.int64, device=device)
        rows = torch.arange(first_row, first_row + batch, dtype=torch.int64, device=device)
        logits = self.model(input_ids=ids, position_ids=positions, attention_mask=mask, use_cache=True, logits_to_keep=1,
                            cache_position=torch.arange(width, device=device), **{self._cache_keyword: cache}).logits
        token = choose_tokens(logits[:, -1, :], temperature, top_p, seed_t, rows, seed_t.new_zeros(()))
        out = torch.empty(batch, max_new_tokens, dtype=torch.long, device=device)
        out[:, 0] = token
        eos = torch.tensor(sorted(self.eos_ids), device=device)
        next_position = positions[:, -1:] + 1
        step = self._step(temperature, top_p)
        # every step's cache position and token index made on the device at once: a tensor built from a Python
        # number inside the loop would be a host-to-device copy, which waits for the device each time
        cache_positions = torch.arange(width, width + max_new_tokens, device=device)
        indices = torch.arange(max_new_tokens, dtype=torch.int64, device=device)
        produced = 1
        for index in range(1, max_new_tokens):
            if index % self.check_every == 0 and bool(torch.isin(out[:, :index], eos).any(dim=1).all()):
                break
            token = step(out[:, index - 1 : index].clone(), next_position + (index - 1),
                         cache_positions[index - 1 : index], mask, cache, seed_t, rows, indices[index])
            out[:, index] = token
            produced = index + 1
        return [cut_at_eos(row, self.eos_ids) for row in out[:, :produced].tolist()]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int | None = None) -> list[list[int]]:
        """See ``aihf.lm.generation.Sampler.generate``; ``seed=None`` draws the hash's seed from
        torch's global generator (so ``torch.manual_seed`` fixes the draw too)."""
        check_sampling(max_new_tokens, temperature, top_p)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        chunk = self.batch_size or len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            return [response for start in range(0, len(prompts), chunk)
                    for response in self._generate_batch(prompts[start : start + chunk], start, max_new_tokens,
                                                         temperature, top_p, seed)]
        finally:
            self.model.train(was_training)
