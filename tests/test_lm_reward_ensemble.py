"""A language-model reward ensemble: K heads on one reward body (``method.reward_ensemble``),
each fitted by its own reward loss, combined for the policy step by ``mean``, ``uwo`` or
``wco`` (docs/method.md section 7). Checked against the rules' closed forms, against K
single-head reward models that share the body, through save and load, and by RLHF and
Algorithm 1 learning the synthetic task's right answer with a 3-head worst-case reward."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from test_algorithm_one import _files
from test_lm_engine import answer_margin, data, loop, make_method
from test_lm_methods import reward_gap, undecided_policy  # noqa: F401 (a fixture)

from aihf import objective
from aihf.config import ConfigError
from aihf.lm.methods import MethodConfig, bootstrap_counts
from aihf.lm.models import RewardModel
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer
from aihf.lm.train import ModelConfig, TrainConfig, build_method
from aihf.lm.trainer import Trainer

MEMBERS = torch.tensor([[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, 0.5, -1.0], [0.0, 0.0, 2.0, 1.0]])


def test_the_ensemble_rules_are_their_closed_forms():
    mean = torch.tensor([1.0, -1.0, 1.0, 1.0])
    var = torch.tensor([2.0 / 3.0, 2.0 / 3.0, 0.5, 8.0 / 3.0])  # divided by K = 3
    torch.testing.assert_close(objective.ensemble_reward(MEMBERS), mean)
    torch.testing.assert_close(objective.ensemble_reward(MEMBERS, "uwo", 0.5), mean - 0.5 * var)
    torch.testing.assert_close(objective.ensemble_reward(MEMBERS, "wco"), torch.tensor([0.0, -2.0, 0.5, -1.0]))
    for rule, penalty in (("uwo", 0.0), ("wco", 0.1), ("median", 0.0)):
        with pytest.raises(ValueError, match="uwo rule needs a penalty|unknown ensemble rule"):
            objective.ensemble_reward(MEMBERS, rule, penalty)


@pytest.mark.parametrize("form", ["linear", "logistic"])
def test_the_reward_loss_of_stacked_heads_is_the_mean_of_each_heads_own_loss(form):
    """l_R on (K, N) rewards = mean_k l_R(r_k); so head k's rewards get 1/K of the gradient
    they would get alone, and none from another head's terms."""
    generator = torch.Generator().manual_seed(0)
    rewards = [torch.randn(3, n, generator=generator, dtype=torch.float64, requires_grad=True) for n in (5, 5, 6, 6)]
    args = dict(w_demo=0.7, w_pref=1.3, demo_form=form, reward_l2=0.05)
    stacked = objective.aihf_reward_loss(*rewards, **args)
    stacked.backward()
    singles = [objective.aihf_reward_loss(*(r[k].detach().requires_grad_() for r in rewards), **args) for k in range(3)]
    assert stacked.item() == pytest.approx(torch.stack(singles).mean().item(), rel=1e-12)
    for k in range(3):
        alone = [r[k].detach().clone().requires_grad_() for r in rewards]
        objective.aihf_reward_loss(*alone, **args).backward()
        for stacked_r, single_r in zip(rewards, alone):
            torch.testing.assert_close(stacked_r.grad[k], single_r.grad / 3)
    if form == "linear":  # every demonstration against every sample: the sizes may differ
        wide = objective.aihf_reward_loss(rewards[0].detach(), torch.zeros(3, 9, dtype=torch.float64), None, None,
                                          w_pref=0.0, demo_form="linear")
        assert float(wide) == pytest.approx(-float(rewards[0].detach().mean()))


@pytest.mark.parametrize("form", ["linear", "logistic"])
def test_counts_weigh_each_record_as_often_as_a_resample_holds_it(form):
    """With each record's count in a bootstrap resample as its weight, the losses equal the
    unweighted losses on the data set that resample rebuilds (record i repeated c_i times)."""
    generator = torch.Generator().manual_seed(1)
    r_demo, r_sample, r_chosen, r_rejected = (torch.randn(6, generator=generator, dtype=torch.float64) for _ in range(4))
    counts = bootstrap_counts(6, 2, generator)
    assert counts.shape == (2, 6) and counts.sum(dim=1).tolist() == [6, 6] and not torch.equal(counts[0], counts[1])
    for c in counts:
        rows = torch.repeat_interleave(torch.arange(6), c)
        weighted = objective.aihf_reward_loss(r_demo, r_sample, r_chosen, r_rejected, 0.7, 1.3, form, 0.0,
                                              c.double(), c.double())
        rebuilt = objective.aihf_reward_loss(r_demo[rows], r_sample[rows], r_chosen[rows], r_rejected[rows], 0.7, 1.3,
                                             form, 0.0)
        assert weighted.item() == pytest.approx(rebuilt.item(), rel=1e-12)
    wide = objective.demonstration_reward_loss(r_demo, r_sample[:4], "linear", counts[0].double())
    rows = torch.repeat_interleave(torch.arange(6), counts[0])
    assert wide.item() == pytest.approx(-(r_demo[rows].mean() - r_sample[:4].mean()).item(), rel=1e-12)


def test_one_head_is_the_reward_model_it_was_and_more_heads_start_apart():
    tok = tiny_tokenizer()
    body = tiny_causal_lm(tok, seed=1).base_model
    one, three = RewardModel(copy.deepcopy(body), seed=4), RewardModel(copy.deepcopy(body), seed=4, heads=3, rule="wco")
    assert one.heads == 1 and three.heads == 3
    torch.testing.assert_close(three.head.weight[:1], one.head.weight)  # head 1 draws what a lone head draws
    assert not torch.allclose(three.head.weight[1], three.head.weight[2])
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    members = three(ids, mask, members=True)
    assert members.shape == (3, 2) and one(ids, mask, members=True).shape == (1, 2)
    torch.testing.assert_close(members[0], one(ids, mask))
    torch.testing.assert_close(three(ids, mask), members.min(dim=0).values)
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        RewardModel(copy.deepcopy(body), rule="wco")


def test_saved_heads_and_rule_come_back_and_an_older_folder_has_one_head(tmp_path):
    tok = tiny_tokenizer()
    saved = RewardModel(tiny_causal_lm(tok, seed=1).base_model, seed=2, heads=4, rule="uwo", penalty=0.3)
    saved.save(tmp_path / "rm", tok)
    loaded = RewardModel.load(tmp_path / "rm")
    assert (loaded.heads, loaded.rule, loaded.penalty) == (4, "uwo", 0.3)
    ids, mask = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
    torch.testing.assert_close(loaded(ids, mask, members=True), saved(ids, mask, members=True))
    single = RewardModel(tiny_causal_lm(tok, seed=1).base_model)
    single.save(tmp_path / "old", tok)
    meta_path = tmp_path / "old" / "aihf_reward_model.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: meta[k] for k in ("format", "version", "hidden_size")}))  # before ensembles
    assert RewardModel.load(tmp_path / "old").heads == 1


def test_the_ensemble_settings_are_checked_and_a_saved_model_must_match_them(tmp_path):
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        MethodConfig(reward_ensemble_rule="wco")
    with pytest.raises(ValueError, match="uwo rule needs a penalty"):
        MethodConfig(reward_ensemble=3, reward_ensemble_rule="uwo")
    with pytest.raises(ValueError, match="set reward_ensemble >= 2"):
        MethodConfig(reward_ensemble_resample="records")
    tok = tiny_tokenizer()
    RewardModel(tiny_causal_lm(tok, seed=1).base_model, heads=3).save(tmp_path / "rm", tok)
    config = TrainConfig(model=ModelConfig(reward_model=str(tmp_path / "rm")), data=_files(tmp_path))
    with pytest.raises(ConfigError, match="has 3 head\\(s\\) but method.reward_ensemble is 1"):
        build_method("rlhf", config)
    config.method = MethodConfig(reward_ensemble=3, reward_ensemble_rule="wco")
    method, _ = build_method("rlhf", config)
    assert (method.reward_model.heads, method.reward_model.rule) == (3, "wco")


def test_the_reward_step_of_k_heads_is_the_mean_of_k_one_head_steps(tmp_path):
    """The ``reward`` method's loss with 2 heads on a batch equals the mean of its loss with
    either head alone on a copy of the body, and the shared body's gradient is the mean of
    the two bodies' gradients."""
    tok = tiny_tokenizer()
    body = tiny_causal_lm(tok, seed=1).base_model
    pair = RewardModel(copy.deepcopy(body), seed=3, heads=2)
    losses, grads, logged = [], [], []
    for k in (None, 0, 1):
        reward = pair if k is None else RewardModel(copy.deepcopy(body), seed=3)
        if k is not None:
            with torch.no_grad():
                reward.head.weight.copy_(pair.head.weight[k:k + 1])
                reward.head.bias.copy_(pair.head.bias[k:k + 1])
        config = MethodConfig(reward_ensemble=2) if k is None else MethodConfig()
        method = make_method("reward", tok, reward=reward, config=config)
        Trainer(method, loop(tmp_path / str(k)))  # binds the method to an accelerator
        loss, metrics = method.loss({"pref": [0, 1, 2, 3]}, "train", seed=0)
        loss.backward()
        losses.append(loss.item())
        logged.append(set(metrics))
        grads.append(reward.backbone.get_input_embeddings().weight.grad.clone())
    assert "reward_heads_sd" in logged[0] and "reward_heads_sd" not in logged[1]
    assert losses[0] == pytest.approx((losses[1] + losses[2]) / 2, rel=1e-5)
    scale = float(grads[0].abs().max())
    assert scale > 1e-4  # a gradient that can disagree
    torch.testing.assert_close(grads[0], (grads[1] + grads[2]) / 2, rtol=1e-4, atol=1e-5 * scale)


def test_a_resampled_heads_full_batch_loss_is_its_loss_on_the_records_its_resample_rebuilds(tmp_path):
    """``reward_ensemble_resample: records``: the 2-head reward step on every training pair is
    the mean over heads of a one-head step on the pairs that head's resample rebuilds (pair i
    c_ki times); the counts come from loop.seed, so another seed draws others; the held-out
    split is not weighted."""
    tok = tiny_tokenizer()
    body = tiny_causal_lm(tok, seed=1).base_model
    pair = RewardModel(copy.deepcopy(body), seed=3, heads=2)
    config = MethodConfig(reward_ensemble=2, reward_ensemble_resample="records")
    method = make_method("reward", tok, reward=pair, config=config)
    Trainer(method, loop(tmp_path / "pair", seed=5))  # binds the method and draws the counts from loop.seed 5
    counts = method.resample_counts["pref"]
    demos, prefs = data()
    n = len(prefs["train"])
    assert counts.shape == (2, n) and not torch.equal(counts[0], counts[1])
    loss, _ = method.loss({"pref": list(range(n))}, "train", seed=0)
    singles = []
    for k in (0, 1):
        single = RewardModel(copy.deepcopy(body), seed=3)
        with torch.no_grad():
            single.head.weight.copy_(pair.head.weight[k:k + 1])
            single.head.bias.copy_(pair.head.bias[k:k + 1])
        rebuilt = [p for p, c in zip(prefs["train"], counts[k].long().tolist()) for _ in range(c)]
        one = make_method("reward", tok, reward=single, records=(demos, {**prefs, "train": rebuilt}))
        Trainer(one, loop(tmp_path / str(k)))
        singles.append(one.loss({"pref": list(range(n))}, "train", seed=0)[0].item())
    assert loss.item() == pytest.approx(sum(singles) / 2, rel=1e-5)
    held_out = list(range(len(prefs["eval"])))
    plain = make_method("reward", tok, reward=pair, config=MethodConfig(reward_ensemble=2))
    Trainer(plain, loop(tmp_path / "plain"))
    assert method.loss({"pref": held_out}, "eval", seed=0)[0].item() == plain.loss({"pref": held_out}, "eval", seed=0)[0].item()
    other = make_method("reward", tok, reward=pair, config=config)
    Trainer(other, loop(tmp_path / "other", seed=6))
    assert not torch.equal(other.resample_counts["pref"], counts)


def test_rlhf_with_a_worst_case_ensemble_learns_the_right_answer(tmp_path, undecided_policy):  # noqa: F811
    tok = tiny_tokenizer()
    config = MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05, reward_ensemble=3, reward_ensemble_rule="wco")
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model, seed=1, heads=3)
    result = Trainer(make_method("reward", tok, reward=reward, config=config),
                     loop(tmp_path / "reward", max_steps=12, eval_every=12)).fit()
    assert result.evaluations[-1]["eval/reward_accuracy"] == 1.0
    members = [RewardModel(copy.deepcopy(reward.backbone)) for _ in range(3)]
    for k, member in enumerate(members):  # every head learned the preferences, not only their minimum
        with torch.no_grad():
            member.head.weight.copy_(reward.head.weight[k:k + 1])
            member.head.bias.copy_(reward.head.bias[k:k + 1])
        assert reward_gap(member, tok) > 1.0, f"head {k}"
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    method = make_method("rlhf", tok, policy, reward, config)
    Trainer(method, loop(tmp_path / "policy", max_steps=15)).fit()
    assert answer_margin(policy, tok) > 2.0
    seen = []  # the policy step sees the heads' minimum on its samples
    method.policy_step = lambda samples, rewards, split: seen.append((samples, rewards)) or (rewards.sum(), {})
    method.loss({"pref": [0, 1]}, "train", seed=1)
    samples, rewards = seen[0]
    members = method._rewards([method.canonical_form(sample) for sample in samples], grad=False)
    assert members.shape == (3, 8) and not torch.allclose(members.min(dim=0).values, members.mean(dim=0))
    torch.testing.assert_close(rewards, members.min(dim=0).values)


def test_aihf_with_an_uncertainty_weighted_resampled_ensemble_learns_jointly(tmp_path, undecided_policy):  # noqa: F811
    tok = tiny_tokenizer()
    policy = tiny_causal_lm(tok)
    policy.load_state_dict(undecided_policy)
    config = MethodConfig(max_new_tokens=3, rloo_k=4, beta=0.05, reward_ensemble=3, reward_ensemble_rule="uwo",
                          reward_ensemble_penalty=0.5, reward_ensemble_resample="records")
    reward = RewardModel(tiny_causal_lm(tok, seed=1).base_model, seed=1, heads=3)
    result = Trainer(make_method("aihf", tok, policy, reward, config),
                     loop(tmp_path, max_steps=15, eval_every=15, reward_learning_rate=1e-2)).fit()
    assert reward_gap(reward, tok) > 1.0
    assert answer_margin(policy, tok) > 2.0
    assert result.evaluations[-1]["eval/reward_accuracy"] == 1.0
    spreads = [h["reward_heads_sd"] for h in result.history if "reward_heads_sd" in h]
    assert len(spreads) == len(result.history) and min(spreads) > 1e-3  # heads from their own starts disagree
