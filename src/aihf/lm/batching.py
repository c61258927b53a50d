"""Records -> token ids -> padded tensors with loss masks.

A sequence is a pair ``(prompt_ids, response_ids)``. The loss mask marks the response
tokens only (prompt and padding are 0), which is what ``objective.sequence_logprobs``
needs to return log pi(y|x) (docs/method.md sections 2 and 4).

* Plain text: the prompt is tokenised with the tokenizer's own special tokens (a BOS if
  it adds one), the response without, and the EOS token is appended to a *finished*
  response so that the policy learns to stop.
* Chat: prompt messages go through ``tokenizer.apply_chat_template(...,
  add_generation_prompt=True)``; a finished response is what the template adds after that
  prefix when the assistant turn is appended (so it includes the template's end-of-turn
  tokens).
* An unfinished response (``Demonstration.finished`` / ``Preference.chosen_finished`` /
  ``rejected_finished`` false: cut at a length cap) gets no EOS and no end-of-turn: it is
  the text tokenised without special tokens, plain or chat alike, which is what a model
  cut off after the prompt (or the generation prompt) would have produced. So a
  demonstration or preference response cut at ``max_new_tokens`` looks like a policy
  sample cut there, and the last token does not tell them apart. (A chat template that
  trims or rewrites the content renders a finished response differently from this.)
* Prompt records (the RL prompt set) are encoded to their prompt ids alone, as the
  prompt of a demonstration is.
* Truncation: a prompt longer than ``max_prompt_length`` keeps its *last* tokens (the
  part next to the response); a sequence longer than ``max_length`` loses the end of its
  response. Every truncation is counted in :class:`TruncationStats` (a prompt record
  counts as a sequence with no response) and reported by the trainer; nothing is cut
  silently.

Preference pairs are laid out as ``[chosen_1..chosen_B, rejected_1..rejected_B]`` so one
forward pass scores both halves (:func:`collate`), and the trainer concatenates every
sequence a step needs (demonstrations, samples, pairs) into one batch the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from aihf.data import Demonstration, Preference, PromptRecord

Sequence = tuple[list[int], list[int]]  # (prompt ids, response ids)


@dataclass
class TruncationStats:
    """How many prompts and responses were cut, out of how many sequences encoded."""

    sequences: int = 0
    prompts_truncated: int = 0
    responses_truncated: int = 0

    def summary(self) -> str:
        return (
            f"{self.prompts_truncated} of {self.sequences} prompts and "
            f"{self.responses_truncated} of {self.sequences} responses truncated"
        )


@dataclass
class Encoder:
    """Tokenises prompts and responses for one tokenizer and one pair of length limits."""

    tokenizer: object
    max_length: int = 512
    max_prompt_length: int = 256
    stats: TruncationStats = field(default_factory=TruncationStats)

    def __post_init__(self) -> None:
        if not 0 < self.max_prompt_length < self.max_length:
            raise ValueError(
                f"need 0 < max_prompt_length < max_length, got {self.max_prompt_length} and {self.max_length}"
            )
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token first")

    def prompt(self, record: Demonstration | Preference | PromptRecord) -> list[int]:
        """Token ids of the prompt (chat template with the generation prompt for chat records)."""
        if record.is_chat:
            ids = self.tokenizer.apply_chat_template(
                record.prompt_messages(), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        else:
            ids = self.tokenizer(record.prompt).input_ids
        return list(ids)

    def response(
        self, record: Demonstration | Preference, prompt_ids: list[int], text: str, finished: bool = True
    ) -> list[int]:
        """Token ids of ``text`` as the answer to ``record``'s prompt: EOS or end-of-turn
        included if ``finished``, neither if not (the text alone, without special tokens)."""
        if not finished:
            return list(self.tokenizer(text, add_special_tokens=False).input_ids)
        if record.is_chat:
            full = list(
                self.tokenizer.apply_chat_template(
                    record.conversation(text), tokenize=True, return_dict=False
                )
            )
            if full[: len(prompt_ids)] != prompt_ids:
                raise ValueError(
                    "the chat template does not render the prompt as a prefix of the conversation; "
                    "it cannot be used to mask the prompt"
                )
            return full[len(prompt_ids) :]
        ids = list(self.tokenizer(text, add_special_tokens=False).input_ids)
        eos = self.tokenizer.eos_token_id
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        return ids

    def fit(self, prompt_ids: list[int], response_ids: list[int]) -> Sequence:
        """Apply the length limits to one sequence, counting what was cut."""
        self.stats.sequences += 1
        if len(prompt_ids) > self.max_prompt_length:
            prompt_ids = prompt_ids[-self.max_prompt_length :]
            self.stats.prompts_truncated += 1
        room = self.max_length - len(prompt_ids)
        if len(response_ids) > room:
            response_ids = response_ids[:room]
            self.stats.responses_truncated += 1
        return prompt_ids, response_ids

    def demonstration(self, record: Demonstration) -> Sequence:
        prompt = self.prompt(record)
        return self.fit(prompt, self.response(record, prompt, record.response, record.finished))

    def preference(self, record: Preference) -> tuple[Sequence, Sequence]:
        """(prompt + chosen, prompt + rejected), each within the limits and with its own finished flag."""
        prompt = self.prompt(record)
        return (
            self.fit(prompt, self.response(record, prompt, record.chosen, record.chosen_finished)),
            self.fit(prompt, self.response(record, prompt, record.rejected, record.rejected_finished)),
        )

    def prompt_record(self, record: PromptRecord) -> list[int]:
        """The prompt ids of a prompt-only record (to sample on), cut and counted as :meth:`fit` does."""
        return self.fit(self.prompt(record), [])[0]

    def truncate_prompt(self, prompt_ids: list[int]) -> list[int]:
        """A prompt alone (for generation), cut like :meth:`fit` cuts it (not counted again)."""
        return prompt_ids[-self.max_prompt_length :]


def to_device(tensors: tuple[torch.Tensor | None, ...], device: torch.device | str) -> tuple[torch.Tensor | None, ...]:
    """Host-built tensors on ``device`` without making the host wait for a GPU: a plain
    ``.to(device)`` from ordinary (pageable) host memory waits until the device's stream has
    run everything queued before it, so the host could not queue the next kernels meanwhile.
    On a GPU the tensors are staged in pinned memory (torch's caching host allocator keeps each
    alive until its copy has run) and copied with ``non_blocking=True``; elsewhere ``.to``.
    ``None`` (a field a batch was built without) stays ``None``."""
    cuda = torch.device(device).type == "cuda"
    return tuple(None if t is None else t.pin_memory().to(device, non_blocking=True) if cuda and not t.is_cuda
                 else t.to(device) for t in tensors)


@dataclass
class SequenceBatch:
    """Right-padded sequences: ``input_ids``, ``attention_mask`` and ``loss_mask``, each (B, T),
    and, when asked for (``collate(..., scored=True)``: the chunked log-probs), ``scored_index``:
    the positions of ``loss_mask[:, 1:]`` that are 1, as ascending flat indices into the
    (B, T - 1) next-token grid, made on the host with the batch (so a GPU need not be waited for
    to learn how many there are; ``objective.selected_token_logprobs``)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    scored_index: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(*to_device((self.input_ids, self.attention_mask, self.loss_mask, self.scored_index), device))

    def response_positions(self, last: int) -> torch.Tensor:
        """The next-token positions that predict the response tokens of the ``last`` sequences, as
        ascending flat indices into the (B, T - 1) grid (made where the batch is: on the host before ``to``)."""
        rows, width = self.loss_mask.shape[0], self.loss_mask.shape[1] - 1
        return self.loss_mask[rows - last :, 1:].reshape(-1).nonzero().squeeze(1) + (rows - last) * width

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(sequences: list[Sequence], pad_id: int, pad_to_multiple_of: int = 1, scored: bool = False) -> SequenceBatch:
    """Pad ``(prompt, response)`` pairs on the right into one batch.

    ``loss_mask[b, t] = 1`` exactly on the response tokens of row b. Right padding keeps
    the positions of real tokens at 0..n-1 and, under causal attention, leaves their
    logits unchanged by the padding.
    """
    if not sequences:
        raise ValueError("collate needs at least one sequence")
    lengths = [len(p) + len(r) for p, r in sequences]
    width = max(lengths)
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ((prompt, response), n) in enumerate(zip(sequences, lengths)):
        input_ids[row, :n] = torch.tensor(prompt + response, dtype=torch.long)
        attention_mask[row, :n] = 1
        loss_mask[row, len(prompt) : n] = 1
    scored_index = loss_mask[:, 1:].reshape(-1).nonzero().squeeze(1) if scored else None
    return SequenceBatch(input_ids, attention_mask, loss_mask, scored_index)


@dataclass
class PackedBatch:
    """Sequences packed into rows without padding between them (``model.padding_free``).

    ``input_ids`` and ``position_ids`` are (R, W): each row holds whole sequences one after
    another, positions restarting at 0 for each, and filler tokens after a row's last
    sequence (positions continuing it, so they attend only backwards and nothing attends to
    them). A causal LM of transformers' mask utilities keeps the sequences of a row apart
    when it is given ``position_ids`` without an ``attention_mask`` (and no cache).
    ``token_index`` and ``token_mask`` are (B, L - 1) for the B sequences in their given
    order, L the longest: entry t points into the flattened (R, W - 1) grid of next-token
    log-probs at the one that predicts token t + 1 of that sequence, and the mask is the
    padded batch's ``loss_mask[:, 1:]``, so the per-sequence sums are taken in the same
    layout and order as :func:`collate`'s. ``scored_index`` (``pack(..., scored=True)``): the
    next-token positions some sequence's sum reads (its response), as ascending flat indices
    into the (R, W - 1) grid, made on the host (see :class:`SequenceBatch`)."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    token_index: torch.Tensor
    token_mask: torch.Tensor
    scored_index: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PackedBatch:
        return PackedBatch(*to_device(
            (self.input_ids, self.position_ids, self.token_index, self.token_mask, self.scored_index), device))

    def response_positions(self, last: int) -> torch.Tensor:
        """The next-token positions that predict the response tokens of the ``last`` sequences (in their
        given order), as ascending flat indices into the (R, W - 1) grid (see :meth:`SequenceBatch.response_positions`)."""
        tail = slice(self.token_index.shape[0] - last, None)
        return self.token_index[tail][self.token_mask[tail].bool()].sort().values


def pack(sequences: list[Sequence], pad_id: int, scored: bool = False) -> PackedBatch:
    """Pack ``(prompt, response)`` pairs into rows as wide as the longest sequence, first fit
    in decreasing length (fewer rows than :func:`collate`'s one per sequence whenever
    lengths differ; attention then costs W^2 per row instead of per sequence)."""
    if not sequences:
        raise ValueError("pack needs at least one sequence")
    lengths = [len(p) + len(r) for p, r in sequences]
    width = max(*lengths, 2)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(sequences)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= lengths[i]
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    token_index = torch.zeros((len(sequences), width - 1), dtype=torch.long)
    token_mask = torch.zeros((len(sequences), width - 1), dtype=torch.long)
    for r, members in enumerate(rows):
        offset = 0
        for i in members:
            prompt, response = sequences[i]
            n = lengths[i]
            input_ids[r, offset : offset + n] = torch.tensor(prompt + response, dtype=torch.long)
            position_ids[r, offset : offset + n] = torch.arange(n)
            token_index[i, : n - 1] = r * (width - 1) + offset + torch.arange(n - 1)
            token_mask[i, max(len(prompt), 1) - 1 : n - 1] = 1
            offset += n
        position_ids[r, offset:] = torch.arange(offset, width) - offset + (position_ids[r, offset - 1] + 1)
    scored_index = token_index[token_mask.bool()].sort().values if scored else None
    return PackedBatch(input_ids, position_ids, token_index, token_mask, scored_index)
