"""Responses of a saved policy to text prompts, as token ids (for log-probs) and text (for scoring).

Prompts are tokenised as ``aihf.lm.batching.Encoder`` tokenises a plain-text prompt (the
tokenizer's own special tokens, the last ``max_prompt_length`` tokens kept), so a response
sampled here is scored under the same conditioning the methods train with. Sampling is
from the full distribution at temperature 1 (``aihf.lm.generation``), so the samples also
serve the KL estimate of :func:`aihf.eval.metrics.kl_to_reference`.

Each answer records whether it *finished* (its ids end with an eos id: the model stopped
before ``max_new_tokens``) and whether its ids *round-trip*: whether the decoded text,
re-encoded as the training data encodes a response (``tokenizer(text,
add_special_tokens=False)``, plus eos when finished), gives back the sampled ids.
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from aihf.lm.batching import Sequence as TokenSequence
from aihf.lm.generation import HFSampler
from aihf.runtime import mix_seeds


@dataclass(frozen=True)
class Generations:
    """Per prompt: the (prompt ids, response ids) sample, the response's decoded text, whether
    it finished (ends with eos) and whether its text re-encodes to its ids (see the module docstring)."""

    prompts: list[str]
    sequences: list[TokenSequence]
    responses: list[str]
    finished: list[bool]
    round_trips: list[bool]

    def texts(self) -> list[str]:
        """Prompt + response, the text the gold reward and the judge score."""
        return [prompt + response for prompt, response in zip(self.prompts, self.responses)]


def generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, max_prompt_length: int, seed: int, batch_size: int,
    description: str = "sampling",
) -> Generations:
    """One response y ~ model(.|x) per prompt, reproducible from ``seed`` (batch b draws from
    the seed mixed with b), with a progress bar named ``description``."""
    prompt_ids = [list(tokenizer(p).input_ids)[-max_prompt_length:] for p in prompts]
    sampler = HFSampler(model, tokenizer)
    responses: list[list[int]] = []
    for start in tqdm(range(0, len(prompt_ids), batch_size), desc=description, unit="batch", leave=False):
        batch = prompt_ids[start : start + batch_size]
        seed_b = mix_seeds(seed, start // batch_size)
        responses += sampler.generate(batch, max_new_tokens, temperature=1.0, seed=seed_b)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    finished = [bool(ids) and ids[-1] in sampler.eos_ids for ids in responses]
    round_trips = [
        list(tokenizer(text, add_special_tokens=False).input_ids) == (ids[:-1] if done else ids)
        for text, ids, done in zip(texts, responses, finished)
    ]
    return Generations(list(prompts), list(zip(prompt_ids, responses)), texts, finished, round_trips)
