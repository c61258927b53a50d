"""The RL prompt set (``data.prompts``, docs/method.md section 6): ``rlhf``'s policy stage and
``aihf`` sample their RLOO responses on it; AIHF's reward step still samples on the
demonstrations' own prompts (docs/method.md section 3, step 2); the other methods ignore it.

The synthetic task is the one of tests/test_lm_engine.py; the prompt set asks the same
question about subjects no demonstration or preference mentions.
"""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from test_lm_engine import SUBJECTS, _losses, answer_margin, data, loop, task
from test_lm_methods import REWARD_OFFSETS, assert_all_changed, assert_unchanged, reward_gap, snapshot, undecided_policy  # noqa: F401

from aihf.config import ConfigError
from aihf.data import PromptRecord, write_jsonl
from aihf.lm.batching import Encoder
from aihf.lm.methods import ExplicitRewardMethod, MethodConfig
from aihf.lm.models import RewardModel, reference_model
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.train import DataConfig, TrainConfig, build_method, read_data, train_from_cli
from aihf.lm.trainer import Trainer

PROMPT_SUBJECTS = ["book", "show", "song", "game", "album", "series"]
EVAL_PROMPT_SUBJECTS = ["play", "novel"]


def prompt_set(subjects=PROMPT_SUBJECTS) -> list[PromptRecord]:
    return [PromptRecord(f"review: the {s} was") for s in subjects]


def prompts() -> dict[str, list[PromptRecord]]:
    return {"train": prompt_set(), "eval": prompt_set(EVAL_PROMPT_SUBJECTS)}


def make_rl_method(name: str, tokenizer=None, policy=None, reward=None, config: MethodConfig | None = None,
                   with_preferences: bool = True) -> ExplicitRewardMethod:
    """``rlhf`` or ``aihf`` of the synthetic task with the prompt set, on tiny models."""
    tokenizer = tokenizer or tiny_tokenizer()
    policy = policy if policy is not None else tiny_causal_lm(tokenizer)
    reward = reward if reward is not None else RewardModel(tiny_causal_lm(tokenizer, seed=1).base_model)
    demos, prefs = data()
    return ExplicitRewardMethod(
        name, config or MethodConfig(max_new_tokens=3, rloo_k=4), tokenizer,
        Encoder(tokenizer, max_length=24, max_prompt_length=12), demos, prefs if with_preferences else {}, reward,
        policy=policy, reference=reference_model(policy), prompts=prompts(),
    )


def record_sampling(method: ExplicitRewardMethod) -> list[tuple[str, dict[str, list[int]], list[list[int]]]]:
    """Wrap ``method.loss`` and ``method.sample``: per loss call, (split, indices, prompts sampled on)."""
    calls: list = []
    loss, sample = method.loss, method.sample

    def recording_loss(indices, split, seed, *phase):
        calls.append((split, {k: list(v) for k, v in indices.items()}, []))
        return loss(indices, split, seed, *phase)

    def recording_sample(model, prompt_ids, seed):
        calls[-1][2].extend(list(p) for p in prompt_ids)
        return sample(model, prompt_ids, seed)

    method.loss, method.sample = recording_loss, recording_sample
    return calls


# -------------------------------------------------------------------------- encoding


def test_prompt_records_encode_to_prompt_ids_with_truncation_counted():
    tok = tiny_tokenizer()
    enc = Encoder(tok, max_length=10, max_prompt_length=4)
    long_prompt = "review: " + "the movie was great and " * 4
    assert enc.prompt_record(PromptRecord(long_prompt)) == list(tok(long_prompt).input_ids)[-4:]
    chat = PromptRecord([{"role": "user", "content": "hi"}])
    assert enc.prompt_record(chat) == list(tok.apply_chat_template(chat.prompt_messages(), add_generation_prompt=True,
                                                                    tokenize=True, return_dict=False))[-4:]
    assert (enc.stats.sequences, enc.stats.prompts_truncated, enc.stats.responses_truncated) == (2, 2, 0)
    enc.prompt_record(PromptRecord("hi"))
    assert (enc.stats.sequences, enc.stats.prompts_truncated) == (3, 2)


def test_data_sizes_report_the_prompt_set():
    aihf, rlhf = make_rl_method("aihf"), make_rl_method("rlhf", with_preferences=False)
    assert aihf.data_sizes("train") == {"demo": len(SUBJECTS), "pref": len(SUBJECTS), "prompt": len(PROMPT_SUBJECTS)}
    assert aihf.data_sizes("eval") == {"demo": 2, "pref": 2, "prompt": len(EVAL_PROMPT_SUBJECTS)}
    # with a prompt set, RLHF's policy stage reads no preferences (they served the reward stage)
    assert rlhf.data_sizes("train") == {"prompt": len(PROMPT_SUBJECTS)}
    assert make_rl_method("rlhf").data_sizes("train") == {"prompt": len(PROMPT_SUBJECTS)}
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="'reward' samples on no prompts"):
        ExplicitRewardMethod("reward", MethodConfig(), tok, Encoder(tok, 24, 12), {}, data()[1],
                             RewardModel(tiny_causal_lm(tok).base_model), prompts=prompts())


# ------------------------------------------------------------------- where samples come from


@pytest.mark.parametrize("name", ["rlhf", "aihf"])
def test_policy_samples_on_the_prompt_set_and_the_reward_step_on_demo_prompts(tmp_path, name):
    k, size = 4, 3
    method = make_rl_method(name, config=MethodConfig(max_new_tokens=3, rloo_k=k), with_preferences=name == "aihf")
    calls = record_sampling(method)
    Trainer(method, loop(tmp_path, max_steps=3, micro_batch_size=size, eval_every=3)).fit()
    tok = method.tokenizer
    prompt_texts = {f"review: the {s} was" for s in PROMPT_SUBJECTS + EVAL_PROMPT_SUBJECTS}
    assert [split for split, _, _ in calls] == ["train"] * 3 + ["eval"]
    for split, indices, sampled in calls:
        expected_kinds = {"prompt", "demo", "pref"} if name == "aihf" else {"prompt"}
        assert set(indices) == expected_kinds
        assert len(indices["prompt"]) == size
        policy_part = [method.prompts[split][i] for i in indices["prompt"] for _ in range(k)]
        demo_part = [method.demos[split][i][0] for i in indices["demo"]] if name == "aihf" else []
        assert sampled == policy_part + demo_part  # k per prompt-set prompt, then one per demonstration
        assert {tok.decode(p) for p in sampled[: size * k]} <= prompt_texts
        assert not {tok.decode(p) for p in demo_part} & prompt_texts
    # the prompt stream draws every prompt-set prompt (a permutation per epoch)
    drawn = [i for split, indices, _ in calls if split == "train" for i in indices["prompt"]]
    assert sorted(drawn[: len(PROMPT_SUBJECTS)]) == list(range(len(PROMPT_SUBJECTS)))


def test_without_a_prompt_set_aihf_samples_on_the_demonstrations(tmp_path):
    """The behaviour before prompt sets: k samples per demonstration, shared by both steps."""
    from test_lm_engine import make_method

    method = make_method("aihf")
    calls = record_sampling(method)
    Trainer(method, loop(tmp_path, max_steps=1)).fit()
    ((_, indices, sampled),) = calls
    assert set(indices) == {"demo", "pref"}
    assert sampled == [method.demos["train"][i][0] for i in indices["demo"] for _ in range(4)]


# --------------------------------------------------------------------------------- learning


def test_aihf_with_a_prompt_set_learns_reward_and_policy(tmp_path, undecided_policy):  # noqa: F811
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    method = make_rl_method("aihf", tok, policy, reward, MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05))
    frozen_reference, policy_before, reward_before = snapshot(method.reference_model), snapshot(policy), snapshot(reward)
    # The reward step now sees one sample per demonstration (not k): it follows the policy
    # more slowly, and at the policy rate of test_aihf_learns_reward_and_policy_jointly
    # (3e-3) some seeds drift into words no demonstration has (KL 7-10 nats). A slower
    # policy keeps the two time scales apart: margins 2.9-4.0 over seeds 0-5 in 20 steps.
    result = Trainer(
        method, loop(tmp_path, max_steps=20, eval_every=20, learning_rate=1e-3, reward_learning_rate=1e-2)
    ).fit()
    assert_all_changed(policy_before, policy, "aihf policy")
    assert_all_changed(reward_before, reward, "aihf reward model", exempt=REWARD_OFFSETS)
    assert_unchanged(frozen_reference, method.reference_model, "aihf reference")
    assert reward_gap(reward, tok) > 1.0
    assert answer_margin(policy, tok, PROMPT_SUBJECTS) > 2.0  # the prompts the policy step saw
    assert answer_margin(policy, tok) > 2.0  # and the demonstrations' subjects
    evaluation = result.evaluations[-1]
    assert evaluation["eval/reward_accuracy"] == 1.0 and {"eval/kl", "eval/reward_raw_mean"} <= set(evaluation)


def test_resumed_run_with_a_prompt_set_reproduces_the_uninterrupted_run(tmp_path):
    config = dict(max_steps=4, save_every=2, keep_checkpoints=0, lr_scheduler="linear", warmup_steps=1)
    full = Trainer(make_rl_method("aihf"), loop(tmp_path / "full", **config)).fit()
    checkpoint = tmp_path / "full" / "checkpoints" / "step-0000002"
    resumed = Trainer(make_rl_method("aihf"), loop(tmp_path / "full", resume_from=str(checkpoint), **config)).fit()
    assert len(resumed.history) == 4
    torch.testing.assert_close(_losses(resumed)[2:], _losses(full)[2:], rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- configuration


def _data_files(tmp_path, **extra) -> DataConfig:
    demos, prefs = task()
    write_jsonl(demos, tmp_path / "demos.jsonl")
    write_jsonl(prefs, tmp_path / "prefs.jsonl")
    write_jsonl(prompt_set(), tmp_path / "prompts.jsonl")
    return DataConfig(demonstrations=str(tmp_path / "demos.jsonl"), preferences=str(tmp_path / "prefs.jsonl"),
                      prompts=str(tmp_path / "prompts.jsonl"), max_length=24, max_prompt_length=12, **extra)


@pytest.mark.parametrize("name", ["sft", "dpo", "self-play-aihf", "reward"])
def test_methods_that_sample_on_no_prompts_warn_and_ignore_them(tmp_path, caplog, name):
    config = TrainConfig(data=_data_files(tmp_path))
    with caplog.at_level(logging.WARNING, logger="aihf.lm.train"):
        demos, prefs, got = read_data(config, name)
    assert got == {}
    assert f"method {name} does not use prompts: {tmp_path / 'prompts.jsonl'} is ignored" in caplog.text
    if name == "dpo":
        method, _ = build_method(name, config)
        assert "prompt" not in method.data_sizes("train")


def test_read_data_splits_prompts_and_rlhf_reads_no_preferences_with_them(tmp_path, caplog):
    config = TrainConfig(data=_data_files(tmp_path, eval_fraction=0.25))
    demos, prefs, got = read_data(config, "aihf")
    assert len(got["train"]) + len(got["eval"]) == len(PROMPT_SUBJECTS) and len(got["eval"]) == 2
    assert all(isinstance(p, PromptRecord) for split in got.values() for p in split)
    with caplog.at_level(logging.WARNING, logger="aihf.lm.train"):
        demos, prefs, got = read_data(TrainConfig(data=_data_files(tmp_path)), "rlhf")
    assert (demos, prefs, len(got["train"])) == ({}, {}, len(PROMPT_SUBJECTS))
    config = TrainConfig(data=_data_files(tmp_path, eval_prompts=str(tmp_path / "prompts.jsonl")))
    assert read_data(config, "aihf")[2]["eval"] == prompt_set()
    config.data.prompts = None
    with pytest.raises(ConfigError, match="data.eval_prompts is set but data.prompts is not"):
        read_data(config, "aihf")


@pytest.mark.e2e
def test_rlhf_stages_with_a_prompt_set(tmp_path, caplog):
    data_config = _data_files(tmp_path)
    out = tmp_path / "run"
    args = [f"data.preferences={data_config.preferences}",
            f"data.prompts={data_config.prompts}", "data.max_length=24", "data.max_prompt_length=12",
            "loop.log_with=none", "loop.progress=false", "loop.micro_batch_size=2", f"loop.output_dir={out}",
            "loop.max_steps=2", "reward_stage_steps=2", "method.max_new_tokens=3", "method.rloo_k=2"]
    with caplog.at_level(logging.WARNING):
        assert train_from_cli("rlhf", None, args) == 0
    assert "does not use" not in caplog.text  # the reward stage takes the preferences, the policy stage the prompts
    reward_stage = yaml.safe_load((out / "reward" / "config.yaml").read_text())["data"]
    policy_stage = yaml.safe_load((out / "policy" / "config.yaml").read_text())["data"]
    assert reward_stage["prompts"] is None and reward_stage["preferences"] == data_config.preferences
    assert policy_stage["prompts"] == data_config.prompts and policy_stage["preferences"] is None

