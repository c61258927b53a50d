"""Log-probs from the last hidden states without the full-vocabulary logits
(``model.logprob_chunk``, ``objective.selected_token_logprobs``): the same values and
gradients as the logits path, padded or packed, a model that changes its logits after the
output layer is refused, and every method trains the same either way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_lm_engine import loop, make_method, train_config
from test_packing import _records_of_many_lengths

from aihf import objective
from aihf.config import ConfigError
from aihf.lm.models import check_chunked_logprobs, hidden_states_as_logits, output_layer
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.trainer import Trainer


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_selected_positions_give_the_logits_paths_log_probs_and_gradients(chunk):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(11, generator=generator, dtype=torch.float64, requires_grad=True)
    input_ids = torch.randint(0, 11, (3, 7), generator=generator)
    selected = torch.rand(3, 6, generator=generator) < 0.5
    weights_of_terms = torch.randn(3, 6, generator=generator, dtype=torch.float64)

    full = objective.token_logprobs(F.linear(hidden, weight, bias), input_ids)
    expected = torch.where(selected, full, torch.zeros_like(full))
    expected_grads = torch.autograd.grad((expected * weights_of_terms).sum(), (hidden, weight, bias))
    positions = selected.reshape(-1).nonzero().squeeze(1)
    got = objective.selected_token_logprobs(hidden, weight, bias, input_ids, positions, chunk)
    grads = torch.autograd.grad((got * weights_of_terms).sum(), (hidden, weight, bias))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_no_selected_position_gives_zeros_and_bad_shapes_are_refused():
    hidden, weight = torch.randn(2, 4, 3), torch.randn(6, 3)
    ids = torch.zeros(2, 4, dtype=torch.long)
    none = torch.zeros(0, dtype=torch.long)
    assert torch.equal(objective.selected_token_logprobs(hidden, weight, None, ids, none, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shape mismatch"):  # a boolean mask is not an index
        objective.selected_token_logprobs(hidden, weight, None, ids, torch.zeros(2, 3, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        objective.selected_token_logprobs(hidden, weight, None, ids[:, :3], none, 2)


class _CappedLogits(torch.nn.Module):
    """A causal LM that soft-caps its logits after the output layer (Gemma 2's
    ``final_logit_softcapping``), so its hidden states with the output layer alone do not give
    its log-probs. (A plain scale commutes with the output layer and is reproduced.)"""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        out.logits = torch.tanh(out.logits)
        return out


def test_a_model_that_changes_its_logits_after_the_output_layer_is_refused():
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer)
    assert check_chunked_logprobs(model, len(tokenizer), chunk=3) <= 1e-5
    with pytest.raises(ConfigError, match="model.logprob_chunk: _CappedLogits's log-probs"):
        check_chunked_logprobs(_CappedLogits(model), len(tokenizer), chunk=3)
    head = output_layer(model)
    with hidden_states_as_logits(model):
        pass
    assert "forward" not in vars(head)  # the output layer is itself again


@pytest.mark.parametrize("name", ["dpo", "aihf-dpo", "self-play-aihf", "aihf"])
@pytest.mark.parametrize("padding_free", [False, True])
def test_every_method_trains_the_same_from_hidden_states(tmp_path, name, padding_free):
    """Three optimizer steps from the same start on records of many lengths: the losses agree,
    from the logits or from the hidden states 3 positions at a time. (The weights after Adam
    steps are not compared: Adam turns float32 round-off in near-zero gradients into changes
    of the order of the learning rate; the gradients are compared in the test below.)"""
    runs = []
    for chunk in (None, 3):
        method = make_method(name, records=_records_of_many_lengths())
        method.padding_free, method.logprob_chunk = padding_free, chunk
        runs.append([h["loss"] for h in Trainer(method, loop(tmp_path / str(chunk), max_steps=3)).fit().history])
    assert runs[1] == pytest.approx(runs[0], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("architecture", ["gpt-neox", "llama"])
@pytest.mark.parametrize("padding_free", [False, True])
def test_a_methods_log_probs_and_their_gradients_equal_the_logits_ones(architecture, padding_free):
    from accelerate import Accelerator
    from test_packing import SEQUENCES, _llama

    tokenizer = tiny_tokenizer()
    model = (tiny_causal_lm(tokenizer) if architecture == "gpt-neox" else _llama()).double()  # no float32 round-off
    method = make_method("dpo", tokenizer, tiny_causal_lm(tokenizer))
    method.bind(Accelerator(cpu=True))
    method.padding_free = padding_free
    results = []
    for chunk in (None, 2):
        method.logprob_chunk = chunk
        model.zero_grad()
        logps, count, _ = method.logps(model, SEQUENCES)
        (logps * torch.arange(1.0, 6.0)).sum().backward()  # a different weight per sequence
        results.append((logps.detach(), count, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (full, full_count, full_grads), (chunked, chunked_count, chunked_grads) = results
    torch.testing.assert_close(chunked, full, rtol=1e-10, atol=1e-10)
    assert torch.equal(chunked_count, full_count)
    for name, grad in full_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-8, atol=1e-10, msg=name)


def test_the_training_config_turns_chunked_log_probs_on_after_the_check(tmp_path, caplog):
    import logging

    from aihf.lm.train import TrainConfig, build_method

    config = train_config(tmp_path, logprob_chunk=8)
    with caplog.at_level(logging.INFO, logger="aihf.lm.train"):
        method, _ = build_method("dpo", config)
    assert method.logprob_chunk == 8 and "dpo: log-probs from hidden states, 8 response tokens at a time" in caplog.text
    assert build_method("dpo", TrainConfig(data=config.data))[0].logprob_chunk is None


def test_a_lora_policy_and_its_adapter_disabled_reference_score_from_hidden_states():
    """peft keeps the output layer a plain linear layer (adapters on the other layers), reached
    through the peft model and through the reference that switches the adapters off."""
    from accelerate import Accelerator
    from test_packing import SEQUENCES

    from aihf.lm.models import AdapterDisabledReference, LoraSettings, apply_lora

    tokenizer = tiny_tokenizer()
    policy = apply_lora(tiny_causal_lm(tokenizer).double(), LoraSettings(r=2, dropout=0.0))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()  # adapters away from zero, so policy and reference differ
    method = make_method("dpo", tokenizer, tiny_causal_lm(tokenizer))
    method.bind(Accelerator(cpu=True))
    for model in (policy, AdapterDisabledReference(policy)):
        method.logprob_chunk = None
        full = method.logps(model, SEQUENCES)[0].detach()
        method.logprob_chunk = 2
        torch.testing.assert_close(method.logps(model, SEQUENCES)[0].detach(), full, rtol=1e-10, atol=1e-10)
    method.logprob_chunk = 2
    assert not torch.allclose(method.logps(policy, SEQUENCES)[0], method.logps(AdapterDisabledReference(policy), SEQUENCES)[0])


@pytest.mark.parametrize("sharding", ["fsdp", "zero3"])
def test_sharded_weights_refuse_chunked_log_probs(sharding):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    kind = DistributedType.FSDP if sharding == "fsdp" else DistributedType.DEEPSPEED
    plugin = SimpleNamespace(zero_stage=3) if sharding == "zero3" else None
    accelerator = SimpleNamespace(distributed_type=kind, state=SimpleNamespace(deepspeed_plugin=plugin))
    method = make_method("dpo")
    method.bind(accelerator)  # without the option: fine
    method.logprob_chunk = 4
    with pytest.raises(ConfigError, match="FSDP and ZeRO-3 shard"):
        method.bind(accelerator)
