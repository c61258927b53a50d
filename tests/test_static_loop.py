"""StaticLoopSampler (aihf.lm.static_loop): the same greedy tokens as transformers' generate,
draws from the right distribution (Gumbel-max on hashed uniforms), seeded and independent of
the batch size, eos handling as every sampler's."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from aihf.lm.generation import HFSampler
from aihf.lm.models import load_causal_lm
from aihf.lm.static_loop import StaticLoopSampler, choose_tokens, hashed_uniform
from test_lm_methods import undecided_policy  # noqa: F401 (fixture)
from test_packing import _llama

PROMPTS = ["the movie was", "hello", "i loved this movie because it was"]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_causal_lm("tiny")
    return model, tokenizer, [tokenizer(p).input_ids for p in PROMPTS]


def test_greedy_tokens_equal_transformers_generate_on_gpt_neox_and_llama(tiny):
    model, tokenizer, prompts = tiny
    expected = HFSampler(model, tokenizer, cache="dynamic").generate(prompts, 14, temperature=0)
    assert StaticLoopSampler(model, tokenizer).generate(prompts, 14, temperature=0) == expected
    llama, ids = _llama().eval(), SimpleNamespace(pad_token_id=0, eos_token_id=63)
    llama.generation_config.eos_token_id = None
    llama_prompts = [[5, 9, 11, 30, 2], [7], [40, 41, 42]]  # left padding of 4 and 2
    expected = HFSampler(llama, ids, cache="dynamic").generate(llama_prompts, 10, temperature=0)
    assert StaticLoopSampler(llama, ids).generate(llama_prompts, 10, temperature=0) == expected


def test_hashed_uniforms_are_uniform_and_independent_across_vocabulary_rows_and_steps():
    seed, rows = torch.tensor(5), torch.arange(64)
    u = hashed_uniform(seed, rows, torch.tensor(0), 4096)
    assert u.dtype == torch.float64 and 0 < u.min() and u.max() < 1
    flat = u.flatten().numpy()
    assert abs(flat.mean() - 0.5) < 0.005 and abs(flat.var() - 1 / 12) < 0.002
    assert abs(np.histogram(flat, bins=10, range=(0, 1))[0] / flat.size - 0.1).max() < 0.005
    for a, b in ((u[:, :-1], u[:, 1:]), (u[:-1], u[1:]), (u, hashed_uniform(seed, rows, torch.tensor(1), 4096)),
                 (u, hashed_uniform(torch.tensor(6), rows, torch.tensor(0), 4096))):
        assert abs(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]) < 0.01


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.7)])
def test_draws_follow_the_tempered_nucleus_distribution(temperature, top_p):
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5])
    n = 40000
    tokens = choose_tokens(logits.expand(n, -1), temperature, top_p, torch.tensor(3), torch.arange(n), torch.tensor(0))
    probs = (logits / temperature).softmax(dim=0)
    if top_p < 1:  # sorted probabilities 0.64, 0.23, 0.14, ...: the first two are the smallest set reaching 0.7
        keep = torch.zeros_like(probs, dtype=torch.bool)
        keep[probs.argsort(descending=True)[:2]] = True
        probs = torch.where(keep, probs, 0.0) / probs[keep].sum()
    frequencies = torch.bincount(tokens, minlength=5).double() / n
    assert torch.allclose(frequencies, probs.double(), atol=0.008), (frequencies, probs)
    assert choose_tokens(logits.expand(3, -1), 0.0, 1.0, torch.tensor(0), torch.arange(3), torch.tensor(0)).tolist() == [2] * 3


def test_draws_are_seeded_and_do_not_depend_on_the_batch_size(tiny):
    model, tokenizer, prompts = tiny
    sampler = StaticLoopSampler(model, tokenizer)
    drawn = sampler.generate(prompts, 16, seed=7)
    assert sampler.generate(prompts, 16, seed=7) == drawn
    assert StaticLoopSampler(model, tokenizer, batch_size=1).generate(prompts, 16, seed=7) == drawn
    assert sampler.generate(prompts, 16, seed=8) != drawn
    torch.manual_seed(3)
    again = sampler.generate(prompts, 16)
    torch.manual_seed(3)
    assert sampler.generate(prompts, 16) == again


def test_responses_stop_after_eos_and_keep_it_whenever_the_loop_looks(tiny):
    model, tokenizer, prompts = tiny
    greedy = StaticLoopSampler(model, tokenizer).generate(prompts, 12, temperature=0)
    stop = greedy[0][3]
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = stop
    try:
        cuts = [StaticLoopSampler(model, tokenizer, check_every=k).generate(prompts, 12, temperature=0) for k in (1, 4, 64)]
    finally:
        model.generation_config.eos_token_id = original
    for cut in cuts:
        assert cut == [full[: full.index(stop) + 1] if stop in full else full for full in greedy]
    assert cuts[0][0][-1] == stop and len(cuts[0][0]) == 4


def test_bad_settings_are_refused(tiny):
    model, tokenizer, prompts = tiny
    with pytest.raises(ValueError, match="check_every"):
        StaticLoopSampler(model, tokenizer, check_every=0)
    with pytest.raises(ValueError, match="top_p"):
        StaticLoopSampler(model, tokenizer).generate(prompts, 4, top_p=0.0)


def test_rlhf_learns_sampling_through_the_static_loop(tmp_path, undecided_policy):
    from test_lm_engine import answer_margin, loop, make_method

    from aihf.lm.methods import MethodConfig
    from aihf.lm.models import RewardModel
    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
    from aihf.lm.trainer import Trainer

    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    Trainer(make_method("reward", tok, reward=reward), loop(tmp_path / "reward", max_steps=8)).fit()
    method = make_method("rlhf", tok, policy, reward, MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05,
                                                                   sampler="static-loop"))
    Trainer(method, loop(tmp_path / "policy", max_steps=15)).fit()
    assert isinstance(method._static_loop, StaticLoopSampler) and method._static_loop.model is policy  # built once
    assert answer_margin(policy, tok) > 2.0
