"""IMDb setting's building blocks: split, prompts, gold reward, judge, data building, metrics, plots."""

import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aihf.config import ConfigError
from aihf.data import builders
from aihf.data.builders import BuildConfig, RatioSweep, ScoredResponse
from aihf.eval import gold, metrics, plots
from aihf.eval.judge import VaderJudge
from aihf.eval.stats import mean_interval
from aihf.experiments.imdb import data
from aihf.runtime import provenance


@pytest.fixture(scope="module")
def reviews():
    return data.load_reviews()


# ------------------------------------------------------------------------------- data


def test_reviews_are_the_25k_imdb_rows_without_html(reviews):
    assert len(reviews) == 25_000
    assert sorted(np.bincount(reviews.labels)) == [12_500, 12_500]
    assert not any("<br" in text for text in reviews.texts[:2000])
    assert data.clean_text("Good.<br /><br />Really &amp; truly") == "Good. Really & truly"


def test_split_is_deterministic_saved_and_reloaded(reviews, tmp_path):
    config, prompt_config = data.SplitConfig(seed=3, eval_prompts=500), data.PromptConfig()
    split = data.make_split(reviews, config, prompt_config)
    assert split == data.make_split(reviews, config, prompt_config)
    other_seed = data.SplitConfig(seed=4, eval_prompts=500)
    assert split.sft != data.make_split(reviews, other_seed, prompt_config).sft

    path = tmp_path / "split.json"
    assert data.load_or_make_split(path, reviews, config, prompt_config) == split  # made and saved
    assert data.Split.load(path) == split
    assert data.load_or_make_split(path, reviews, config, prompt_config) == split  # reloaded
    with pytest.raises(ValueError, match="was made with"):
        data.load_or_make_split(path, reviews, other_seed, prompt_config)
    with pytest.raises(ValueError, match="was made with"):
        data.load_or_make_split(path, reviews, config, data.PromptConfig(max_words=6))
    other_source = data.Reviews(reviews.texts, reviews.labels, "0" * 64)
    with pytest.raises(ValueError, match="another review file"):
        data.load_or_make_split(path, other_source, config, prompt_config)
    saved = json.loads(path.read_text())
    assert saved.pop("rules") == data.SPLIT_RULES
    path.write_text(json.dumps(saved))  # a split made before duplicates were dropped: refused, not reused
    with pytest.raises(ValueError, match="made by split rules 1, not 2"):
        data.load_or_make_split(path, reviews, config, prompt_config)


def test_split_subsets_are_disjoint_and_eval_prompts_never_seen_in_training(reviews):
    prompt_config = data.PromptConfig()
    split = data.make_split(reviews, data.SplitConfig(eval_prompts=1000), prompt_config)
    parts = {name: set(indices) for name, indices in split.subsets().items()}
    unique = data.unique_reviews(reviews)  # 98 reviews repeat an earlier review's text: in no subset
    assert len(unique) == 24_902 and len({reviews.texts[i] for i in unique}) == len(unique)
    assert {name: len(p) for name, p in parts.items()} == {
        "sft": 7471, "build": 9961, "train_prompts": 6470, "eval_prompts": 1000,
    }
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not parts[a] & parts[b], (a, b)
    assert set.union(*parts.values()) == set(unique)
    text = lambda name: set(data.prompts(reviews, split.subsets()[name], prompt_config, seed=0))  # noqa: E731
    eval_texts = text("eval_prompts")
    assert len(eval_texts) == 1000
    for name in ("sft", "build", "train_prompts"):
        assert not eval_texts & text(name), name
    # no evaluation prompt is a word-prefix of a training-side review (whose continuation training saw)
    training_side = [reviews.texts[i] for name in ("sft", "build", "train_prompts") for i in split.subsets()[name]]
    assert not opened(eval_texts, training_side)


def opened(prompts, texts):
    """The prompts that are a word-prefix of one of ``texts`` (the whole text included)."""
    openings = {" ".join(t.split()[:k]) for t in texts for k in range(1, 9)}  # prompts have at most 8 words
    return {p for p in prompts if p in openings}


def test_unrepeated_prompts_open_no_other_review():
    # prompt lengths drawn with seed 0 for 6 reviews; "If ever" opens review 1 without being its prompt
    texts = ("If ever a film was long", "If ever there was a film it is this one", "Great fun from start to end",
             "Great fun from start to end", "Dull", "A film")
    fake = data.Reviews(texts, np.zeros(len(texts), dtype=np.int64), "a" * 64)
    config = data.PromptConfig(min_words=2, max_words=2, response_words=5)
    prompts = data.prompts(fake, range(len(texts)), config, seed=0)
    assert prompts == ["If ever", "If ever", "Great fun", "Great fun", "Dull", "A"]
    assert data.unique_reviews(fake) == [0, 1, 2, 4, 5]
    # "If ever" opens two reviews; "Great fun" opens one review text (repeated once: counted once);
    # "A" (a one-word review's prompt) opens "A film" only
    assert data.unrepeated_prompts(fake, range(len(texts)), config, seed=0) == [2, 3, 4, 5]
    assert opened({"If ever"}, texts[1:]) == {"If ever"}
def test_rl_and_validation_prompts_split_the_training_prompts(reviews):
    split = data.make_split(reviews, data.SplitConfig(eval_prompts=1000), data.PromptConfig())
    rl, validation = data.prompt_subsets(reviews, split, 200, None)
    assert (len(rl), len(validation)) == (6270, 200)
    assert set(rl) | set(validation) == set(split.train_prompts) and not set(rl) & set(validation)
    assert data.prompt_subsets(reviews, split, 200, 50) == (rl[:50], validation)
    text = lambda indices: set(data.prompts(reviews, indices, split.prompt_config, seed=0))  # noqa: E731
    assert len(text(validation)) == 200 and not text(validation) & text(rl + split.sft + split.build)
    assert not opened(text(validation), [reviews.texts[i] for i in rl + split.sft + split.build])
    with pytest.raises(ValueError, match="num_validation_prompts"):
        data.prompt_subsets(reviews, split, 6500, None)


def test_prompts_and_sft_demonstrations(reviews):
    cfg = data.PromptConfig(min_words=2, max_words=8, response_words=10)
    indices = list(range(200))
    prompts = data.prompts(reviews, indices, cfg, seed=0)
    assert prompts == data.prompts(reviews, indices, cfg, seed=0)
    assert {len(p.split()) for p in prompts} == set(range(2, 9))
    demos = data.sft_demonstrations(reviews, indices, cfg, seed=0)
    for i, prompt, demo in zip(indices, prompts, demos):
        assert demo.prompt == prompt
        rest = len(reviews.texts[i].split()) - len(prompt.split())
        assert demo.response.startswith(" ") and len(demo.response.split()) == min(10, rest)
        assert reviews.texts[i].startswith(demo.prompt + demo.response)
        assert demo.finished == (rest <= 10)  # EOS only where the review ends
    short = data.Reviews(("one two three", "a b c d e f g h i j k l m n o p q r s t u v w x y z"), np.array([1, 0]), "test")
    whole, cut = data.sft_demonstrations(short, [0, 1], cfg, seed=0)
    assert whole.finished and (whole.prompt + whole.response) == "one two three"
    assert not cut.finished and len(cut.response.split()) == 10


# ------------------------------------------------------------------------------- gold


@pytest.fixture(scope="module")
def small_gold(reviews, tmp_path_factory):
    """Unigram gold fitted on 3,000 reviews (the real one: 20,000 reviews, bigrams; docs/imdb.md)."""
    config = gold.GoldConfig(max_train=3000, max_heldout=1000, ngram_max=1, max_features=None)
    cache = tmp_path_factory.mktemp("cache")
    return gold.load_gold(reviews, config, cache_dir=cache), config, cache


def test_gold_accuracy_on_heldout_reviews(reviews, small_gold):
    scorer, config, _ = small_gold
    train, heldout = gold.gold_split(len(reviews), config)
    assert not set(train) & set(heldout) and len(heldout) == scorer.num_heldout == 1000
    # measured 0.869 for this subset fit (0.904 for the full fit); a lower bound with slack
    assert scorer.heldout_accuracy >= 0.84
    assert scorer.heldout_accuracy == gold.accuracy_of(
        scorer, [reviews.texts[i] for i in heldout], reviews.labels[heldout]
    )
    good, bad = scorer.score(["a wonderful, moving film, I loved it", "a dull, awful waste of time"])
    assert good > 0 > bad


def test_gold_cache_round_trip_gives_identical_scores(reviews, small_gold, monkeypatch):
    scorer, config, cache = small_gold
    directory = gold.gold_cache_dir(config, reviews.source_sha256, cache)
    assert {p.name for p in directory.iterdir()} == {"gold.json", "gold.npz"}
    monkeypatch.setattr(gold, "fit_gold", lambda *a: pytest.fail("the cached scorer was refitted"))
    again = gold.load_gold(reviews, config, cache_dir=cache)
    texts = list(reviews.texts[:300]) + ["", "great"]
    np.testing.assert_array_equal(again.score(texts), scorer.score(texts))
    assert again.heldout_accuracy == scorer.heldout_accuracy


def test_gold_cache_dir_follows_aihf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AIHF_CACHE", str(tmp_path))
    where = lambda config, source: gold.gold_cache_dir(config, source)  # noqa: E731
    assert where(gold.GoldConfig(), "abc").parent == tmp_path
    assert where(gold.GoldConfig(), "abc") == where(gold.GoldConfig(), "abc")
    variants = {where(gold.GoldConfig(), "abc"), where(gold.GoldConfig(C=1.0), "abc"), where(gold.GoldConfig(), "abd")}
    assert len(variants) == 3


def test_gold_scorer_matches_scikit_learn_pipeline():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    words = ["good", "great", "fine", "bad", "awful", "poor", "plot", "actor", "film", "the"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(200)]
    count = lambda text, group: sum(text.split().count(w) for w in group)  # noqa: E731
    labels = np.array([count(t, words[:3]) > count(t, words[3:6]) for t in texts], dtype=np.int64)
    fake = data.Reviews(tuple(texts), labels, "f" * 64)
    config = gold.GoldConfig(min_df=1, max_features=None, heldout_fraction=0.25)
    scorer = gold.fit_gold(fake, config)
    train, _ = gold.gold_split(len(fake), config)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    features = vectorizer.fit_transform([texts[i] for i in train])
    classifier = LogisticRegression(C=config.C, max_iter=2000).fit(features, labels[train])
    probe = texts + ["good good good film", "awful", "unseen words only"]
    expected = classifier.decision_function(vectorizer.transform(probe))
    np.testing.assert_allclose(scorer.score(probe), expected, atol=1e-9)


# ------------------------------------------------------------------------------- judge


def test_vader_judge_orders_sentiment():
    judge = VaderJudge()
    scores = judge.score(["This movie was wonderful, I loved every minute.", "A boring, awful mess. I hated it."])
    assert scores.dtype == np.float64 and scores.shape == (2,)
    assert scores[0] > 0.5 > -0.5 > scores[1]


def test_minilm_judge_fits_caches_and_orders_sentiment(tmp_path, monkeypatch):
    from aihf.eval import judge

    subjects = ["The film", "This movie", "The acting", "The story", "The ending", "The script"]
    good = ["wonderful", "brilliant", "delightful", "moving", "superb"]
    bad = ["awful", "boring", "terrible", "dreadful", "painful"]
    texts = [f"{s} was {a}." for s in subjects for a in good + bad]
    labels = np.array([int(a in good) for s in subjects for a in good + bad])
    reviews = data.Reviews(tuple(texts), labels, "e" * 64)
    config = judge.MiniLMJudgeConfig(num_train=40, num_heldout=20, max_tokens=16)
    fitted, report = judge.load_minilm_judge(reviews, config, cache_dir=tmp_path)
    assert report["num_train"] == 40 and report["heldout_accuracy"] >= 0.8
    monkeypatch.setattr(judge, "fit_minilm_judge", lambda *a: pytest.fail("the cached head was refitted"))
    monkeypatch.setenv("AIHF_CACHE", str(tmp_path))
    cached, again = judge.make_judge("minilm", reviews, config)
    assert again == report and cached.name == "minilm"
    assert judge.make_judge("vader", reviews, config)[1] == {}
    probe = ["An utterly delightful, moving picture.", "A dreadful, boring waste of film."]
    np.testing.assert_allclose(cached.score(probe), fitted.score(probe), rtol=0, atol=1e-12)
    assert fitted.score(probe)[0] > 0 > fitted.score(probe)[1]


# ---------------------------------------------------------------------------- builders


def _samples(num_prompts, per_prompt, seed=0):
    rng = np.random.default_rng(seed)
    return [
        ScoredResponse(f"prompt {p}", f" response {p}.{k}", float(rng.normal()), finished=(p + k) % 3 == 0)
        for p in range(num_prompts)
        for k in range(per_prompt)
    ]


def test_build_datasets_counts_disjoint_prompts_and_quality():
    samples = _samples(300, 3) + [ScoredResponse("prompt 0", " response 0.0", 0.0, True)]  # a repeat is dropped
    config = BuildConfig(num_demonstrations=100, num_preferences=80, seed=1)
    built = builders.build_datasets(samples, config)
    assert len(built.demonstrations) == 100 and len(built.preferences) == 80
    assert built.report["prompts"] == 300 and built.report["responses"] == 900
    assert not {d.prompt for d in built.demonstrations} & {p.prompt for p in built.preferences}
    assert built == builders.build_datasets(samples, config)
    gold_of = {(s.prompt, s.response): s.gold for s in samples[:900]}
    best_of_prompt: dict[str, float] = {}
    for (prompt, _), value in gold_of.items():
        best_of_prompt[prompt] = max(best_of_prompt.get(prompt, -math.inf), value)
    demo_gold = [gold_of[d.prompt, d.response] for d in built.demonstrations]
    assert demo_gold == [best_of_prompt[d.prompt] for d in built.demonstrations]  # each prompt's best answer
    # the pool is 2 x 100 prompts: skip its top half and take the next 100, the pool's bottom half
    low = builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=80, demo_skip_top=0.5, seed=1))
    low_gold = [gold_of[d.prompt, d.response] for d in low.demonstrations]
    assert not {d.prompt for d in built.demonstrations} & {d.prompt for d in low.demonstrations}
    assert min(demo_gold) >= max(low_gold) and low.preferences == built.preferences
    assert not {d.prompt for d in low.demonstrations} & {p.prompt for p in built.preferences}
    assert low.report["mean_gold_demonstrations"] < built.report["mean_gold_demonstrations"]
    with pytest.raises(ValueError, match="prompts with two distinct responses, only 6 of the 6 prompts left"):
        builders.build_datasets(_samples(10, 2), BuildConfig(num_preferences=7, num_demonstrations=2))
    with pytest.raises(ValueError, match="a demonstration pool of 12 prompts .* only 10 were answered"):
        builders.build_datasets(_samples(10, 2), BuildConfig(num_preferences=0, num_demonstrations=6))
    with pytest.raises(ValueError, match="only 5 are left"):
        builders.build_datasets(_samples(10, 2), BuildConfig(num_demonstrations=5, demo_pool_factor=1, demo_skip_top=0.2, num_preferences=0))
    with pytest.raises(ValueError, match="demo_pool_factor must be >= 1"):
        BuildConfig(demo_pool_factor=0.5)


def test_demonstrations_do_not_depend_on_the_number_of_preferences():
    """balanced and few-preferences (same demonstration options) get the very same D."""
    from aihf.experiments.imdb.presets import load_preset

    (balanced,), (few,) = load_preset("balanced").settings, load_preset("few-preferences").settings
    assert (balanced.num_demonstrations, balanced.demo_skip_top) == (few.num_demonstrations, few.demo_skip_top)
    assert few.num_preferences < balanced.num_preferences
    samples = _samples(3000, 2, seed=4)
    a, b = builders.build_datasets(samples, balanced), builders.build_datasets(samples, few)
    assert a.demonstrations == b.demonstrations and len(a.demonstrations) == 1000
    assert a.report["mean_gold_demonstrations"] == b.report["mean_gold_demonstrations"]
    assert len(b.preferences) == few.num_preferences and {p.prompt for p in b.preferences} <= {p.prompt for p in a.preferences}
    # the ratio sweep's settings differ in num_demonstrations; each still gets a pool of 2 x its count
    for setting in load_preset("ratio-sweep").all_settings():
        assert setting.demo_pool == 2 * setting.num_demonstrations


def test_held_out_preferences_change_nothing_else_and_are_shared_across_settings():
    samples = _samples(700, 2, seed=5)
    plain = builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=300, seed=1))
    held = builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=300, num_eval_preferences=50, seed=1))
    fewer = builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=30, num_eval_preferences=50, seed=1))
    assert held.demonstrations == plain.demonstrations and held.preferences == plain.preferences
    assert len(held.eval_preferences) == 50 and held.eval_preferences == fewer.eval_preferences
    used = {r.prompt for r in held.preferences} | {d.prompt for d in held.demonstrations}
    assert not used & {p.prompt for p in held.eval_preferences}
    with pytest.raises(ValueError, match="held-out"):
        builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=300, num_eval_preferences=400, seed=1))


def test_built_records_keep_whether_each_answer_finished():
    samples = _samples(300, 3)
    finished = {(s.prompt, s.response): s.finished for s in samples}
    built = builders.build_datasets(samples, BuildConfig(num_demonstrations=100, num_preferences=80, seed=1))
    assert [d.finished for d in built.demonstrations] == [finished[d.prompt, d.response] for d in built.demonstrations]
    for p in built.preferences:
        assert (p.chosen_finished, p.rejected_finished) == (finished[p.prompt, p.chosen], finished[p.prompt, p.rejected])
    flags = lambda values: float(np.mean(list(values)))  # noqa: E731
    assert built.report["finished_all"] == flags(finished.values()) == pytest.approx(1 / 3)
    assert built.report["finished_demonstrations"] == flags(d.finished for d in built.demonstrations)
    assert built.report["finished_chosen"] == flags(p.chosen_finished for p in built.preferences)
    assert built.report["finished_rejected"] == flags(p.rejected_finished for p in built.preferences)
    assert 0 < built.report["finished_chosen"] < 1 and 0 < built.report["finished_rejected"] < 1
    assert any(not d.finished for d in built.demonstrations) and any(d.finished for d in built.demonstrations)


def test_preferences_follow_the_gold_reward_when_gaps_are_large():
    samples = [ScoredResponse(f"p{i}", r, g, True) for i in range(500) for r, g in ((" good", 8.0), (" bad", -8.0))]
    built = builders.build_datasets(samples, BuildConfig(num_demonstrations=0, num_preferences=500))
    assert all(p.chosen == " good" for p in built.preferences)
    assert built.report["preferences_agreeing_with_gold"] == 1.0


def test_ratio_sweep_settings():
    settings = RatioSweep(total=1000, demo_fractions=[0.1, 0.5], demo_skip_top=0.2).settings()
    assert [(s.name, s.num_demonstrations, s.num_preferences, s.demo_skip_top) for s in settings] == [
        ("ratio-0.1", 100, 900, 0.2), ("ratio-0.5", 500, 500, 0.2),
    ]
    with pytest.raises(ValueError, match="demo_fractions"):
        RatioSweep(demo_fractions=[0.5, 1.5])


# ----------------------------------------------------------------------------- metrics


def test_win_rate_counts_ties_as_half():
    assert metrics.win_rate([1.0, 2.0, 3.0, 0.0], [0.0, 2.0, 4.0, -1.0]) == (1 + 0.5 + 0 + 1) / 4
    with pytest.raises(ValueError):
        metrics.win_rate([1.0], [1.0, 2.0])


class _BigramLM(torch.nn.Module):
    """logits at position t = table[token t]: log pi(y|x) is a sum of table log-softmax entries."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    @property
    def device(self):
        return self.table.device

    def forward(self, input_ids, attention_mask, use_cache=None):
        return type("Out", (), {"logits": self.table[input_ids]})


def test_kl_to_reference_against_hand_computation():
    policy_table = [[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    ref_table = [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]]
    samples = [([0], [1, 2]), ([1, 2], [0]), ([2], [2, 2, 1])]

    def logp(table, prompt, response):
        tokens, total = prompt + response, 0.0
        for t in range(len(prompt), len(tokens)):
            row = table[tokens[t - 1]]
            total += row[tokens[t]] - math.log(sum(math.exp(v) for v in row))
        return total

    expected = np.mean([logp(policy_table, p, r) - logp(ref_table, p, r) for p, r in samples])
    policy, reference = _BigramLM(policy_table), _BigramLM(ref_table)
    for batch_size in (1, 2, 16):  # padding and batching change nothing
        kl = metrics.kl_to_reference(policy, reference, samples, pad_id=0, batch_size=batch_size)
        assert kl == pytest.approx(expected, abs=1e-5)
    assert metrics.kl_to_reference(policy, policy, samples, pad_id=0) == 0.0
    # bfloat16 weights (a bf16 run on a GPU): log-probs still come out in float32
    from aihf.lm.evaluate import sequence_scores

    policy16, reference16 = policy.to(torch.bfloat16), reference.to(torch.bfloat16)
    assert sequence_scores(policy16, samples, pad_id=0)[0].dtype == torch.float32
    assert metrics.kl_to_reference(policy16, reference16, samples, pad_id=0) == pytest.approx(expected, abs=0.05)


def test_sampling_and_kl_with_a_bfloat16_model():
    from aihf.experiments.imdb.sampling import generate
    from aihf.lm.models import load_causal_lm

    model, tokenizer = load_causal_lm("tiny", "bfloat16", device="cpu")
    model.eval()
    answers = generate(model, tokenizer, ["a good film", "the plot was", "bad"], 6, 8, seed=0, batch_size=2)
    assert len(answers.responses) == 3 and all(len(response) <= 6 for _, response in answers.sequences)
    again = generate(model, tokenizer, ["a good film", "the plot was", "bad"], 6, 8, seed=0, batch_size=2)
    assert again.sequences == answers.sequences  # per-batch seeds: reproducible
    eos = {tokenizer.eos_token_id, *([model.generation_config.eos_token_id] if model.generation_config.eos_token_id is not None else [])}
    assert answers.finished == [bool(r) and r[-1] in eos for _, r in answers.sequences]
    assert all(len(r) == 6 for (_, r), done in zip(answers.sequences, answers.finished) if not done)
    for (_, ids), text, done, same in zip(answers.sequences, answers.responses, answers.finished, answers.round_trips):
        assert same == (tokenizer(text, add_special_tokens=False).input_ids == (ids[:-1] if done else ids))
    assert metrics.kl_to_reference(model, model, answers.sequences, tokenizer.pad_token_id) == 0.0


def test_generation_metrics_and_summaries():
    run = metrics.generation_metrics(np.array([1.0, 3.0]), np.array([0.5, -0.1]), np.array([2.0, 3.0]), kl=0.7)
    assert run == pytest.approx({"gold_reward": 2.0, "judge": 0.2, "kl": 0.7, "win_rate": 0.25})
    runs = [{"gold_reward": v, "judge": 0.0, "kl": 1.0, "win_rate": 0.5} for v in (1.0, 2.0, 3.0)]
    summary = metrics.summarise_runs(runs)
    # mean 2, sample sd 1, t_{0.975, 2} = 4.302653: half-width 4.302653 / sqrt(3)
    assert summary["gold_reward"]["mean"] == 2.0
    assert summary["gold_reward"]["ci95"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert summary["kl"] == mean_interval([1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------- plots


def test_write_outputs(tmp_path, figure_texts):
    stat = lambda m, c: {"mean": m, "ci95": c, "n": 3}  # noqa: E731
    entry = lambda g: {  # noqa: E731
        "runs": [],
        "gold_reward": stat(g, 0.1),
        "judge": stat(0.2, 0.05),
        "kl": stat(1.5, float("nan")),
        "win_rate": stat(0.6, 0.02),
    }
    results = {
        "judge": {"name": "vader"},
        "settings": {"balanced": {"aihf": entry(1.25), "dpo": entry(0.5)}, "few-preferences": {"aihf": entry(1.0)}},
    }
    paths = plots.write_outputs(results, tmp_path)
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    table = paths["table"].read_text().splitlines()
    assert len(table) == 2 + 3
    assert table[0] == "| setting | method | gold reward | judge score (vader) | KL to pi_SFT | win rate vs SFT |"
    assert table[2].startswith("| balanced | aihf | 1.250 ± 0.100 | 0.200 ± 0.050 | 1.500 | 0.600 ± 0.020 |")
    # every plot says what its error bars are; each bar chart has a title naming its metric
    bars = "error bars: 95% t-interval over 3 seeds"
    assert any(bars in text for text in figure_texts["reward_vs_kl.png"])
    for metric in metrics.METRICS:
        assert f"{plots.label(results, metric)} per setting and method\n{bars}" in figure_texts[f"{metric}.png"]
    results["settings"]["balanced"]["dpo"]["gold_reward"]["n"] = 2
    plots.write_outputs(results, tmp_path)
    assert any(text.endswith("\nerror bars: 95% t-interval over 2-3 seeds") for text in figure_texts["gold_reward.png"])

    # runs that recorded their training losses add a second table: means over seeds
    results["settings"]["balanced"]["dpo"]["runs"] = [
        {"train_loss_first": 0.7, "train_loss_last": 0.2}, {"train_loss_first": 0.6, "train_loss_last": 0.4},
    ]
    table = plots.write_outputs(results, tmp_path)["table"].read_text().splitlines()
    assert table[-3:] == [
        "| setting | method | training loss, first 10 steps | last 10 steps |", "|---|---|---|---|",
        "| balanced | dpo | 0.6500 | 0.3000 |",
    ]


# ----------------------------------------------------------------------------- presets


def test_presets_load_with_overrides(tmp_path):
    from aihf.config import ConfigError, load_config, save_config
    from aihf.experiments.imdb import presets

    assert {"balanced", "few-preferences", "low-quality-demos", "ratio-sweep"} <= set(presets.preset_names())
    for name in presets.preset_names():
        config = presets.load_preset(name)
        assert config.all_settings()
        save_config(config, tmp_path / f"{name}.yaml")  # what a run writes next to its results
        assert load_config(presets.ImdbConfig, tmp_path / f"{name}.yaml") == config
    balanced = presets.load_preset("balanced", ["split.seed=7", "settings=[{name: b, num_preferences: 10}]"])
    assert balanced.split.seed == 7
    assert [(s.name, s.num_demonstrations, s.num_preferences) for s in balanced.all_settings()] == [("b", 1000, 10)]
    sweep = presets.load_preset("ratio-sweep").all_settings()
    assert [s.num_demonstrations + s.num_preferences for s in sweep] == [2000] * 5
    assert presets.load_preset("low-quality-demos").all_settings()[0].demo_skip_top == 0.5
    with pytest.raises(ConfigError, match="unknown IMDb preset"):
        presets.load_preset("no-such-preset")
    with pytest.raises(ConfigError, match="unknown key"):
        presets.load_preset("balanced", ["gold.bogus=1"])
    with pytest.raises(ConfigError, match="methods must be"):
        presets.load_preset("balanced", ["methods=[reward]"])
    two = ["settings=[{name: a}, {name: b}]", "setting_variants={a: {dpo: {method: {beta: 0.5}}}}"]
    assert [s.name for s in presets.load_preset("balanced", [*two, "run_settings=[b]"]).settings_to_run()] == ["b"]
    assert [s.name for s in presets.load_preset("balanced", two).settings_to_run()] == ["a", "b"]
    with pytest.raises(ConfigError, match="run_settings must name distinct settings"):
        presets.load_preset("balanced", [*two, "run_settings=[c]"])


def test_a_folder_continues_when_its_preset_gains_a_setting(tmp_path):
    """``claim_output_dir`` compares ``settings`` by name: a folder made when the preset listed two
    settings continues with a third added (and with one left out); an entry that both name but that
    differs is still refused, as is an entry's key missing from the saved config unless at its default."""
    from aihf.experiments.imdb import pipeline, presets

    a, b, c = ("{name: a, num_preferences: 10}", "{name: b, num_preferences: 20}", "{name: c, num_preferences: 5}")
    out = tmp_path / "run"
    pipeline.claim_output_dir(out, presets.load_preset("balanced", [f"settings=[{a}, {b}]"]))
    pipeline.claim_output_dir(out, presets.load_preset("balanced", [f"settings=[{a}, {b}, {c}]", "run_settings=[a]"]))
    pipeline.claim_output_dir(out, presets.load_preset("balanced", [f"settings=[{b}, {c}]"]))  # a left out, b as before
    with pytest.raises(ConfigError, match=r"holds a run made with other settings \(settings.b.num_preferences: 20 -> 21"):
        pipeline.claim_output_dir(out, presets.load_preset("balanced", ["settings=[{name: b, num_preferences: 21}]"]))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["settings"][0]["demo_pool_factor"]  # a key added to a setting after the folder was made ...
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    pipeline.claim_output_dir(out, presets.load_preset("balanced", [f"settings=[{b}, {c}]"]))  # ... at its default
    del saved["settings"][0]["num_preferences"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(ConfigError, match="settings.b.num_preferences: None -> 20"):
        pipeline.claim_output_dir(out, presets.load_preset("balanced", [f"settings=[{b}, {c}]"]))


def test_model_device_is_validated_and_resolved(monkeypatch):
    from aihf.config import ConfigError
    from aihf.experiments.imdb.presets import ModelSection, load_preset

    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert load_preset("tiny", [f"model.device={device}"]).model.device == device
    assert load_preset("tiny").model.device == "auto"
    for bad in ("gpu", "mps", "CPU", "cuda:", "cuda:x", "cuda:0:1", "cpu "):
        with pytest.raises(ConfigError, match="model.device must be auto, cpu, cuda or cuda:N"):
            load_preset("tiny", [f"model.device={bad!r}"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ModelSection().torch_device() == "cpu" and ModelSection(device="cpu").torch_device() == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        ModelSection(device="cuda:0").torch_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert ModelSection().torch_device() == "cuda" and ModelSection(device="cuda:1").torch_device() == "cuda:1"
    assert ModelSection(device="cpu").torch_device() == "cpu"
    with pytest.raises(ConfigError, match="sees 2 CUDA device"):
        ModelSection(device="cuda:2").torch_device()


# ---------------------------------------------------------------------------- pipeline


@pytest.mark.e2e
def test_pipeline_runs_end_to_end_with_the_tiny_model(reviews, small_gold, tmp_path, monkeypatch, capsys):
    from aihf.experiments.imdb import pipeline, run_from_cli
    from aihf.experiments.imdb.presets import load_preset

    _, _, cache = small_gold  # the tiny preset's gold settings: reuse the fitted scorer
    monkeypatch.setenv("AIHF_CACHE", str(cache))
    out = tmp_path / "run"
    overrides = ["methods=[aihf-dpo,aihf]", "seeds=[0]", "model.device=cpu"]
    devices = set()  # where every model that samples or is scored for KL sits

    def recorded(function, *models):
        def wrapper(*args, **kwargs):
            devices.update(str(args[i].device) for i in models)
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pipeline, "generate", recorded(pipeline.generate, 0))
    monkeypatch.setattr(pipeline, "kl_to_reference", recorded(pipeline.kl_to_reference, 0, 1))
    assert run_from_cli("tiny", str(out), overrides) == 0
    assert devices == {"cpu"}
    results = json.loads((out / "results.json").read_text())
    table = results["settings"]["tiny"]
    assert list(table) == ["pi_sft", "aihf-dpo", "aihf"]
    for entry in table.values():
        assert set(metrics.METRICS) <= set(entry) and len(entry["runs"]) == 1
        assert all(math.isfinite(entry[m]["mean"]) for m in metrics.METRICS)
    assert table["pi_sft"]["kl"]["mean"] == 0.0 and table["pi_sft"]["win_rate"]["mean"] == 0.5
    history = json.loads((out / "runs" / "tiny" / "aihf-dpo" / "seed-0" / "metrics.json").read_text())["history"]
    assert [step["step"] for step in history] == [1, 2]
    assert table["aihf-dpo"]["runs"][0]["train_loss_first"] == pytest.approx((history[0]["loss"] + history[1]["loss"]) / 2)
    assert table["aihf-dpo"]["runs"][0]["train_loss_last"] == table["aihf-dpo"]["runs"][0]["train_loss_first"]
    assert results["data"]["tiny"]["prompts"] == 16 and results["judge"] == {"name": "vader"}
    assert results["versions"] == provenance() and results["versions"]["scikit-learn"]
    assert results["versions"]["aihf_commit"]  # the tests run from a checkout: the code is recorded too
    # the held-out pairs: written, never trained on, and every run's reward scored on them
    held = (out / "settings" / "tiny" / "eval_preferences.jsonl").read_text().splitlines()
    trained = (out / "settings" / "tiny" / "preferences.jsonl").read_text().splitlines()
    assert len(held) == 2 and not {json.loads(r)["prompt"] for r in held} & {json.loads(r)["prompt"] for r in trained}
    assert all("heldout_pref_accuracy" in entry for name, entry in table.items() if name != "pi_sft")
    # AIHF's: its saved reward model, scored pair by pair on the held-out file
    from aihf.data import read_preferences
    from aihf.lm.batching import Encoder, collate
    from aihf.lm.models import load_reward_model

    reward, tok = load_reward_model(out / "runs" / "tiny" / "aihf" / "seed-0" / "final" / "reward")
    encoder = Encoder(tok, max_length=48, max_prompt_length=16)
    wins = []
    for pair in read_preferences(out / "settings" / "tiny" / "eval_preferences.jsonl"):
        with torch.no_grad():
            r = [reward(*(lambda b: (b.input_ids, b.attention_mask))(collate([seq], tok.pad_token_id))).item()
                 for seq in encoder.preference(pair)]
        wins.append(1.0 if r[0] > r[1] else 0.5 if r[0] == r[1] else 0.0)
    assert table["aihf"]["heldout_pref_accuracy"]["mean"] == pytest.approx(np.mean(wins))
    assert "held-out preference accuracy" in (out / "results.md").read_text()
    saved = json.loads((out / "runs" / "tiny" / "aihf" / "seed-0" / "evaluation.json").read_text())
    assert saved["row"] == table["aihf"]["runs"][0] and len(saved["generations"]) == 6  # kept for a resumed run
    split = data.Split.load(out / "split.json")
    assert len(split.eval_prompts) == 100
    # the committable export of the run (scripts/imdb_export_units.py): pi_SFT's hash and the versions it came from
    script = Path(__file__).resolve().parent.parent / "scripts" / "imdb_export_units.py"
    subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "export")], check=True, capture_output=True)
    state = json.loads((tmp_path / "export" / "state.json").read_text())
    pi_sft_weights = out / "sft" / "stage-1" / "final" / "policy" / "model.safetensors"
    assert state["pi_sft_sha256"] == hashlib.sha256(pi_sft_weights.read_bytes()).hexdigest()
    assert state["versions"] == provenance() and state["units"] == 2
    # scripts/imdb_sft_fingerprint.py gives this pi_SFT from the preset alone, and says when an export's differs
    spec = importlib.util.spec_from_file_location("imdb_sft_fingerprint", script.parent / "imdb_sft_fingerprint.py")
    fingerprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fingerprint)
    hashes = fingerprint.fingerprint("tiny", overrides, tmp_path / "fingerprint")
    assert hashes["pi_SFT"] == state["pi_sft_sha256"] and hashes["split"] == hashlib.sha256(
        (out / "split.json").read_bytes()).hexdigest()
    assert fingerprint.mismatch(state, hashes["pi_SFT"], Path("state.json")) is None
    elsewhere = {**state, "pi_sft_sha256": "0" * 64, "versions": {**state["versions"], "cpu": "AMD EPYC 7B13",
                                                                   "torch_cpu_capability": "AVX2"}}
    assert "made on AMD EPYC 7B13, torch AVX2" in fingerprint.mismatch(elsewhere, hashes["pi_SFT"], Path("state.json"))
    assert (tmp_path / "export" / "runs" / "tiny" / "aihf" / "seed-0" / "evaluation.json").is_file()
    # --dry-run: which units a run into a folder would reuse or train, writing nothing there
    from aihf.cli import main

    def dry_run(folder, *more):
        before = sorted(folder.rglob("*"))
        assert main(["experiment", "imdb", "--preset", "tiny", "--output-dir", str(folder), "--dry-run",
                     *overrides, *more]) == 0
        assert sorted(folder.rglob("*")) == before
        return capsys.readouterr().out

    said = dry_run(out, "seeds=[0,1]")
    assert f"pi_SFT: {out}/sft/stage-1/final/policy, SHA-256 {state['pi_sft_sha256'][:12]}" in said
    assert "settings' data: each can be built from them" in said
    # a setting the saved build answers cannot fill: the run's error, before any unit, from the dry run too
    assert main(["experiment", "imdb", "--preset", "tiny", "--output-dir", str(out), "--dry-run", *overrides,
                 "settings=[{name: big, num_demonstrations: 4, num_preferences: 400}]"]) == 2
    assert "setting 'big': 400 preferences and 0 held-out ones need as many prompts" in capsys.readouterr().err
    assert "tiny / aihf: seed 0: reused; seed 1: to train" in said and "in all: 2 reused, 2 to train" in said
    said = dry_run(tmp_path / "export")  # no pi_SFT there: whether it is the same is known once it is trained
    assert "SFT stage stage-1: 2 steps, to train" in said
    assert f"tiny / aihf: seed 0: reused if pi_SFT trains to {state['pi_sft_sha256'][:12]}..." in said
    unit = tmp_path / "export" / "runs" / "tiny" / "aihf-dpo" / "seed-0" / "evaluation.json"
    stale = json.loads(unit.read_text())
    unit.write_text(json.dumps({**stale, "key": {**stale["key"], "prompts": ["another prompt"]}}))
    said = dry_run(tmp_path / "export")
    assert "tiny / aihf-dpo: seed 0: to train again (its evaluation.json was made with another prompts)" in said
    unit.write_text(json.dumps(stale))
    (out / "runs" / "tiny" / "aihf-dpo" / "seed-0" / "evaluation.json").rename(tmp_path / "evaluation.json")
    assert "tiny / aihf-dpo: seed 0: trained, to evaluate" in dry_run(out)
    (tmp_path / "evaluation.json").rename(out / "runs" / "tiny" / "aihf-dpo" / "seed-0" / "evaluation.json")
    # --with-sft: a continuation from the export starts from its pi_SFT and build answers instead of
    # training and sampling its own (another kind of CPU would train another), so its units are reused
    subprocess.run([sys.executable, str(script), "--with-sft", str(out), str(tmp_path / "continued")], check=True,
                   capture_output=True)
    exported_sft = tmp_path / "continued" / "sft" / "stage-1" / "final" / "policy" / "model.safetensors"
    assert hashlib.sha256(exported_sft.read_bytes()).hexdigest() == state["pi_sft_sha256"]
    assert not list((tmp_path / "continued").glob("runs/*/*/*/final"))  # the units' weights stay behind
    trained = []
    monkeypatch.setattr("aihf.experiments.units.train", lambda method, *args, **kwargs: trained.append(method))
    sample = pipeline.generate

    def no_build_sampling(*args, **kwargs):
        assert "build prompts" not in args[-1], "the build answers were sampled again"
        return sample(*args, **kwargs)

    monkeypatch.setattr(pipeline, "generate", no_build_sampling)
    assert run_from_cli("tiny", str(tmp_path / "continued"), overrides) == 0
    again = json.loads((tmp_path / "continued" / "results.json").read_text())
    assert trained == [] and again["settings"] == results["settings"]
    for name in ("results.md", "reward_vs_kl.png", "settings/tiny/demonstrations.jsonl", "build_samples.jsonl"):
        assert (out / name).is_file(), name

    # whether each build answer finished reaches the written D and P files, and the reports
    from aihf.data import read_demonstrations, read_preferences

    rows = [json.loads(line) for line in (out / "build_samples.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(row["finished"], bool) for row in rows)
    finished = {(row["prompt"], row["response"]): row["finished"] for row in rows}
    demos = read_demonstrations(out / "settings" / "tiny" / "demonstrations.jsonl")
    prefs = read_preferences(out / "settings" / "tiny" / "preferences.jsonl")
    assert [d.finished for d in demos] == [finished[d.prompt, d.response] for d in demos]
    assert [(p.chosen_finished, p.rejected_finished) for p in prefs] == [
        (finished[p.prompt, p.chosen], finished[p.prompt, p.rejected]) for p in prefs
    ]
    report = json.loads((out / "settings" / "tiny" / "report.json").read_text())
    assert report["finished_demonstrations"] == np.mean([d.finished for d in demos])
    assert report["finished_chosen"] == np.mean([p.chosen_finished for p in prefs])
    assert report["finished_rejected"] == np.mean([p.rejected_finished for p in prefs])
    build = json.loads((out / "build_report.json").read_text())
    assert build["answers"] == len(rows) and build["finished"] == np.mean(list(row["finished"] for row in rows))
    assert 0 <= build["response_ids_round_trip"] <= 1
    assert report["response_ids_round_trip"] == build["response_ids_round_trip"] == results["data"]["tiny"]["response_ids_round_trip"]

    # the RL methods sample on the training prompts (never validation or test prompts); the others take none
    from aihf.data import read_prompts

    rl_prompts = {r.prompt for r in read_prompts(out / "train_prompts.jsonl")}
    rl_indices, validation = data.prompt_subsets(reviews, split, 200, None)
    assert rl_prompts == set(data.prompts(reviews, rl_indices, split.prompt_config, 0))
    assert not rl_prompts & set(data.prompts(reviews, split.eval_prompts + validation, split.prompt_config, 0))
    saved = lambda method: yaml.safe_load((out / "runs" / "tiny" / method / "seed-0" / "config.yaml").read_text())  # noqa: E731
    assert saved("aihf")["data"]["prompts"] == str(out / "train_prompts.jsonl")
    assert saved("aihf-dpo")["data"]["prompts"] is None

    # every evaluation answer is kept with its scores, and the first few are readable side by side
    answers = [json.loads(line) for line in (out / "generations" / "tiny" / "aihf-seed-0.jsonl").read_text().splitlines()]
    eval_texts = data.prompts(reviews, split.eval_prompts[:6], split.prompt_config, 0)
    assert [a["prompt"] for a in answers] == eval_texts
    assert np.mean([a["gold_reward"] for a in answers]) == pytest.approx(table["aihf"]["gold_reward"]["mean"])
    samples = (out / "generations" / "tiny" / "samples.md").read_text()
    assert all(f"**{name}**" in samples for name in table) and repr(eval_texts[0]) in samples

    # stages whose outputs exist are not run again (an interrupted run resumes)
    config = load_preset("tiny", overrides)
    from aihf.experiments import units

    monkeypatch.setattr(units, "train", lambda *a: pytest.fail("a finished stage was trained again"))
    monkeypatch.setattr(pipeline, "answer", lambda *a: pytest.fail("the build prompts were answered again"))
    run_dir = out / "runs" / "tiny" / "aihf" / "seed-0"
    spec = next(spec for spec in config.runs() if spec.name == "aihf")
    assert pipeline.train_stage(config, spec, "tiny", run_dir, 0, None, None) == run_dir / "final" / "policy"
    samples = pipeline.sample_build(config, None, split, [], None, out)
    assert len(samples) == results["data"]["tiny"]["responses"]
    # build answers saved before they recorded 'finished' are refused, not used as if finished
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "build_samples.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in row.items() if k != "finished"}) + "\n" for row in rows)
    )
    from aihf.config import ConfigError

    with pytest.raises(ConfigError, match=r"build_samples.jsonl, line 1: no boolean 'finished'.*stale"):
        pipeline.sample_build(config, None, split, [], None, stale)
    # a setting the build answers cannot fill stops before any evaluation or training, naming the setting
    too_many = ["settings=[{name: fine, num_demonstrations: 2, num_preferences: 2}, {name: huge, num_demonstrations: 500, num_preferences: 2}]"]
    shutil.copytree(out / "sft", tmp_path / "big" / "sft")  # finished SFT and build answers are reused
    shutil.copy(out / "build_samples.jsonl", tmp_path / "big")
    shutil.copy(out / "build_report.json", tmp_path / "big")
    assert run_from_cli("tiny", str(tmp_path / "big"), [*overrides, *too_many]) == 2
    assert "setting 'huge'" in capsys.readouterr().err and not (tmp_path / "big" / "runs").exists()
    pipeline.claim_output_dir(out, load_preset("tiny", ["seeds=[0,1]"]))  # more seeds, device auto: the same run
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["method"]["ipo_average"]  # a directory made before the setting existed ...
    saved["sft"]["loop"]["output_dir"] = "runs/lm"  # ... and with another SFT loop folder
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    pipeline.claim_output_dir(out, load_preset("tiny"))  # still the same run
    assert run_from_cli("tiny", str(out), ["generation.max_new_tokens=9"]) == 2  # other settings: refused


def test_no_sft_stage_takes_a_base_sft_ed_already_as_pi_sft(reviews, small_gold, tmp_path, monkeypatch):
    """``sft.stage_steps: []``: a user's own SFT model (the tiny model, saved) is pi_SFT as it
    is, answers the build prompts alone, and is every run's start and reference."""
    from aihf.experiments.imdb import run_from_cli
    from aihf.experiments.imdb.presets import load_preset
    from aihf.lm.models import weights_sha256
    from aihf.lm.scratch import save_tiny_base

    monkeypatch.setenv("AIHF_CACHE", str(small_gold[2]))
    mine, out = save_tiny_base(tmp_path / "my-sft"), tmp_path / "run"
    overrides = [f"model.name_or_path={mine}", "sft.stage_steps=[]", "methods=[dpo]", "seeds=[0]", "model.device=cpu"]
    assert run_from_cli("tiny", str(out), overrides) == 0
    assert not (out / "sft" / "stage-0").exists() and not (out / "base").exists()
    answered = [json.loads(line) for line in (out / "build_samples.jsonl").read_text().splitlines()]
    assert 16 < len(answered) <= 2 * 16  # pi_SFT answers the 16 build prompts twice (empty answers dropped)
    evaluation = json.loads((out / "runs" / "tiny" / "dpo" / "seed-0" / "evaluation.json").read_text())
    assert evaluation["key"]["pi_sft_sha256"] == weights_sha256(mine)
    table = json.loads((out / "results.json").read_text())["settings"]["tiny"]
    assert list(table) == ["pi_sft", "dpo"] and table["pi_sft"]["kl"]["mean"] == 0.0
    from aihf.experiments.imdb.plan import describe  # the dry run knows this pi_SFT without an SFT stage

    said = describe(load_preset("tiny", overrides), "tiny", out)
    assert f"SHA-256 {weights_sha256(mine)[:12]}..." in said and "tiny / dpo: seed 0: reused" in said
    # the export names this pi_SFT, and carries the build answers alone (no SFT stage to carry)
    script = Path(__file__).resolve().parent.parent / "scripts" / "imdb_export_units.py"
    subprocess.run([sys.executable, str(script), "--with-sft", str(out), str(tmp_path / "export")], check=True,
                   capture_output=True)
    assert json.loads((tmp_path / "export" / "state.json").read_text())["pi_sft_sha256"] == weights_sha256(mine)
    assert (tmp_path / "export" / "build_samples.jsonl").is_file() and not (tmp_path / "export" / "sft").exists()
    spec = importlib.util.spec_from_file_location("imdb_sft_fingerprint", script.parent / "imdb_sft_fingerprint.py")
    fingerprint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fingerprint)
    hashes = fingerprint.fingerprint("tiny", overrides, tmp_path / "fingerprint")
    assert hashes["pi_SFT"] == weights_sha256(mine) and not any(name.startswith("SFT stage") for name in hashes)
    assert not (out / "kl_budgets.md").exists()  # a test-prompt run: no grid to read KL budgets from
    # a grid on the validation prompts: each method's best point within KL budgets, and its frontier
    grid = [*overrides, "generation.evaluate_on=validation", "generation.num_validation_prompts=4",
            "grid={dpo: {loop.learning_rate: [1.0e-4, 3.0e-3]}}"]
    assert run_from_cli("tiny", str(tmp_path / "grid"), grid) == 0
    rows = json.loads((tmp_path / "grid" / "results.json").read_text())["settings"]["tiny"]
    points = sorted((rows[f"dpo@learning_rate={lr}"]["kl"]["mean"], rows[f"dpo@learning_rate={lr}"]["gold_reward"]["mean"])
                    for lr in ("0.0001", "0.003"))
    page = (tmp_path / "grid" / "kl_budgets.md").read_text()
    best = max(points, key=lambda p: p[1])
    assert "| dpo | 2 | " in page and page.rstrip().endswith(f"| {best[1]:.3f} ({best[0]:.1f}) |")  # any KL: the best
    assert (tmp_path / "grid" / "kl_frontier.png").stat().st_size > 10_000
    # its best point again on two seeds, in the grid's folder: the grid's seed-0 unit is reused, seed 1 trained
    from aihf.experiments.imdb.tuning import write_confirm

    top = max(("0.0001", "0.003"), key=lambda lr: rows[f"dpo@learning_rate={lr}"]["gold_reward"]["mean"])
    unit = tmp_path / "grid" / "runs" / "tiny" / f"dpo@learning_rate={top}"
    trained = (unit / "seed-0" / "evaluation.json").stat().st_mtime_ns
    write_confirm([tmp_path / "grid" / "results.json"], tmp_path / "confirm.yaml", top=1, seeds=[0, 1])
    assert run_from_cli(str(tmp_path / "confirm.yaml"), str(tmp_path / "grid"), []) == 0
    confirmed = json.loads((tmp_path / "grid" / "results.json").read_text())["settings"]["tiny"]
    assert list(confirmed) == ["pi_sft", f"dpo@learning_rate={top}"]
    assert [run["seed"] for run in confirmed[f"dpo@learning_rate={top}"]["runs"]] == [0, 1]
    assert (unit / "seed-0" / "evaluation.json").stat().st_mtime_ns == trained and (unit / "seed-1" / "evaluation.json").is_file()
    # its export with --reported-only: the confirmed point's two units, not the grid's other point
    subprocess.run([sys.executable, str(script), "--reported-only", str(tmp_path / "grid"), str(tmp_path / "confirmed")],
                   check=True, capture_output=True)
    exported = sorted(str(f.parent.relative_to(tmp_path / "confirmed" / "runs")) for f in
                      (tmp_path / "confirmed" / "runs").glob("*/*/seed-*/evaluation.json"))
    assert exported == [f"tiny/dpo@learning_rate={top}/seed-0", f"tiny/dpo@learning_rate={top}/seed-1"]
    assert len(list((tmp_path / "grid" / "runs" / "tiny").iterdir())) == 2  # the folder holds both grid points
    assert not (tmp_path / "grid" / "ratio_sweep.png").exists()  # no ratio sweep: no plot of one
    sweep = [*overrides, "settings=[]", "ratio_sweep={total: 8, demo_fractions: [0.5, 0.25]}", "seeds=[0, 1]"]
    assert run_from_cli("tiny", str(tmp_path / "sweep"), sweep) == 0  # gold and KL against the demonstrations' share
    assert list(json.loads((tmp_path / "sweep" / "results.json").read_text())["settings"]) == ["ratio-0.5", "ratio-0.25"]
    assert (tmp_path / "sweep" / "ratio_sweep.png").stat().st_size > 10_000
    with pytest.raises(ConfigError, match="scratch is an untrained model"):
        load_preset("tiny", ["model.name_or_path=scratch", "sft.stage_steps=[]"])
    with pytest.raises(ConfigError, match="stage_steps must be positive"):
        load_preset("tiny", ["sft.stage_steps=[2, 0]"])


def test_scratch_base_model_is_built_once_deterministically_and_loads(tmp_path):
    from aihf.lm.scratch import ScratchModelConfig, build_scratch_base
    from aihf.lm.models import load_causal_lm

    texts = ["the movie was great and the acting was superb", "a dull, awful waste of time"] * 50
    config = ScratchModelConfig(vocab_size=300, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    a = build_scratch_base(config, texts, tmp_path / "a")
    b = build_scratch_base(config, texts, tmp_path / "b")
    (model_a, tok_a), (model_b, tok_b) = load_causal_lm(a), load_causal_lm(b)
    assert len(tok_a) == 300 and tok_a.get_vocab() == tok_b.get_vocab()
    assert tok_a.decode(tok_a("the movie was great").input_ids) == "the movie was great"
    assert model_a.config.hidden_size == 16 and model_a.config.tie_word_embeddings
    for x, y in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_scratch_base(config, [], a) == a and (a / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="multiple of num_heads"):
        ScratchModelConfig(hidden_size=30, num_heads=4)


@pytest.mark.e2e
def test_quickstart_runs_end_to_end_at_a_tiny_size(small_gold, tmp_path, monkeypatch, capsys):
    """``aihf quickstart``'s own code path (preset, scratch model, summary) with tiny sizes."""
    from aihf.cli import main

    _, _, cache = small_gold
    monkeypatch.setenv("AIHF_CACHE", str(cache))
    tiny = [
        "gold.max_train=3000", "gold.max_heldout=1000", "gold.ngram_max=1", "gold.max_features=null",
        "model.scratch.vocab_size=400", "model.scratch.hidden_size=16", "model.scratch.num_layers=1",
        "model.scratch.intermediate_size=32", "sft.num_reviews=64", "sft.stage_steps=[2,2]",
        "settings=[{name: small, num_demonstrations: 4, num_preferences: 4}]",
        "generation.num_build_prompts=12", "generation.num_eval_prompts=5", "generation.max_new_tokens=6",
        "loop.max_steps=2", "loop.micro_batch_size=2", "seeds=[0,1]",
    ]
    out = tmp_path / "qs"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert main(["quickstart", "--output-dir", str(out), *tiny]) == 0
        assert torch.get_num_threads() == 2  # the preset's threads, whatever the machine's cores
    finally:
        torch.set_num_threads(before)
    printed, logged = capsys.readouterr()
    # each warning once (SFT's two stages and every seed cut the same records), no library noise
    warnings = [line for line in logged.splitlines() if line.startswith("WARNING")]
    assert any("sft: " in line and "truncated" in line for line in warnings)
    assert len(warnings) == len(set(warnings)), warnings
    assert "LOAD REPORT" not in logged and "Loading weights" not in logged and "Writing model shards" not in logged
    assert "IMDb sentiment, dpo, aihf-dpo from pi_SFT, 2 seeds" in printed
    for line in ("before: pi_sft", "after: dpo", "after: aihf-dpo", f"plot: {out / 'reward_vs_kl.png'}"):
        assert line in printed, line
    assert (out / "reward_vs_kl.png").is_file() and (out / "base" / "model.safetensors").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"]["name_or_path"] == "scratch" and results["config"]["threads"] == 2
    assert [len(e["runs"]) for e in results["settings"]["small"].values()] == [2, 2, 2]
    assert main(["quickstart", "--output-dir", str(out), "model.scratch.bogus=1"]) == 2
