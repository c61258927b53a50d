"""Padding-free batches (``model.padding_free``): sequences packed into rows give the padded
path's log-probs and gradients, a model that would let packed sequences see each other is
refused, and every method trains the same either way."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from aihf import objective
from aihf.config import ConfigError
from aihf.lm.batching import collate, pack
from aihf.lm.models import check_packing, use_attention
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.trainer import Trainer
from test_lm_engine import loop, make_method, train_config

# (prompt, response) token ids of different lengths; one prompt of a single token
SEQUENCES = [([5, 6, 7], [8, 9]), ([10], [11, 12]), ([13, 14], [15]), ([16, 17, 18, 19], [20, 21]), ([22, 23], [24, 25])]


def test_sequences_are_packed_first_fit_into_fewer_rows_with_the_padded_mask():
    packed = pack(SEQUENCES, pad_id=0)
    padded = collate(SEQUENCES, pad_id=0)
    assert packed.input_ids.shape == (4, 6)  # lengths 5, 3, 3, 6, 4, first fit decreasing: [6], [5], [4], [3, 3]
    assert torch.equal(packed.token_mask, padded.loss_mask[:, 1:])
    real = sorted(int(t) for t in packed.input_ids.flatten() if t != 0)
    assert real == sorted(t for p, r in SEQUENCES for t in p + r)  # every token once, nothing else but filler
    # each sequence's positions restart at 0 where it starts in its row
    width = packed.input_ids.shape[1]
    for i, (prompt, response) in enumerate(SEQUENCES):
        row, offset = divmod(int(packed.token_index[i, 0]), width - 1)
        n = len(prompt) + len(response)
        assert packed.position_ids[row, offset : offset + n].tolist() == list(range(n))
        assert packed.input_ids[row, offset : offset + n].tolist() == prompt + response
    # each sequence's next-token entries point at its own tokens: token t + 1 follows the logit at t
    flat_targets = packed.input_ids[:, 1:].reshape(-1)
    for i, (prompt, response) in enumerate(SEQUENCES):
        n = len(prompt) + len(response)
        assert flat_targets[packed.token_index[i, : n - 1]].tolist() == (prompt + response)[1:]
        assert int(packed.token_index[i, : n - 1].max()) < packed.input_ids.shape[0] * (width - 1)


def test_the_last_sequences_response_positions_in_either_layout():
    """``response_positions(k)``: the next-token positions that predict the last k sequences' response
    tokens, ascending; in a padded batch the response entries of its last k rows, in a packed one the
    grid entries of their ``token_index`` (WPO's weights read them, ``ImplicitRewardMethod.logps``)."""
    padded, packed = collate(SEQUENCES, pad_id=0), pack(SEQUENCES, pad_id=0)
    for k in range(len(SEQUENCES) + 1):
        rows = torch.zeros_like(padded.loss_mask[:, 1:])
        rows[len(SEQUENCES) - k:] = padded.loss_mask[len(SEQUENCES) - k:, 1:]
        assert padded.response_positions(k).tolist() == rows.reshape(-1).nonzero().squeeze(1).tolist()
        expected = sorted(int(packed.token_index[i, t]) for i in range(len(SEQUENCES) - k, len(SEQUENCES))
                          for t in range(packed.token_index.shape[1]) if packed.token_mask[i, t])
        assert packed.response_positions(k).tolist() == expected
    assert packed.response_positions(len(SEQUENCES)).tolist() == pack(SEQUENCES, 0, scored=True).scored_index.tolist()
    logits = torch.randn(*padded.input_ids.shape, 11, dtype=torch.float64)
    at = objective.positions_log_sum_sq_probs(logits, padded.input_ids, padded.response_positions(2))
    every = objective.token_log_sum_sq_probs(logits[:, :-1])
    mask = torch.zeros_like(every, dtype=torch.bool)
    mask.view(-1)[padded.response_positions(2)] = True
    torch.testing.assert_close(at, torch.where(mask, every, torch.zeros_like(every)), rtol=0, atol=1e-12)


def _llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("architecture,attention", [("gpt-neox", "sdpa"), ("gpt-neox", "eager"), ("llama", "sdpa")])
def test_packed_logprobs_and_gradients_equal_the_padded_ones(architecture, attention):
    model = tiny_causal_lm(tiny_tokenizer()) if architecture == "gpt-neox" else _llama()
    use_attention(model, attention)
    results = []
    for layout in ("padded", "packed"):
        model.zero_grad()
        if layout == "padded":
            batch = collate(SEQUENCES, pad_id=0)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
            logps = objective.sequence_logprobs(logits, batch.input_ids, batch.loss_mask)
        else:
            batch = pack(SEQUENCES, pad_id=0)
            logits = model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits
            logps = objective.packed_sequence_logprobs(logits, batch.input_ids, batch.token_index, batch.token_mask)
        (logps * torch.arange(1.0, 6.0)).sum().backward()  # a different weight per sequence
        results.append((logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (padded_logps, padded_grads), (packed_logps, packed_grads) = results
    torch.testing.assert_close(packed_logps, padded_logps, rtol=1e-5, atol=1e-5)
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


class _SeesAcrossSequences(torch.nn.Module):
    """A causal LM that drops ``position_ids``: a packed row is then one long sequence."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_a_model_that_lets_packed_sequences_see_each_other_is_refused():
    tokenizer = tiny_tokenizer()
    assert check_packing(tiny_causal_lm(tokenizer), len(tokenizer)) <= 1e-3
    assert check_packing(_llama(), 64) <= 1e-3
    with pytest.raises(ConfigError, match="model.padding_free: _SeesAcrossSequences does not keep sequences"):
        check_packing(_SeesAcrossSequences(tiny_causal_lm(tokenizer)), len(tokenizer))


def _records_of_many_lengths():
    """The synthetic task with prompts of 2-11 tokens and responses of 1-19, so batches pack."""
    from aihf.data import Demonstration, Preference

    records = {}
    for split, subjects in (("train", ["movie", "film", "acting", "story", "music", "plot"]), ("eval", ["scene", "cast"])):
        prompts = [[f"the {s}", f"review: the {s} was", f"review: the {s} was" + " really" * 6][i % 3]
                   for i, s in enumerate(subjects)]
        good = [" great" + " and fun" * (3 * (i % 3)) for i in range(len(subjects))]
        records[split] = ([Demonstration(p, g) for p, g in zip(prompts, good)],
                          [Preference(p, g, " bad" * (1 + i % 2)) for i, (p, g) in enumerate(zip(prompts, good))])
    return ({split: r[0] for split, r in records.items()}, {split: r[1] for split, r in records.items()})


@pytest.mark.parametrize("name", ["dpo", "aihf-dpo", "self-play-aihf", "aihf"])
def test_every_method_trains_the_same_with_padding_free_batches(tmp_path, monkeypatch, name):
    """Three optimizer steps from the same start on records of many lengths: the losses
    agree, padded or packed (the sampling methods draw the same samples; only the forward
    layout differs), and the packed forward passes did hold fewer rows than sequences."""
    import aihf.lm.methods as methods

    rows = []

    def counted_pack(sequences, pad_id, scored=False):
        packed = pack(sequences, pad_id, scored)
        rows.append((len(sequences), packed.input_ids.shape[0]))
        return packed
    monkeypatch.setattr(methods, "pack", counted_pack)
    runs = []
    for layout in ("padded", "packed"):
        method = make_method(name, records=_records_of_many_lengths())
        method.padding_free = layout == "packed"
        runs.append([h["loss"] for h in Trainer(method, loop(tmp_path / layout, max_steps=3)).fit().history])
    assert runs[1] == pytest.approx(runs[0], rel=1e-4, abs=1e-5)
    assert rows and sum(r for _, r in rows) < sum(n for n, _ in rows)


def test_the_training_config_turns_padding_free_on_after_the_check(tmp_path, caplog):
    import logging

    from aihf.lm.train import TrainConfig, build_method

    config = train_config(tmp_path, padding_free=True)
    with caplog.at_level(logging.INFO, logger="aihf.lm.train"):
        method, _ = build_method("aihf-dpo", config)
    assert method.padding_free and "aihf-dpo: padding-free batches" in caplog.text
    assert not build_method("aihf-dpo", TrainConfig(data=config.data))[0].padding_free


def test_the_attention_setting_reaches_the_policy_and_the_reward_body_and_a_bad_one_is_named(tmp_path):
    from aihf.lm.train import build_method

    method, _ = build_method("aihf", train_config(tmp_path, attn_implementation="eager", padding_free=True))
    assert method.models["policy"].config._attn_implementation == "eager"
    assert method.models["reward"].backbone.config._attn_implementation == "eager"
    assert build_method("dpo", train_config(tmp_path))[0].models["policy"].config._attn_implementation == "sdpa"
    with pytest.raises(ConfigError, match="model.attn_implementation='flash-attention'.*not supported"):
        build_method("dpo", train_config(tmp_path, attn_implementation="flash-attention"))
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ConfigError, match="model.attn_implementation='flash_attention_2'.*installed"):
            build_method("dpo", train_config(tmp_path, attn_implementation="flash_attention_2"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for runs on a CPU")
@pytest.mark.parametrize("name, refused", [("aihf", "policy"), ("reward", "reward")])
def test_flex_attention_is_refused_on_a_cpu_before_any_step(tmp_path, name, refused):
    """No flex-attention backward pass, and no compiling decoding kernel, on a CPU (torch 2.13):
    the Trainer names the setting and the model instead of failing at the first backward pass
    or sample."""
    from aihf.lm.train import build_method

    method, _ = build_method(name, train_config(tmp_path, attn_implementation="flex_attention"))
    with pytest.raises(ConfigError, match=f"flex_attention' needs a GPU: the {refused} model"):
        Trainer(method, loop(tmp_path / "run"))


@pytest.mark.slow
def test_flex_attention_keeps_packed_sequences_apart():
    """transformers' flex attention builds a block mask from the packed position ids (its forward
    pass only: on a CPU torch has no flex-attention backward; about 40 s of compilation)."""
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer)
    use_attention(model, "flex_attention")
    assert check_packing(model, len(tokenizer)) <= 1e-3
