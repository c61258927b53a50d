"""Samplers: shapes, eos handling, seeding, padding and KV-cache invariance."""

import importlib.util

import pytest
import torch

from aihf.lm.generation import HFSampler, VLLMSampler, cut_at_eos, left_pad
from aihf.lm.models import load_causal_lm

PROMPTS = ["the movie was", "hello", "i loved this movie because it was"]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_causal_lm("tiny")
    return model, tokenizer, [tokenizer(p).input_ids for p in PROMPTS]


def test_left_pad_and_cut_at_eos():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_eos([4, 2, 9, 2], {2}) == [4, 2]
    assert cut_at_eos([4, 9], {2}) == [4, 9]
    with pytest.raises(ValueError):
        left_pad([[1], []], pad_id=0, device=torch.device("cpu"))


def test_shapes_and_no_padding_in_responses(tiny):
    model, tokenizer, prompts = tiny
    responses = HFSampler(model, tokenizer).generate(prompts, max_new_tokens=12, seed=0)
    assert len(responses) == len(prompts)
    assert all(1 <= len(r) <= 12 and all(isinstance(t, int) for t in r) for r in responses)
    assert not any(tokenizer.pad_token_id in r for r in responses)


def test_responses_stop_after_eos_and_keep_it(tiny):
    model, tokenizer, prompts = tiny
    greedy = HFSampler(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0)
    stop = greedy[0][3]  # declare a token the model emits greedily to be an eos
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = stop
    try:
        cut = HFSampler(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0)
    finally:
        model.generation_config.eos_token_id = original
    for full, short in zip(greedy, cut):
        expected = full[: full.index(stop) + 1] if stop in full else full
        assert short == expected
    assert cut[0][-1] == stop and len(cut[0]) <= 4


def test_pad_equal_to_eos_is_cut_like_eos(tiny):
    model, _, prompts = tiny
    tokenizer = load_causal_lm("tiny")[1]
    greedy = HFSampler(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0)
    stop = greedy[1][2]
    tokenizer.add_special_tokens({"pad_token": tokenizer.convert_ids_to_tokens(stop)})
    tokenizer.eos_token = tokenizer.pad_token  # as in SmolLM2: pad = eos
    cut = HFSampler(model, tokenizer).generate(prompts, max_new_tokens=10, temperature=0)
    for full, short in zip(greedy, cut):
        assert short == (full[: full.index(stop) + 1] if stop in full else full)


def test_seed_reproducibility(tiny):
    model, tokenizer, prompts = tiny
    sampler = HFSampler(model, tokenizer)
    state = torch.get_rng_state()
    a = sampler.generate(prompts, 16, seed=7)
    assert torch.equal(state, torch.get_rng_state())  # an explicit seed leaves the global RNG alone
    assert sampler.generate(prompts, 16, seed=7) == a
    assert sampler.generate(prompts, 16, seed=8) != a
    torch.manual_seed(3)
    b = sampler.generate(prompts, 16)
    torch.manual_seed(3)
    assert sampler.generate(prompts, 16) == b


def test_left_padding_and_chunking_do_not_change_greedy_output(tiny):
    model, tokenizer, prompts = tiny
    batched = HFSampler(model, tokenizer).generate(prompts, 10, temperature=0)
    alone = [HFSampler(model, tokenizer).generate([p], 10, temperature=0)[0] for p in prompts]
    chunked = HFSampler(model, tokenizer, batch_size=2).generate(prompts, 10, temperature=0)
    assert batched == alone == chunked


def test_static_cache_matches_dynamic_cache_under_greedy(tiny):
    model, tokenizer, prompts = tiny
    dynamic = HFSampler(model, tokenizer).generate(prompts, 10, temperature=0)
    static = HFSampler(model, tokenizer, cache="static").generate(prompts, 10, temperature=0)
    assert static == dynamic


def test_auto_cache_is_static_on_a_gpu_for_a_model_that_compiles_whole_and_dynamic_elsewhere(tiny, monkeypatch):
    model, tokenizer, _ = tiny
    assert HFSampler(model, tokenizer).cache_implementation == "dynamic"  # the CPU
    assert HFSampler(model, tokenizer, cache="static").cache_implementation == "static"
    monkeypatch.setattr(HFSampler, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(type(model), "_can_compile_fullgraph", True, raising=False)
    assert HFSampler(model, tokenizer).cache_implementation == "static"
    assert HFSampler(model, tokenizer, cache="dynamic").cache_implementation == "dynamic"
    monkeypatch.setattr(type(model), "_can_compile_fullgraph", False, raising=False)
    assert HFSampler(model, tokenizer).cache_implementation == "dynamic"
    with pytest.raises(ValueError, match="cache must be one of"):
        HFSampler(model, tokenizer, cache="paged")


def test_top_p_and_temperature_change_the_draw_and_mode_is_restored(tiny):
    model, tokenizer, prompts = tiny
    sampler = HFSampler(model, tokenizer)
    model.train()
    try:
        base = sampler.generate(prompts, 16, seed=1)
        assert model.training
    finally:
        model.eval()
    assert sampler.generate(prompts, 16, seed=1, top_p=1e-9) == sampler.generate(prompts, 16, temperature=0)
    assert sampler.generate(prompts, 16, seed=1, temperature=0.5) != base
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(max_new_tokens=0)):
        with pytest.raises(ValueError):
            sampler.generate(prompts, **{"max_new_tokens": 4, **bad})


def test_vllm_missing_names_the_extra():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    with pytest.raises(ImportError, match=r"aihf\[vllm\]"):
        VLLMSampler("unused")
