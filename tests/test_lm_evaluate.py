"""`aihf eval`: implicit-reward preference accuracy and demonstration likelihood on held-out data."""

import json
import math

import pytest
import torch

from aihf.cli import main
from aihf.data import Demonstration, Preference, write_jsonl
from aihf.lm.evaluate import evaluate, preference_metrics
from aihf.lm.models import RewardModel
from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tokenizer = tiny_tokenizer()
    for name, seed in (("policy", 0), ("reference", 1)):
        model = tiny_causal_lm(tokenizer, seed=seed)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    prefs = [
        Preference("review:", " the movie was great", " the movie was terrible"),
        Preference("the film", " is good", " is bad and boring"),
        Preference("my opinion:", " wonderful", " awful"),
    ]
    demos = [Demonstration("review:", " the movie was great"), Demonstration("the film", " is good fun")]
    write_jsonl(prefs, root / "prefs.jsonl")
    write_jsonl(demos, root / "demos.jsonl")
    return root, tokenizer, prefs, demos


def _logprob_by_hand(model, tokenizer, prompt, response):
    """log pi(response | prompt) one token at a time, without padding or batching."""
    prompt_ids = tokenizer(prompt).input_ids
    ids = prompt_ids + tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    total = 0.0
    with torch.no_grad():
        for t in range(len(prompt_ids), len(ids)):
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1]
            total += float(torch.log_softmax(logits.double(), -1)[ids[t]])
    return total, len(ids) - len(prompt_ids)


def test_demonstration_likelihood_matches_token_by_token(saved):
    root, tokenizer, _, demos = saved
    metrics = evaluate(str(root / "policy"), demonstrations=root / "demos.jsonl")
    model = tiny_causal_lm(tokenizer, seed=0).eval()
    by_hand = [_logprob_by_hand(model, tokenizer, d.prompt, d.response) for d in demos]
    assert metrics["demo_logprob_sum"] == pytest.approx(sum(t for t, _ in by_hand) / 2, abs=1e-4)
    token_mean = sum(t for t, _ in by_hand) / sum(n for _, n in by_hand)
    assert metrics["demo_logprob_token_mean"] == pytest.approx(token_mean, abs=1e-5)
    assert metrics["demo_perplexity"] == pytest.approx(math.exp(-token_mean), rel=1e-4)


def test_implicit_reward_accuracy(saved):
    root, tokenizer, prefs, _ = saved
    against_itself = evaluate(str(root / "policy"), preferences=root / "prefs.jsonl", reference_path=str(root / "policy"))
    assert against_itself["preference_accuracy"] == 0.5 and against_itself["reward_margin"] == 0.0
    metrics = evaluate(str(root / "policy"), preferences=root / "prefs.jsonl", reference_path=str(root / "reference"), beta=0.5)
    policy, reference = tiny_causal_lm(tokenizer, seed=0).eval(), tiny_causal_lm(tokenizer, seed=1).eval()
    reward = lambda p, y: 0.5 * (_logprob_by_hand(policy, tokenizer, p, y)[0] - _logprob_by_hand(reference, tokenizer, p, y)[0])  # noqa: E731
    margins = [reward(p.prompt, p.chosen) - reward(p.prompt, p.rejected) for p in prefs]
    assert metrics["reward_margin"] == pytest.approx(sum(margins) / 3, abs=1e-4)
    assert metrics["preference_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / 3)


def test_reward_model_directory(saved, tmp_path):
    root, tokenizer, prefs, _ = saved
    reward_model = RewardModel.from_causal_lm(tiny_causal_lm(tokenizer, seed=2), seed=3)
    reward_model.save(tmp_path / "rm", tokenizer)
    metrics = evaluate(str(tmp_path / "rm"), preferences=root / "prefs.jsonl")
    reloaded = RewardModel.load(tmp_path / "rm").eval()

    def reward(prompt, response):  # one unpadded sequence at a time, EOS appended as the encoder does
        ids = tokenizer(prompt).input_ids + tokenizer(response, add_special_tokens=False).input_ids
        ids = torch.tensor([ids + [tokenizer.eos_token_id]])
        with torch.no_grad():
            return float(reloaded(ids, torch.ones_like(ids)))

    margins = [reward(p.prompt, p.chosen) - reward(p.prompt, p.rejected) for p in prefs]
    assert metrics["pairs"] == 3
    assert metrics["reward_margin"] == pytest.approx(sum(margins) / 3, abs=1e-5)
    assert metrics["preference_accuracy"] == pytest.approx(sum(m > 0 for m in margins) / 3)
    with pytest.raises(ValueError, match="no likelihood"):
        evaluate(str(tmp_path / "rm"), demonstrations=root / "demos.jsonl")


def test_ties_count_half():
    out = preference_metrics(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 2.0, 1.0]))
    assert out["preference_accuracy"] == pytest.approx(0.5) and out["reward_margin"] == pytest.approx(0.0)


def test_cli_eval_writes_json(saved, tmp_path, capsys):
    root, *_ = saved
    out = tmp_path / "m.json"
    code = main(["eval", "--model", str(root / "policy"), "--demonstrations", str(root / "demos.jsonl"), "--output", str(out)])
    assert code == 0
    assert json.loads(out.read_text())["demonstrations"] == 2
    assert "demo_perplexity" in capsys.readouterr().out


def test_cli_eval_reports_bad_data_file(saved, tmp_path, capsys):
    root, *_ = saved
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "same", "rejected": "same"}\n')
    assert main(["eval", "--model", str(root / "policy"), "--preferences", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 1" in err and "rejected" in err


def test_cli_eval_reads_a_saved_dataset_as_it_reads_the_file(saved, tmp_path):
    """--preferences names a save_to_disk folder (or a hub dataset) instead of a file: the same metrics."""
    import datasets

    root, _, prefs, _ = saved
    datasets.Dataset.from_list([p.to_dict() for p in prefs]).save_to_disk(tmp_path / "held-out")
    outputs = []
    for source in (root / "prefs.jsonl", tmp_path / "held-out"):
        out = tmp_path / f"{source.stem}.json"
        assert main(["eval", "--model", str(root / "policy"), "--reference", str(root / "reference"),
                     "--preferences", str(source), "--output", str(out)]) == 0
        outputs.append(json.loads(out.read_text()))
    assert outputs[0] == outputs[1] and outputs[0]["pairs"] == 3


def test_cli_eval_reads_renamed_columns_as_it_reads_aihfs(saved, tmp_path, capsys):
    """--columns (as aihf train's data.columns): held-out rows under other column names give the
    metrics of the rows under aihf's; a bad mapping is one error naming the flag."""
    root, _, prefs, demos = saved
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"q": p.prompt, "a": p.chosen, "b": p.rejected}) + "\n" for p in prefs))
    outputs = []
    for source, columns in ((root / "prefs.jsonl", []), (renamed, ["--columns", "{preferences: {prompt: q, chosen: a, rejected: b}}"])):
        out = tmp_path / f"{source.stem}.json"
        assert main(["eval", "--model", str(root / "policy"), "--reference", str(root / "reference"),
                     "--preferences", str(source), "--output", str(out), *columns]) == 0
        outputs.append(json.loads(out.read_text()))
    assert outputs[0] == outputs[1] and outputs[0]["pairs"] == 3
    assert main(["eval", "--model", str(root / "policy"), "--preferences", str(renamed),
                 "--columns", "{prefs: {prompt: q}}"]) == 2
    assert "--columns: 'prefs' is not a data key" in capsys.readouterr().err
