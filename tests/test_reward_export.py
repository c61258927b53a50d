"""A reward model as transformers' one-label sequence classifier (``aihf export-reward``): the
classifier's logit plus the offset is aihf's reward, checked on its own forward and with trl's
``get_reward``; the folder loads back as ``model.reward_model`` with the same rewards."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from aihf.cli import main
from aihf.lm.models import EXPORT_PAD_TOKEN, REWARD_OFFSET, RewardModel, load_causal_lm, load_reward_model
from aihf.lm.train import _reads_the_same_ids


def reward_and_tokenizer(pad_is_eos: bool = False, heads: int = 1, rule: str = "mean"):
    """The tiny model's body with seeded heads and a bias away from 0, so an export that dropped
    it would show."""
    policy, tokenizer = load_causal_lm("tiny")
    reward = RewardModel(policy.base_model, seed=3, heads=heads, rule=rule)
    with torch.no_grad():
        reward.head.bias.copy_(torch.linspace(0.2, 0.6, heads))
    if pad_is_eos:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    return reward.eval(), tokenizer


def right_padded(tokenizer, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of 5, 8 and 3 tokens, each ending in EOS (a finished response), right-padded."""
    generator = torch.Generator().manual_seed(0)
    lengths = [5, 8, 3]
    ids = torch.full((3, 8), pad_id)
    mask = torch.zeros(3, 8, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n - 1] = torch.randint(5, 500, (n - 1,), generator=generator)
        ids[row, n - 1] = tokenizer.eos_token_id
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_the_classifiers_logit_plus_the_offset_is_the_reward(pad_is_eos):
    reward, tokenizer = reward_and_tokenizer(pad_is_eos)
    classifier, exported, offset = reward.to_sequence_classification(tokenizer)
    assert offset == pytest.approx(0.2)  # GPT-NeoX's score layer has no bias: it is the offset
    assert (exported.pad_token == EXPORT_PAD_TOKEN) == pad_is_eos and exported.pad_token_id != exported.eos_token_id
    ids, mask = right_padded(tokenizer, tokenizer.pad_token_id)
    with torch.no_grad():
        ours = reward(ids, mask)
        theirs = classifier.eval()(input_ids=ids.masked_fill(mask == 0, exported.pad_token_id),
                                   attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(theirs + offset, ours, atol=1e-5, rtol=0)


def test_trls_get_reward_reads_the_exported_reward():
    from trl.experimental.utils import get_reward

    reward, tokenizer = reward_and_tokenizer(pad_is_eos=True)
    classifier, exported, offset = reward.to_sequence_classification(tokenizer)
    ids, mask = right_padded(tokenizer, tokenizer.pad_token_id)
    with torch.no_grad():
        _, theirs, _ = get_reward(classifier.eval(), ids.masked_fill(mask == 0, exported.pad_token_id),
                                  exported.pad_token_id, context_length=2)
        ours = reward(ids, mask)
    torch.testing.assert_close(theirs + offset, ours, atol=1e-5, rtol=0)


def test_an_export_loads_back_with_the_same_rewards_and_the_policys_ids(tmp_path):
    reward, tokenizer = reward_and_tokenizer(pad_is_eos=True)
    reward.save(tmp_path / "reward", tokenizer)
    assert main(["export-reward", str(tmp_path / "reward"), "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / REWARD_OFFSET).read_text())["offset"] == pytest.approx(0.2)
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").config.num_labels == 1
    loaded, loaded_tokenizer = load_reward_model(tmp_path / "hf")
    ids, mask = right_padded(tokenizer, tokenizer.pad_token_id)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask), reward(ids, mask), atol=1e-5, rtol=0)
    # the policy's tokenizer (pad = EOS) reads the same ids; one more real token would not
    assert _reads_the_same_ids(tokenizer, loaded_tokenizer)
    other = copy.deepcopy(loaded_tokenizer)
    other.add_tokens(["<|another|>"])
    assert not _reads_the_same_ids(tokenizer, other)


def test_a_mean_ensemble_exports_and_a_worst_case_does_not():
    reward, tokenizer = reward_and_tokenizer(heads=3)
    classifier, exported, offset = reward.to_sequence_classification(tokenizer)
    ids, mask = right_padded(tokenizer, tokenizer.pad_token_id)
    with torch.no_grad():
        theirs = classifier.eval()(input_ids=ids, attention_mask=mask).logits[:, 0]
        torch.testing.assert_close(theirs + offset, reward(ids, mask), atol=1e-5, rtol=0)
    worst, tokenizer = reward_and_tokenizer(heads=3, rule="wco")
    with pytest.raises(ValueError, match="only rule 'mean'"):
        worst.to_sequence_classification(tokenizer)


def test_a_folder_that_holds_no_reward_model_is_refused(tmp_path, capsys):
    policy, tokenizer = load_causal_lm("tiny")
    policy.save_pretrained(tmp_path / "policy")
    assert main(["export-reward", str(tmp_path / "policy"), "--out", str(tmp_path / "hf")]) == 2
    assert "is not a saved reward model" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()


@pytest.mark.e2e
def test_rlhf_trains_its_policy_on_an_exported_reward_without_a_reward_stage(tmp_path):
    from test_run_safety import config

    from aihf.lm.train import train

    reward, tokenizer = reward_and_tokenizer(pad_is_eos=True)
    reward.save(tmp_path / "reward", tokenizer)
    assert main(["export-reward", str(tmp_path / "reward"), "--out", str(tmp_path / "hf")]) == 0
    out = tmp_path / "run"
    result = train("rlhf", config(tmp_path, f"loop.output_dir={out}", f"model.reward_model={tmp_path / 'hf'}",
                                  "loop.max_steps=2", "method.max_new_tokens=3", "method.rloo_k=2"))
    assert len(result.history) == 2 and not (out / "reward").exists()
