"""`aihf experiment hh`: the fixture's row format, the D/P split rule, the hub's offline
error, the dry run's estimate and accelerate check, and the fixture preset end to end."""

from __future__ import annotations

import gzip
import json
import math

import pytest
import torch

from aihf.config import ConfigError
from aihf.data import read_preferences
from aihf.experiments.dialogue import estimate, fixtures, hh, stages
from aihf.experiments.dialogue.fixtures import FixtureSection, KeywordScorer, write_fixture


def test_hh_fixture_rows_have_the_hub_format_and_split_at_the_last_assistant_turn(tmp_path):
    rows = fixtures.hh_rows(30, seed=3)
    assert rows == fixtures.hh_rows(30, seed=3) and rows != fixtures.hh_rows(30, seed=4)
    assert all(set(row) == {"chosen", "rejected"} for row in rows)
    assert all(row["chosen"].startswith("\n\nHuman: ") and row["rejected"].startswith("\n\nHuman: ") for row in rows)
    assert any(row["chosen"].count("\n\nAssistant:") == 2 for row in rows)  # an earlier exchange in the prompt
    files = write_fixture(FixtureSection(train_rows=30, test_rows=6), "hh", tmp_path)
    with gzip.open(files["train"], "rt") as handle:
        assert [json.loads(line) for line in handle] == fixtures.hh_rows(30, seed=0)
    prefs = read_preferences(files["train"])
    for row, pref in zip(fixtures.hh_rows(30, seed=0), prefs):
        assert pref.prompt.endswith("\n\nAssistant:") and row["chosen"] == pref.prompt + pref.chosen
        assert pref.chosen.startswith(" ") and "\n\nHuman:" not in pref.chosen


def test_keyword_scorer_counts_helpful_minus_unhelpful_words():
    scores = KeywordScorer().score(["x", "y"], ["Sure, here is how: first a, then b. Glad to help.", "No idea, whatever."])
    assert scores == [6.0, -3.0]


def test_split_is_seeded_disjoint_and_keeps_d_when_p_shrinks():
    paper = hh.HHSetting(name="a", num_demonstrations=10)
    few = hh.HHSetting(name="b", num_demonstrations=10, num_preferences=5)
    rows = hh.split_setting(paper, 50, seed=1)
    assert len(rows.demonstrations) == 10 and len(rows.preferences) == 40
    assert not set(rows.demonstrations) & set(rows.preferences)
    assert sorted(rows.demonstrations + rows.preferences) == list(range(50))
    assert hh.split_setting(paper, 50, seed=1) == rows and hh.split_setting(paper, 50, seed=2) != rows
    smaller = hh.split_setting(few, 50, seed=1)
    assert smaller.demonstrations == rows.demonstrations and smaller.preferences == rows.preferences[:5]
    with pytest.raises(ConfigError, match="leave no preferences"):
        hh.split_setting(hh.HHSetting(num_demonstrations=50), 50, seed=1)


def test_top_reward_selection_takes_the_highest_scored_rows_ties_in_seeded_order():
    scores = [float(i % 7) for i in range(40)]  # rows 6, 13, 20, 27, 34 score 6
    rows = hh.split_setting(hh.HHSetting(num_demonstrations=5, selection="top-reward"), 40, seed=0, scores=scores)
    assert sorted(rows.demonstrations) == [6, 13, 20, 27, 34]
    three = hh.split_setting(hh.HHSetting(num_demonstrations=3, selection="top-reward"), 40, seed=0, scores=scores)
    assert three.demonstrations == rows.demonstrations[:3]
    random_rows = hh.split_setting(hh.HHSetting(num_demonstrations=5), 40, seed=0, scores=scores)
    assert sum(scores[i] for i in random_rows.demonstrations) < 30


def test_selection_scores_come_from_the_selector_and_are_cached(tmp_path):
    config = hh.load_preset("fixture")
    train = read_preferences(write_fixture(config.data.fixture, "hh", tmp_path / "data")["train"])
    scores = hh.selection_scores(config, list(train), tmp_path)
    assert scores == KeywordScorer().score([], [p.chosen for p in train])
    assert json.loads((tmp_path / "selection_scores.json").read_text()) == scores


def test_low_quality_setting_takes_the_rejected_responses_and_rl_prompts_are_ps(tmp_path):
    train = list(read_preferences(fixtures.hh_rows(20, seed=0)))
    setting = hh.HHSetting(name="low", num_demonstrations=4, demo_response="rejected")
    rows = hh.split_setting(setting, 20, seed=0)
    files = stages.setting_files(tmp_path, None)
    hh.write_setting(setting, rows, train, files)
    demos = [json.loads(line) for line in files.demonstrations.read_text().splitlines()]
    assert [d["response"] for d in demos] == [train[i].rejected for i in rows.demonstrations]
    prompts = {json.loads(line)["prompt"] for line in files.prompts.read_text().splitlines()}
    assert prompts == {train[i].prompt for i in rows.preferences}
    assert json.loads((tmp_path / "report.json").read_text())["demonstrations"] == 4


def test_the_unreachable_hub_is_one_line_naming_the_files_to_place(tmp_path, capsys, monkeypatch):
    from aihf.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["experiment", "hh", "--preset", "pythia-160m", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hub is unreachable" in err
    for key in ("data.train=FILE", "data.test=FILE", "model.name_or_path=DIR", "judge.name_or_path=DIR"):
        assert key in err
    assert "Anthropic/hh-rlhf" in err and "EleutherAI/pythia-160m" in err


def test_dry_run_prints_stages_sizes_command_and_estimate_without_loading(capsys, monkeypatch):
    from aihf.cli import main

    monkeypatch.setattr(hh, "run", lambda *a, **k: pytest.fail("the dry run must not run"))
    assert main(["experiment", "hh", "--preset", "pythia-1b", "--dry-run", "--output-dir", "o"]) == 0
    out = capsys.readouterr().out
    assert "train pairs (SFT on every chosen) 160,800" in out and "paper: P 150,800" in out
    assert "sft (sft) x1: 1,257 steps" in out  # ceil(160,800 / (8 x 2 x 8))
    assert "paper/rlhf/reward (reward)" in out and "paper/aihf (aihf)" in out and "paper/demo-sft (sft)" in out
    assert "launch: accelerate launch --config_file configs/accelerate/ddp.yaml -m aihf.cli experiment hh --preset pythia-1b" in out
    assert "MULTI_GPU, 8 processes" in out and "estimates" in out
    assert "the evaluation's baseline, 1.88 GiB more" in out  # Pythia-1B's 1.01e9 bf16 weights


def test_memory_estimate_follows_its_formula():
    shape = estimate.Shape(params=1_000_000, layers=2, hidden=8, vocab=10)
    hardware = estimate.HardwareSection(gpus=4)
    config = hh.HHConfig()
    work = estimate.workload("dpo", config.method, config.loop, 0, 4)
    assert (work.sequences, work.trained, work.frozen) == (16, 1, 0)
    expected = 1_000_000 * 8 + 16 * 512 * (34 * 2 * 8 + 4 * 10)
    assert estimate.memory_gib(shape, work, 512, hardware) * 2**30 == pytest.approx(expected)
    zero3 = estimate.HardwareSection(gpus=4, zero3=True)
    assert estimate.memory_gib(shape, work, 512, zero3) * 2**30 == pytest.approx(1_000_000 * 16 / 4 + 16 * 512 * 584)
    aihf = estimate.workload("aihf", config.method, config.loop, 0, 4)
    assert (aihf.trained, aihf.frozen) == (2, 1)


def test_the_launch_command_quotes_overrides_for_the_shell():
    from aihf.experiments.dialogue.dryrun import launch_command

    command = launch_command(hh.HHConfig().hardware, "hh", "pythia-1b", "out dir", ["grid={dpo: {loop.seed: [1]}}"])
    assert command.endswith("experiment hh --preset pythia-1b --output-dir 'out dir' 'grid={dpo: {loop.seed: [1]}}'")
    assert command.startswith("accelerate launch --config_file configs/accelerate/ddp.yaml -m aihf.cli ")


def test_dry_run_refuses_an_accelerate_config_that_does_not_match(tmp_path):
    bad = tmp_path / "ddp.yaml"
    bad.write_text("distributed_type: MULTI_GPU\nnum_processes: 4\nmixed_precision: bf16\n")
    config = hh.load_preset("pythia-1b", [f"hardware.accelerate_config={bad}"])
    with pytest.raises(ConfigError, match="num_processes 4 but hardware.gpus is 8"):
        hh.dry_run(config, "pythia-1b", "o", [])
    bad.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\nmixed_precision: bf16\nnot_a_key: 1\n")
    with pytest.raises(ConfigError, match="accelerate cannot read it"):
        hh.dry_run(config, "pythia-1b", "o", [])


@pytest.mark.e2e
def test_fixture_preset_runs_every_stage_end_to_end_and_resumes(tmp_path, capsys):
    from aihf.cli import main

    out = tmp_path / "hh"
    assert main(["experiment", "hh", "--preset", "fixture", "--output-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    table = results["settings"]["paper"]
    assert list(table) == ["pi_sft", "demo-sft", *hh.PAPER_METHODS]
    from aihf.runtime import provenance

    assert results["versions"] == provenance()
    for name, entry in table.items():
        assert all(math.isfinite(entry[m]["mean"]) for m in ("judge", "kl", "win_rate")), name
        assert name == "pi_sft" or 0 <= entry["heldout_pref_accuracy"]["mean"] <= 1
    assert table["pi_sft"]["kl"]["mean"] == 0.0 and table["pi_sft"]["win_rate"]["mean"] == 0.5
    assert results["judge"] == {"name": "keywords"}
    assert results["config"]["data"]["on_error"] == "raise"
    data = results["data"]["paper"]
    assert (data["demonstrations"], data["preferences"], data["selection"]) == (24, 96, "random")
    # pi_SFT: sft.epochs 12 = ceil(12 x 120 / 16) steps on every chosen response; demo-SFT on D alone
    sft = json.loads((out / "sft" / "metrics.json").read_text())["history"]
    assert len(sft) == 90
    assert len((out / "sft" / "demonstrations.jsonl").read_text().splitlines()) == 120
    demo_sft = json.loads((out / "runs" / "paper" / "demo-sft" / "seed-0" / "metrics.json").read_text())["history"]
    assert len(demo_sft) == math.ceil(24 / 16)  # sft.demo_epochs 1
    # the SFT-ed scratch model answers in the fixture's words: pi_SFT is scored above zero
    assert table["pi_sft"]["judge"]["mean"] > 0
    samples = (out / "generations" / "paper" / "samples.md").read_text()
    assert "**aihf**" in samples and "Human:" in samples
    assert {"results.md", "reward_vs_kl.png", "judge.png", "kl.png", "win_rate.png"} <= {p.name for p in out.iterdir()}
    # a second run reuses every stage: nothing is trained or written again
    weights = out / "runs" / "paper" / "dpo" / "seed-0" / "final" / "policy" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert main(["experiment", "hh", "--preset", "fixture", "--output-dir", str(out)]) == 0
    assert weights.stat().st_mtime_ns == stamp
    assert json.loads((out / "results.json").read_text())["settings"]["paper"]["dpo"]["runs"] == table["dpo"]["runs"]


def test_sft_epochs_0_takes_a_base_sft_ed_already_as_pi_sft(tmp_path, capsys):
    """A user's own SFT model (here the tiny model, saved) is pi_SFT as it is: no SFT stage is
    trained or planned, and every run's start, reference and baseline is that folder's weights."""
    from aihf.cli import main
    from aihf.lm.models import weights_sha256
    from aihf.lm.scratch import save_tiny_base

    mine, out = save_tiny_base(tmp_path / "my-sft"), tmp_path / "hh"
    overrides = [f"model.name_or_path={mine}", "sft.epochs=0", "methods=[dpo]"]
    assert main(["experiment", "hh", "--preset", "fixture", "--dry-run", *overrides]) == 0
    stages_printed = capsys.readouterr().out
    assert "paper/demo-sft" in stages_printed and "\n  sft " not in stages_printed
    assert main(["experiment", "hh", "--preset", "fixture", "--output-dir", str(out), *overrides]) == 0
    assert not (out / "sft" / "metrics.json").exists() and not (out / "base").exists()
    evaluation = json.loads((out / "runs" / "paper" / "dpo" / "seed-0" / "evaluation.json").read_text())
    assert evaluation["key"]["baseline_sha256"] == weights_sha256(mine)
    table = json.loads((out / "results.json").read_text())["settings"]["paper"]
    assert list(table) == ["pi_sft", "demo-sft", "dpo"] and table["pi_sft"]["kl"]["mean"] == 0.0


def test_the_scratch_model_is_refused_as_pi_sft_without_sft():
    with pytest.raises(ConfigError, match="scratch is an untrained model"):
        hh.load_preset("fixture", ["sft.epochs=0"])


def test_the_tiny_model_starts_a_run_from_its_saved_folder(tmp_path):
    """``tiny`` (like ``scratch``) has no files on a hub: it is saved to out/base, with the
    weights ``load_causal_lm("tiny")`` gives, and the run starts from there."""
    from aihf.lm.models import load_causal_lm

    base = stages.base_model(stages.ModelSection(name_or_path="tiny"), iter([]), tmp_path)
    assert base == str(tmp_path / "base")
    saved, fresh = load_causal_lm(base)[0].state_dict(), load_causal_lm("tiny")[0].state_dict()
    assert saved.keys() == fresh.keys() and all(torch.equal(saved[k], fresh[k]) for k in saved)


def test_time_estimate_follows_its_formula():
    shape = estimate.Shape(params=10**9, layers=2, hidden=8, vocab=10)
    config = hh.HHConfig()  # micro-batch 8, accumulation 2, rloo_k 4, max_new_tokens 128
    hardware = estimate.HardwareSection(gpus=8, tflops=1000.0, utilization=0.5, bandwidth_tb_s=2.0, decode_step_s=0.01)
    dpo = estimate.workload("dpo", config.method, config.loop, 0, 8)
    flops = 6 * 10**9 * 16 * 512 * 2  # 6 P x 16 sequences x 512 tokens x 2 micro-batches
    assert estimate.step_seconds(shape, dpo, 512, 128, config.loop, hardware) == pytest.approx(flops / 5e14)
    rlhf = estimate.workload("rlhf", config.method, config.loop, 0, 8)
    assert (rlhf.sequences, rlhf.trained, rlhf.frozen, rlhf.generate_calls) == (32, 1, 2, 2.0)
    flops = (6 + 2 * 2) * 10**9 * 32 * 512 * 2
    decode = 2 * 128 * max(2e9 / 2e12, 0.01)  # 2 generate calls of 128 steps, each bound by the floor
    assert estimate.step_seconds(shape, rlhf, 512, 128, config.loop, hardware) == pytest.approx(flops / 5e14 + decode)
    zero3 = estimate.HardwareSection(gpus=8, tflops=1000.0, utilization=0.5, bandwidth_tb_s=2.0, decode_step_s=0.01,
                                     interconnect_gb_s=100.0, zero3=True)
    gathered = 2 * 128 * (0.01 + 2e9 / 1e11)  # ZeRO-3 gathers the 2 GB of weights at each decoding step
    assert estimate.step_seconds(shape, rlhf, 512, 128, config.loop, zero3) == pytest.approx(flops / 5e14 + gathered)


def test_a_missing_local_file_is_named_not_fetched(tmp_path):
    from aihf.experiments.dialogue.hub import Need, resolve

    missing = str(tmp_path / "train.jsonl.gz")
    with pytest.raises(ConfigError, match=f"data.train: {missing} is not a file"):
        resolve([Need("data.train", "dataset", missing, "train")])
    there = tmp_path / "test.jsonl"
    there.write_text("")
    assert resolve([Need("data.test", "dataset", str(there), "test"), Need("model.name_or_path", "model", "scratch")]) == {
        "data.test": str(there), "model.name_or_path": "scratch"}


def test_hold_out_is_seeded_disjoint_and_keeps_order():
    rows = list(range(30))
    kept, held = stages.hold_out(rows, 5, seed=0)
    assert len(held) == 5 and sorted(kept + held) == rows and kept == sorted(kept) and held == sorted(held)
    assert stages.hold_out(rows, 5, seed=0) == (kept, held) and stages.hold_out(rows, 5, seed=1) != (kept, held)
    assert stages.hold_out(rows, 0, seed=0) == (rows, [])
    with pytest.raises(ConfigError, match="leaves none"):
        stages.hold_out(rows, 30, seed=0)
    kept, held = stages.hold_out(rows, 7, seed=0, key=lambda r: r % 4)  # groups of 8 or 7 rows: one fits
    assert len({r % 4 for r in held}) == 1 and not {r % 4 for r in held} & {r % 4 for r in kept} and len(held) == 7
    kept, held = stages.hold_out(rows, 10, seed=3, key=lambda r: r // 2)  # 15 pairs: 5 of them, whole
    assert len(held) == 10 and not {r // 2 for r in held} & {r // 2 for r in kept}
    with pytest.raises(ConfigError, match="on: validation needs num_validation > 0"):
        hh.load_preset("fixture", ["evaluation.on=validation"])


def test_evaluation_prompts_leave_out_every_prompt_a_training_row_has():
    """A test prompt that opens a training row (in either form: plain text is one user turn)
    is no evaluation prompt; the rest keep their order, distinct, up to the count."""
    from aihf.data import Demonstration, Preference

    def pref(prompt):
        return Preference(prompt, "yes", "no")

    test = [pref("a"), pref("b"), pref("a"), pref("c"), pref([{"role": "user", "content": "d"}]), pref("e"), pref("f")]
    training = [Demonstration([{"role": "user", "content": "b"}], "ok"), pref("d"), pref("z")]
    kept, skipped = stages.unseen_prompts(test, training, count=3)
    assert [p.prompt for p in kept] == ["a", "c", "e"] and skipped == 2
    assert [p.prompt for p in stages.unseen_prompts(test, [], count=None)[0]][:2] == ["a", "b"]


@pytest.mark.e2e
def test_tuning_runs_are_scored_on_validation_prompts_no_stage_trains_on(tmp_path):
    """With a top-reward setting too: D is the rows the selector scores highest."""
    from aihf.cli import main

    out = tmp_path / "hh"
    overrides = ["methods=[dpo]", "evaluation.num_validation=10", "evaluation.on=validation",
                 "settings=[{name: paper, num_demonstrations: 24, selection: top-reward}]"]
    assert main(["experiment", "hh", "--preset", "fixture", "--output-dir", str(out), *overrides]) == 0
    config = hh.load_preset("fixture", overrides)
    train = list(read_preferences(fixtures.hh_rows(120, seed=0)))
    _, validation = stages.hold_out(train, 10, config.data.seed, stages.prompt_key)
    scored = {row["prompt"] for row in map(json.loads, (out / "generations" / "paper" / "dpo-seed-0.jsonl").open())}
    # the 10 held-out rows are in no stage: SFT reads the other 110 rows, D and P share them out
    lines = {name: (out / name).read_text().splitlines() for name in
             ("sft/demonstrations.jsonl", "settings/paper/demonstrations.jsonl", "settings/paper/preferences.jsonl")}
    assert [len(rows) for rows in lines.values()] == [110, 24, 86]
    kept = stages.hold_out(train, 10, config.data.seed, stages.prompt_key)[0]
    assert scored == {p.prompt for p in stages.unseen_prompts(validation, kept, config.evaluation.num_prompts)[0]}
    assert not scored & {p.prompt for p in kept}
    assert len(json.loads((out / "results.json").read_text())["settings"]["paper"]["dpo"]["runs"]) == 1
    scores = json.loads((out / "selection_scores.json").read_text())
    assert scores == KeywordScorer().score([], [p.chosen for p in kept])
    demos = [json.loads(line)["response"] for line in lines["settings/paper/demonstrations.jsonl"]]
    assert sorted(KeywordScorer().score([], demos)) == sorted(scores, reverse=True)[:24]
