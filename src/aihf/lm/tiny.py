"""Small, deterministic, hub-free language models built locally: test fixtures, CPU
benchmarks, and the from-scratch base model of the IMDb quick start.

``train_tokenizer(lines, vocab_size)`` trains a byte-level BPE tokenizer on any corpus.
``tiny_tokenizer()`` trains a byte-level BPE tokenizer locally (``tokenizers``, no
download) on the small English corpus below: the common words of the synthetic tasks
("the movie was great", "terrible", chat turns) become one token each (with their leading
space), and any other text still encodes, byte by byte, without an unknown token.
``tiny_causal_lm(tokenizer)`` is a randomly initialised GPT-NeoX (2 layers, hidden 64)
that trains on 8 x 32 tokens in a few milliseconds on one CPU core.

Special tokens: ``<|pad|>`` (pad, distinct from eos so that padding bugs show),
``<|endoftext|>`` (bos), ``<|im_end|>`` (eos, as in SmolLM2's ChatML) and
``<|im_start|>``. The tokenizer adds no special tokens by itself.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

PAD, BOS, EOS, IM_START = "<|pad|>", "<|endoftext|>", "<|im_end|>", "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START]
VOCAB_SIZE = 2048

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = """
the a an and or but if then so because of to in on at by for with from about as into over
after before under between through during without again very really quite too not no yes
i you he she it we they me him her us them my your his its our their this that these those
is are was were be been being am have has had do does did will would can could should may
might must shall what which who whom whose when where why how all any both each few more
most other some such only own same than just also even still here there now never always
movie film story plot acting actor actors actress cast director scene scenes character
characters ending script music score show series book review reviews watch watched watching
great good excellent wonderful amazing brilliant fantastic beautiful perfect best love loved
enjoyed fun funny moving touching charming delightful superb masterpiece favorite fine nice
bad terrible awful horrible boring dull worst poor weak waste hated stupid silly mess
disappointing disappointed annoying slow predictable pointless mediocre bland forgettable
positive negative happy sad angry good bad better worse okay average decent
time year years day days people man woman men women child children life world way thing
things part place case point work question answer problem number fact help hand eye
say said make made go went know knew think thought take took see saw come came want
look looked use used find found give gave tell told feel felt try tried leave left call
ask asked need seem keep let begin began show showed hear heard play played run ran
one two three four five first second last new old long little big small high low large
right left next early young important different public able bad own whole sure free
hello hi thanks thank please sorry welcome user assistant system question answer help
explain write summary summarize translate list step steps example reason because
water food house home city country school family friend friends money job car dog cat
""".split()

_SENTENCES = """
the movie was great . the movie was terrible . the film was wonderful and the acting was superb .
the film was boring and the plot was predictable . i loved this movie . i hated this movie .
this is one of the best films i have ever seen . this is the worst movie i have ever seen .
the story is moving and the music is beautiful . the script is a mess and the ending is awful .
what a waste of time . what a delightful surprise . a masterpiece . a disappointing film .
user : can you help me ? assistant : yes , i can help you . thank you ! you are welcome .
please explain how this works . here is a short answer , step by step .
""".split("\n")


def _corpus() -> list[str]:
    """Lines that make every word of ``_WORDS`` frequent, with and without a leading space."""
    words = sorted(set(_WORDS))
    lines = [line.strip() for line in _SENTENCES if line.strip()]
    for _ in range(4):
        lines += [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
        lines += [" ".join(w.capitalize() for w in words[i : i + 12]) for i in range(0, len(words), 12)]
        lines += [w + "." for w in words] + [w.capitalize() + " " + w for w in words]
    return lines


def _bpe_json(lines: Iterable[str], vocab_size: int) -> str:
    """A byte-level BPE with ``SPECIAL_TOKENS`` first, trained on ``lines``, as JSON."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    return tok.to_str()


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train the tiny BPE once per process (about 0.1 s) and keep its JSON serialisation."""
    return _bpe_json(_corpus(), VOCAB_SIZE)


def _fast_tokenizer(tokenizer_json: str, padding_side: str) -> PreTrainedTokenizerFast:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        padding_side=padding_side,
        model_max_length=512,
    )


def tiny_tokenizer(padding_side: Literal["left", "right"] = "right") -> PreTrainedTokenizerFast:
    """A fresh, deterministic tokenizer (pad/bos/eos set, ChatML-like chat template).

    Each call returns a new object (callers may change its padding side freely); the BPE
    training itself is cached per process.
    """
    return _fast_tokenizer(_tokenizer_json(), padding_side)


def train_tokenizer(
    lines: Iterable[str], vocab_size: int, padding_side: Literal["left", "right"] = "right"
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``lines``: the special tokens, padding and chat
    template of :func:`tiny_tokenizer`, ``vocab_size`` entries (deterministic for the same lines)."""
    if vocab_size <= len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size must exceed the 256 bytes and {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    return _fast_tokenizer(_bpe_json(lines, vocab_size), padding_side)


def tiny_causal_lm(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides: Any) -> GPTNeoXForCausalLM:
    """A random GPT-NeoX for ``tokenizer``: identical weights for identical ``seed``.

    Defaults: hidden 64, 2 layers, 4 heads, MLP 256, 512 positions, no dropout, untied
    embeddings; ``overrides`` replace any ``GPTNeoXConfig`` field. Returned in eval mode,
    like ``from_pretrained``. The global torch RNG is left untouched.
    """
    fields: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    fields.update(overrides)
    config = GPTNeoXConfig(**fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(config)
    return model.eval()
