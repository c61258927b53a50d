"""method.sampler=vllm: the RL methods sample through a vLLM engine in the training process
that gets the policy's current weights before every sample (generation.VLLMSampler).

vLLM needs a GPU and is not installed here, so these tests stand a stand-in module in for it:
an engine whose model is a transformers model built from the same checkpoint and whose
``load_weights`` / ``generate`` follow vLLM's interface. What they check is aihf's side: the
engine is built once, colocated, from the policy's checkpoint; every sample is drawn after
the weights of that moment were pushed (each draw compares the engine's weights with the
live policy's); a missing vLLM is a clear error at the start. The real engine is exercised
by bench/bench_gpu.py on a GPU machine."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from test_lm_engine import answer_margin, loop, make_method
from test_lm_methods import undecided_policy  # noqa: F401 (fixture)

from aihf.config import ConfigError
from aihf.lm.generation import HFSampler
from aihf.lm.methods import MethodConfig
from aihf.lm.models import RewardModel
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.trainer import Trainer


class FakeEngine:
    """vllm.LLM's interface over a transformers model loaded from ``model``."""

    instances: list["FakeEngine"] = []
    live_policy = None  # the training policy, to compare with at every draw

    def __init__(self, model, dtype, seed, trust_remote_code, **kwargs):
        from transformers import AutoModelForCausalLM

        self.path, self.seed, self.trust_remote_code, self.kwargs = model, seed, trust_remote_code, kwargs
        self.net = AutoModelForCausalLM.from_pretrained(model)
        self.tokenizer = tiny_tokenizer()
        self.pushes, self.draws_current = 0, []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)))
        FakeEngine.instances.append(self)

    def _load_weights(self, weights):
        params = dict(self.net.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                params[name].copy_(tensor)
        self.pushes += 1

    def reset_prefix_cache(self):
        pass

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, requests, params, use_tqdm):
        live = dict(FakeEngine.live_policy.named_parameters())
        self.draws_current.append(all(torch.equal(p, live[n]) for n, p in self.net.named_parameters()))
        sampler = HFSampler(self.net, self.tokenizer)
        outputs = []
        for request, p in zip(requests, params):
            tokens = sampler.generate([request["prompt_token_ids"]], p.max_tokens, p.temperature, p.top_p, seed=p.seed)[0]
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=tokens)]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.__version__ = "stand-in"
    module.LLM = FakeEngine
    module.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    FakeEngine.instances = []
    yield module


def _policy_from_a_checkpoint(folder, weights):
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(weights)
    policy.save_pretrained(folder)
    return tok, AutoModelForCausalLM.from_pretrained(folder)


def test_rlhf_samples_through_the_colocated_engine_with_the_current_weights(tmp_path, fake_vllm, undecided_policy):
    tok, policy = _policy_from_a_checkpoint(tmp_path / "sft", undecided_policy)
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    Trainer(make_method("reward", tok, reward=reward), loop(tmp_path / "reward", max_steps=8)).fit()
    FakeEngine.live_policy = policy
    config = MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05, sampler="vllm", vllm_memory=0.25)
    Trainer(make_method("rlhf", tok, policy, reward, config), loop(tmp_path / "policy", max_steps=15)).fit()
    (engine,) = FakeEngine.instances  # built once
    assert engine.path == str(tmp_path / "sft") and engine.trust_remote_code is False
    assert engine.kwargs["distributed_executor_backend"] == "external_launcher"
    assert engine.kwargs["gpu_memory_utilization"] == 0.25 and engine.seed == 0
    assert len(engine.draws_current) >= 15 and all(engine.draws_current)  # every draw after a push of that moment
    assert engine.pushes == len(engine.draws_current)
    assert answer_margin(policy, tok) > 2.0  # and it learns on the engine's samples


def test_vllm_sampler_needs_vllm_and_a_policy_from_a_checkpoint(tmp_path, monkeypatch, fake_vllm):
    tok = tiny_tokenizer()
    method = make_method("rlhf", tok, tiny_causal_lm(tok), config=MethodConfig(max_new_tokens=3, sampler="vllm"))
    with pytest.raises(ConfigError, match="not loaded from one"):
        Trainer(method, loop(tmp_path / "a", max_steps=1)).fit()
    monkeypatch.delitem(sys.modules, "vllm")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else importlib.machinery.PathFinder.find_spec(name))
    method = make_method("rlhf", tok, tiny_causal_lm(tok), config=MethodConfig(max_new_tokens=3, sampler="vllm"))
    with pytest.raises(ConfigError, match="pip install 'aihf\\[vllm\\]'"):
        Trainer(method, loop(tmp_path / "b", max_steps=1)).fit()


def test_a_method_that_does_not_sample_reports_the_sampler_setting():
    from aihf.lm.methods import RECIPES

    assert RECIPES["dpo"].ignored(MethodConfig(sampler="vllm")) == ["sampler='vllm'"]
    assert RECIPES["rlhf"].ignored(MethodConfig(sampler="vllm")) == []
