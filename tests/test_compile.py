"""``model.compile`` (``models.compile_body``): the policy's transformer body compiled in place
trains exactly as the eager one (with dynamic shapes: every batch has its own length), keeps
its state-dict keys, and a reference copied from it stays frozen. CI traces with the ``eager``
backend (dynamo's graph capture, no code generation: seconds); the ``inductor`` runs, which
compile C++ on a CPU for minutes, are marked slow."""

from __future__ import annotations

import pytest
import torch
from test_lm_engine import loop, make_method, train_config
from test_packing import _records_of_many_lengths

from aihf.config import ConfigError
from aihf.lm.models import compile_body, reference_model
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.train import build_method
from aihf.lm.trainer import Trainer

BACKENDS = ["eager", pytest.param("inductor", marks=pytest.mark.slow)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, scope", [("aihf-dpo", "body"), ("aihf-dpo", "blocks"),
                                         pytest.param("dpo", "body", marks=pytest.mark.slow)])
def test_a_compiled_policy_trains_as_the_eager_one(tmp_path, name, scope, backend):
    runs, keys = [], []
    for compiled in (False, True):
        method, _ = build_method(name, train_config(tmp_path, compile=compiled, compile_backend=backend, compile_scope=scope))
        policy = method.models["policy"]
        body = policy.base_model
        blocks = [getattr(block, "_compiled_call_impl", None) is not None for block in body.layers]
        assert blocks == [compiled and scope == "blocks"] * len(body.layers)
        assert (getattr(body, "_compiled_call_impl", None) is not None) == (compiled and scope == "body")
        keys.append(list(policy.state_dict()))
        runs.append([h["loss"] for h in Trainer(method, loop(tmp_path / f"run-{compiled}", max_steps=3)).fit().history])
    assert keys[1] == keys[0]  # checkpoints of a compiled run load into an eager model and back
    assert runs[1] == pytest.approx(runs[0], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_compiled_policy_gives_the_eager_log_probs_and_gradients_packed_padded_or_chunked(backend):
    """The output layer stays eager, so ``model.logprob_chunk`` still swaps it for the identity."""
    from accelerate import Accelerator
    from test_packing import SEQUENCES

    tokenizer = tiny_tokenizer()
    method = make_method("dpo", tokenizer, records=_records_of_many_lengths())
    method.bind(Accelerator(cpu=True))
    eager, compiled = tiny_causal_lm(tokenizer), tiny_causal_lm(tokenizer)
    compile_body(compiled, backend)
    for padding_free, chunk in ((False, None), (True, None), (False, 3), (True, 3)):
        method.padding_free, method.logprob_chunk = padding_free, chunk
        results = []
        for model in (eager, compiled):
            model.zero_grad()
            logps = method.logps(model, SEQUENCES).total
            (logps * torch.arange(1.0, 6.0)).sum().backward()
            results.append((logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
        for name, grad in results[0][1].items():
            torch.testing.assert_close(results[1][1][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_the_reference_copied_from_a_compiled_policy_stays_frozen(tmp_path):
    """RLHF/AIHF copy the policy into pi_ref after it is compiled: the copy must run its own
    weights, not the policy's (a compiled forward bound to the original module would)."""
    tokenizer = tiny_tokenizer()
    policy = tiny_causal_lm(tokenizer)
    compile_body(policy, "eager")
    reference = reference_model(policy)
    start = {n: p.clone() for n, p in reference.named_parameters()}
    ids = torch.tensor([[5, 6, 7, 8]])
    before = reference(input_ids=ids).logits
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1)
    assert not torch.allclose(policy(input_ids=ids).logits, before)
    torch.testing.assert_close(reference(input_ids=ids).logits, before, rtol=0, atol=0)
    assert all(torch.equal(p, start[n]) for n, p in reference.named_parameters())


def test_a_model_without_a_separate_body_is_refused():
    with pytest.raises(ConfigError, match="model.compile"):
        compile_body(torch.nn.Linear(2, 2))


def test_a_body_without_a_list_of_blocks_is_compiled_whole_and_a_bad_scope_refused():
    class Body(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(2, 2)

    class LanguageModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base_model, self.head = Body(), torch.nn.Linear(2, 3)

    body = compile_body(LanguageModel(), "eager", scope="blocks")
    assert getattr(body, "_compiled_call_impl", None) is not None
    with pytest.raises(ConfigError, match="compile_scope"):
        compile_body(LanguageModel(), "eager", scope="layers")
