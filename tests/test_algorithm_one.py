"""AIHF's Algorithm 1 on language models (docs/method.md section 3): demonstrations and samples
scored in one form, the ``rounds`` schedule, the reward warm start, the reward scaler, the
per-model gradient clips, and the settings a method ignores.

The task is tests/test_lm_engine.py's: after "review: the X was", " great" is right (the
demonstrations and the preferred answers) and " terrible" wrong, so the true reward of a
response is known (1 for " great", 0 for " terrible").
"""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from test_lm_engine import _losses, answer_margin, loop, make_method
from test_lm_methods import reward_gap, snapshot, undecided_policy  # noqa: F401 (fixture)

from aihf.data import Demonstration, Preference, write_jsonl
from aihf.lm.batching import Encoder, collate
from aihf.lm.methods import RECIPES, MethodConfig
from aihf.lm.models import RewardModel, load_reward_model
from aihf.reward_scale import RewardScaler
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.train import DataConfig, ModelConfig, TrainConfig, build_method, train
from aihf.lm.trainer import Trainer
from aihf.objective import ObjectiveConfig


def rounds_config(**overrides) -> MethodConfig:
    fields = dict(max_new_tokens=3, rloo_k=4, beta=0.05, schedule="rounds", rounds=3, reward_epochs=1,
                  policy_steps_per_round=5)
    fields.update(overrides)
    return MethodConfig(**fields)


def aihf_method(tok, policy_state=None, config: MethodConfig | None = None, reward=None):
    policy = tiny_causal_lm(tok)
    if policy_state is not None:
        policy.load_state_dict(policy_state)
    reward = reward if reward is not None else RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    return make_method("aihf", tok, policy, reward, config or rounds_config())


# ------------------------------------------------------------------- same-form scoring


@pytest.mark.parametrize("finished", [True, False])
def test_a_demonstration_and_a_sample_with_the_same_text_are_the_same_sequence(finished):
    """A demonstration that finished ends in EOS, as a sample that emitted EOS does; one cut at
    the cap ends without, as a sample cut at max_new_tokens does. Same ids, same reward."""
    tok = tiny_tokenizer()
    method = make_method("aihf", tok, config=MethodConfig(max_new_tokens=4, rloo_k=4))
    text = " great and fun" if finished else " great and fun and long"
    prompt = method.encoder.prompt(Demonstration("review: the movie was", text))
    ids = list(tok(text, add_special_tokens=False).input_ids)
    if finished:
        assert len(ids) + 1 <= 4
        sample = (prompt, ids + [tok.eos_token_id])  # the policy emitted EOS within the cap
    else:
        assert len(ids) > 4
        sample = (prompt, ids[:4])  # the policy was cut at max_new_tokens
    demo = method.scored_form(method.encoder.demonstration(Demonstration("review: the movie was", text)))
    assert demo == method.scored_form(sample)
    assert (demo[1][-1] == tok.eos_token_id) is finished
    rewards = []
    for sequence in (demo, method.scored_form(sample)):  # one at a time: same input, bit-identical output
        batch = collate([sequence], tok.pad_token_id)
        with torch.no_grad():
            rewards.append(method.reward_model(batch.input_ids, batch.attention_mask).item())
    assert rewards[0] == rewards[1]


def test_a_sample_tokenised_oddly_is_scored_as_its_text_encodes():
    """" great" sampled as the two tokens " g" + "reat" is re-encoded to the one token a
    demonstration " great" gets, before the reward model reads it."""
    tok = tiny_tokenizer()
    method = make_method("aihf", tok, config=MethodConfig(max_new_tokens=4, rloo_k=4))
    vocab = tok.get_vocab()
    demo = method.demos["train"][0]  # " great", finished
    odd = (demo[0], [vocab["Ġg"], vocab["reat"], tok.eos_token_id])
    assert odd != demo and tok.decode(odd[1][:-1]) == " great"
    assert method.canonical_form(odd) == demo
    assert method.canonical_form((demo[0], [vocab["Ġg"], vocab["reat"]])) == (demo[0], demo[1][:-1])  # cut: no EOS


def test_unfinished_records_end_without_eos():
    """A record that says its response was cut (``finished=False``) is encoded without EOS."""
    tok = tiny_tokenizer()
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    cut = Demonstration("review: the movie was", " great", finished=False)
    prompt, response = encoder.demonstration(cut)
    assert response == list(tok(" great", add_special_tokens=False).input_ids)
    _, whole = encoder.demonstration(Demonstration("review: the movie was", " great"))
    assert whole == response + [tok.eos_token_id]


def test_samples_are_in_the_scored_form(tmp_path):
    tok = tiny_tokenizer()
    method = make_method("aihf", tok, config=MethodConfig(max_new_tokens=5, rloo_k=4))
    Trainer(method, loop(tmp_path, max_steps=1))  # binds the method to an accelerator
    samples = method.sample(method.policy, [method.demos["train"][0][0]] * 6, seed=3)
    for prompt, response in samples:
        assert len(response) <= 5
        assert tok.eos_token_id not in response[:-1]  # at most a final EOS


# ------------------------------------------------------------------------ reward scaler


def test_reward_scaler_tracks_mean_and_std_over_batches_and_clips():
    batches = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0]), torch.tensor([-4.0, 0.5])]
    scaler = RewardScaler(enabled=True, clip=1.5)
    for batch in batches:
        scaler.update(batch)
    every = torch.cat(batches).double()
    assert scaler.mean == pytest.approx(float(every.mean()))
    assert scaler.std == pytest.approx(float(every.std(unbiased=False)))
    scaled = scaler(torch.tensor([scaler.mean, scaler.mean + scaler.std, 1e6]))
    torch.testing.assert_close(scaled, torch.tensor([0.0, 1.0, 1.5]), rtol=1e-5, atol=1e-5)
    restored = RewardScaler(clip=1.5)
    restored.load_state(scaler.state())
    assert (restored.count, restored.mean, restored.m2) == (scaler.count, scaler.mean, scaler.m2)
    from_json = RewardScaler.from_state(json.loads(json.dumps(scaler.state().tolist())), clip=1.5, center=False)
    assert (from_json.count, from_json.mean, from_json.m2, from_json.center) == (*restored.state().tolist(), False)
    off = RewardScaler(enabled=False, clip=None)
    off.update(torch.tensor([5.0, 7.0]))
    assert torch.equal(off(torch.tensor([3.0])), torch.tensor([3.0]))


# ---------------------------------------------------------------------------- schedule


def test_rounds_schedule_alternates_reward_steps_and_policy_steps(tmp_path):
    """R = ceil(reward_epochs * max(|D|, |P|) / batch) reward steps open each round, the
    policy steps follow; in a reward step only the reward moves, in a policy step only the policy."""
    tok = tiny_tokenizer()
    method = aihf_method(tok, config=rounds_config(rounds=2, reward_epochs=2, policy_steps_per_round=3))
    trainer = Trainer(method, loop(tmp_path, reward_learning_rate=1e-2))
    assert method.reward_steps == math.ceil(2 * 8 / 4) and method.steps_per_round == 7 and trainer.max_steps == 14
    policy, reward = method.models["policy"], method.models["reward"]
    moved = []
    while trainer.step < 8:
        if trainer.step % method.steps_per_round == 0:
            method.start_round(trainer.step // method.steps_per_round, seed=trainer.step)
        before = snapshot(policy), snapshot(reward)
        metrics = trainer.train_step()
        trainer.step += 1
        changed = tuple(
            any(not torch.equal(v, module.state_dict()[k]) for k, v in state.items())
            for state, module in zip(before, (policy, reward))
        )
        moved.append(changed)
        assert ("grad_norm/reward" in metrics) == changed[1] and ("grad_norm/policy" in metrics) == changed[0]
    assert moved == [(False, True)] * 4 + [(True, False)] * 3 + [(False, True)]
    assert len(method.round_samples) == 8  # one sample per training demonstration


def test_rounds_raise_the_true_reward_and_keep_the_preference_accuracy(tmp_path, undecided_policy):  # noqa: F811
    """Algorithm 1 (rounds) on the task with a known answer: the policy moves to " great", the
    joint reward's held-out preference accuracy is within 0.03 of the preference-only reward
    model's (same steps), and it ranks the demonstrations above the policy's samples."""
    tok = tiny_tokenizer()
    config = rounds_config(rounds=3, reward_epochs=2, policy_steps_per_round=6)
    method = aihf_method(tok, undecided_policy, config)
    start = answer_margin(method.models["policy"], tok)
    result = Trainer(method, loop(tmp_path / "aihf", reward_learning_rate=1e-2)).fit()
    assert answer_margin(method.models["policy"], tok) > start + 2.0
    per_round = result.evaluations
    assert [e["round"] for e in per_round] == [0, 1, 2]  # one evaluation after every round
    assert per_round[0]["eval/reward_demo_minus_samples"] > 0  # held-out prompts, after round 0
    reward_steps = [h for h in result.history if "grad_norm/reward" in h]
    assert len(reward_steps) == 3 * method.reward_steps
    assert sum(h["reward_demo_minus_samples"] for h in reward_steps) / len(reward_steps) > 0
    assert {"eval/reward_accuracy", "eval/kl", "eval/reward_raw_mean", "eval/reward_raw_std"} <= set(per_round[-1])
    # the preference-only reward model with as many reward steps
    reward_only = make_method("reward", tok, reward=RewardModel(tiny_causal_lm(tok, seed=1).base_model))
    steps = config.rounds * method.reward_steps
    baseline = Trainer(reward_only, loop(tmp_path / "reward", max_steps=steps, eval_every=steps, learning_rate=1e-2)).fit()
    assert per_round[-1]["eval/reward_accuracy"] >= baseline.evaluations[-1]["eval/reward_accuracy"] - 0.03
    assert reward_gap(method.models["reward"], tok) > 0


def test_rounds_resumed_mid_round_reproduce_the_uninterrupted_run(tmp_path):
    tok = tiny_tokenizer()
    config = rounds_config(rounds=2, reward_epochs=1, policy_steps_per_round=3)  # rounds of 2 + 3 steps
    settings = dict(save_every=1, keep_checkpoints=0, reward_learning_rate=1e-2)
    full = Trainer(aihf_method(tok, config=config), loop(tmp_path / "full", **settings)).fit()
    assert len(full.history) == 10
    for step in (3, 6):  # in round 0's policy steps; in round 1's reward steps
        checkpoint = tmp_path / "full" / "checkpoints" / f"step-{step:07d}"
        resumed = Trainer(
            aihf_method(tok, config=config), loop(tmp_path / f"resumed-{step}", resume_from=str(checkpoint), **settings)
        ).fit()
        assert len(resumed.history) == 10
        torch.testing.assert_close(_losses(resumed)[step:], _losses(full)[step:], rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------- warm start


def _files(tmp_path) -> DataConfig:
    from test_lm_engine import task

    demos, prefs = task()
    write_jsonl(demos, tmp_path / "demos.jsonl")
    write_jsonl(prefs, tmp_path / "prefs.jsonl")
    return DataConfig(demonstrations=str(tmp_path / "demos.jsonl"), preferences=str(tmp_path / "prefs.jsonl"),
                      max_length=24, max_prompt_length=12)


def test_warm_start_loads_the_given_reward_model_exactly(tmp_path):
    tok = tiny_tokenizer()
    saved = RewardModel(tiny_causal_lm(tok, seed=5).base_model, seed=5)
    with torch.no_grad():
        saved.head.bias.fill_(0.25)
    saved.save(tmp_path / "rm", tok)
    config = TrainConfig(model=ModelConfig(reward_model=str(tmp_path / "rm")), data=_files(tmp_path),
                         method=rounds_config())
    method, _ = build_method("aihf", config)
    expected = saved.state_dict()
    got = method.models["reward"].state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)


def test_preference_stage_zero_trains_first_and_the_joint_reward_starts_from_it(tmp_path):
    config = TrainConfig(
        data=_files(tmp_path),
        method=rounds_config(rounds=1, policy_steps_per_round=2, reward_init="preferences"),
        loop=loop(tmp_path / "run", learning_rate=1e-2),
        reward_stage_steps=6,
    )
    train("aihf", config)
    stage = tmp_path / "run" / "reward"
    assert (stage / "metrics.json").is_file() and (tmp_path / "run" / "final" / "policy" / "config.json").is_file()
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["reward_model"] == str(stage / "final" / "reward")  # the joint run's reward started from stage 0
    stage_zero, _ = load_reward_model(stage / "final" / "reward")
    assert reward_gap(stage_zero, tiny_tokenizer()) > 0.5  # it learned the preferences


def test_frozen_lower_layers_of_the_reward_body_do_not_move(tmp_path):
    tok = tiny_tokenizer()
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    frozen = reward.freeze_lower_layers(1)
    assert frozen > 0
    names = {n for n, p in reward.named_parameters() if not p.requires_grad}
    assert any("embed" in n for n in names) and all(".layers.1." not in n for n in names)
    before = snapshot(reward)
    Trainer(make_method("reward", tok, reward=reward), loop(tmp_path, max_steps=3)).fit()
    after = reward.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in names)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    with pytest.raises(ValueError, match="has 2 layers"):
        RewardModel(tiny_causal_lm(tok).base_model).freeze_lower_layers(3)


# --------------------------------------------------------------- one objective config


def test_one_objective_config_for_both_worlds():
    from aihf.control.reward_step import RewardStepConfig

    assert issubclass(MethodConfig, ObjectiveConfig) and issubclass(RewardStepConfig, ObjectiveConfig)
    for bad in (dict(beta=float("nan")), dict(beta=0.0), dict(w_pref=float("nan")), dict(w_demo=-1.0)):
        with pytest.raises(ValueError):
            MethodConfig(**bad)
    assert "kl_coef" not in {f for f in MethodConfig.__dataclass_fields__}


def test_settings_the_method_does_not_read_are_reported(tmp_path, caplog):
    assert RECIPES["dpo"].ignored(MethodConfig(w_demo=2.0)) == ["w_demo=2.0"]
    assert RECIPES["aihf-dpo"].ignored(MethodConfig(w_demo=2.0)) == []
    assert RECIPES["aihf"].ignored(MethodConfig(rounds=7)) == ["rounds=7"]  # alternating reads no rounds
    assert RECIPES["aihf"].ignored(MethodConfig(rounds=7, schedule="rounds")) == []
    assert RECIPES["rlhf"].ignored(MethodConfig(beta=0.3, steps_per_round=4)) == ["steps_per_round=4"]
    config = TrainConfig(data=_files(tmp_path), method=MethodConfig(w_demo=2.0), loop=loop(tmp_path / "dpo", max_steps=1))
    with caplog.at_level(logging.WARNING, logger="aihf.lm.train"):
        train("dpo", config)
    assert "method dpo does not read method.w_demo=2.0" in caplog.text


def test_each_model_has_its_own_gradient_clip(tmp_path):
    """The policy's group is clipped at loop.max_grad_norm, the reward's at reward_max_grad_norm
    (default: the same), each over its own parameters only."""
    tok = tiny_tokenizer()
    trainer = Trainer(aihf_method(tok, config=MethodConfig(max_new_tokens=3, rloo_k=4)), loop(tmp_path / "a"))
    assert {g["name"]: g["max_grad_norm"] for g in trainer.optimizer.param_groups} == {"policy": 1.0, "reward": 1.0}
    trainer = Trainer(aihf_method(tok, config=MethodConfig(max_new_tokens=3, rloo_k=4)),
                      loop(tmp_path / "b", max_grad_norm=1.0, reward_max_grad_norm=0.5))
    calls = []
    clip = trainer.accelerator.clip_grad_norm_

    def recording_clip(params, max_norm):
        params = list(params)
        norm = clip(params, max_norm)
        after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        calls.append(({id(p) for p in params}, max_norm, float(norm), float(after)))
        return norm

    trainer.accelerator.clip_grad_norm_ = recording_clip
    metrics = trainer.train_step()
    owned = {name: {id(p) for p in module.parameters() if p.requires_grad} for name, module in trainer.method.models.items()}
    assert [(ids == owned["policy"], ids == owned["reward"], limit) for ids, limit, _, _ in calls] == [
        (True, False, 1.0), (False, True, 0.5)
    ]
    for _, limit, before, after in calls:
        assert after <= limit * (1 + 1e-4) and (before <= limit or after == pytest.approx(limit, rel=1e-4))
    assert metrics["grad_norm/policy"] == calls[0][2] and metrics["grad_norm/reward"] == calls[1][2]


def test_aihf_eval_reads_beta_from_the_run(tmp_path):
    from aihf.lm.evaluate import run_beta

    run = tmp_path / "run"
    (run / "final" / "policy").mkdir(parents=True)
    (run / "config.yaml").write_text("method:\n  beta: 0.37\n")
    assert run_beta(run / "final" / "policy") == 0.37
    assert run_beta(tmp_path / "elsewhere") is None


def test_preference_records_keep_both_flags_through_the_encoder():
    tok = tiny_tokenizer()
    encoder = Encoder(tok, max_length=24, max_prompt_length=12)
    record = Preference("review: the movie was", " great", " terrible", chosen_finished=False)
    (_, chosen), (_, rejected) = encoder.preference(record)
    assert chosen[-1] != tok.eos_token_id and rejected[-1] == tok.eos_token_id
