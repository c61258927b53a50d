"""`aihf experiment ultra`: the fixture's row formats, the dry run's ZeRO-3 check, the hub's
offline error, the fixture end to end, and 2 CPU processes against 1 with twice the accumulation."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from aihf.config import ConfigError
from aihf.data import read_demonstrations, read_preferences
from aihf.experiments.dialogue import fixtures, ultra
from aihf.experiments.dialogue.fixtures import FixtureSection, write_fixture
from ranks import run_ranks


def test_ultra_fixture_rows_have_the_hub_formats(tmp_path):
    prefs = fixtures.ultrafeedback_rows(12, seed=0)
    assert prefs == fixtures.ultrafeedback_rows(12, seed=0)
    for row in prefs:
        assert set(row) == {"prompt", "prompt_id", "chosen", "rejected", "messages", "score_chosen", "score_rejected"}
        assert row["chosen"][0] == row["rejected"][0] == {"role": "user", "content": row["prompt"]}
        assert row["messages"] == row["chosen"] and len(row["prompt_id"]) == 64
    chats = fixtures.ultrachat_rows(12, seed=0)
    assert all(set(row) == {"prompt", "prompt_id", "messages"} and row["messages"][-1]["role"] == "assistant" for row in chats)
    assert any(len(row["messages"]) == 4 for row in chats)
    files = write_fixture(FixtureSection(train_rows=12, test_rows=4), "ultra", tmp_path)
    assert set(files) == {"train_prefs", "test_prefs", "train_sft", "test_sft"}
    records = read_preferences(files["train_prefs"])
    assert [r.chosen for r in records] == [row["chosen"][1]["content"] for row in prefs]
    assert records[0].is_chat and records[0].prompt_messages() == [prefs[0]["chosen"][0]]
    demos = read_demonstrations(files["train_sft"])
    assert [d.response for d in demos] == [row["messages"][-1]["content"] for row in fixtures.ultrachat_rows(12, seed=2)]


def test_subset_is_seeded_and_keeps_order():
    rows = list(range(20))
    kept = ultra.subset(rows, 5, seed=0)
    assert kept == sorted(kept) and len(kept) == 5 and kept == ultra.subset(rows, 5, seed=0)
    assert ultra.subset(rows, None, 0) == rows and ultra.subset(rows, 50, 0) == rows


def test_dry_run_checks_the_zero3_config_and_prints_the_estimate(capsys):
    from aihf.cli import main

    assert main(["experiment", "ultra", "--preset", "mistral-7b", "--dry-run", "--output-dir", "o"]) == 0
    out = capsys.readouterr().out
    assert "P (UltraFeedback) 61,135" in out and "D (UltraChat) 207,865" in out and '"parameters": 7241732096' in out
    assert ("launch: accelerate launch --config_file configs/accelerate/deepspeed-zero3.yaml -m aihf.cli "
            "experiment ultra --preset mistral-7b") in out
    assert "DEEPSPEED, 8 processes, mixed precision bf16 (read by accelerate)" in out and "ZeRO-3" in out
    dpo = next(line for line in out.splitlines() if "ultra/dpo (dpo)" in line)
    assert "3,800 steps" in dpo and "GiB per GPU" in dpo and "aihf (aihf)" not in out


@pytest.mark.parametrize("override, message", [
    (["methods=[aihf]"], "trains a policy and a reward model: ZeRO-3"),
    (["loop.max_grad_norm=0.5"], "gradient_clipping 1.0 but stage"),
    (["hardware.gpus=4"], "num_processes 8 but hardware.gpus is 4"),
    (["model.dtype=float32"], "mixed_precision bf16 but model.dtype float32"),
])
def test_dry_run_refuses_what_the_zero3_config_cannot_run(override, message):
    with pytest.raises(ConfigError, match=message):
        ultra.dry_run(ultra.load_preset("mistral-7b", override), "mistral-7b", "o", override)


def test_the_scratch_model_is_refused_as_the_sft_ed_base_without_sft():
    """``sft.epochs: 0`` takes the base as SFT-ed; the scratch model is built untrained."""
    with pytest.raises(ConfigError, match="scratch is an untrained model"):
        ultra.load_preset("fixture", ["sft.epochs=0"])


def test_the_unreachable_hub_names_every_file_to_place(tmp_path, capsys):
    from aihf.cli import main

    assert main(["experiment", "ultra", "--preset", "mistral-7b", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for key in ("data.preferences=FILE", "data.demonstrations=FILE", "data.test=FILE", "model.name_or_path=DIR"):
        assert key in err
    assert "'train_prefs' of the dataset HuggingFaceH4/ultrafeedback_binarized" in err


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The fixture preset in one process (each loop accumulates 2 micro-batches)."""
    from aihf.cli import main

    out = tmp_path_factory.mktemp("ultra") / "one"
    assert main(["experiment", "ultra", "--preset", "fixture", "--output-dir", str(out)]) == 0
    return out


@pytest.mark.e2e
def test_fixture_preset_runs_every_method_end_to_end(one_process):
    results = json.loads((one_process / "results.json").read_text())
    from aihf.runtime import provenance

    assert results["versions"] == provenance()
    table = results["settings"]["ultra"]
    assert list(table) == ["base", "rlhf", "dpo", "ipo", "spin", "aihf-dpo", "self-play-aihf", "aihf"]
    for name, entry in table.items():
        assert all(math.isfinite(entry[m]["mean"]) for m in ("judge", "kl", "win_rate")), name
        assert name == "base" or 0 <= entry["heldout_pref_accuracy"]["mean"] <= 1
    assert table["base"]["kl"]["mean"] == 0.0 and table["base"]["win_rate"]["mean"] == 0.5
    assert table["base"]["judge"]["mean"] > 0  # the SFT-ed scratch base answers in the fixture's words
    assert results["data"]["ultra"]["demonstrations"] == 96 and results["data"]["ultra"]["preferences"] == 96
    assert "**aihf-dpo**" in (one_process / "generations" / "ultra" / "samples.md").read_text()


def _losses(folder: Path) -> list[float]:
    return [step["loss"] for step in json.loads((folder / "metrics.json").read_text())["history"]]


def _two_ranks(out: Path, folder: Path, *overrides: str, expect: int | None = 0) -> list[Path]:
    """The fixture preset as 2 gloo ranks with accumulation 1 (the logs of the ranks)."""
    command = [sys.executable, "-m", "aihf.cli", "experiment", "ultra", "--preset", "fixture", "--output-dir", str(out),
               "loop.gradient_accumulation_steps=1", "sft.loop.gradient_accumulation_steps=1", *overrides]
    return run_ranks(command, folder, timeout=120 if expect is None else 300, expect=expect)


@pytest.mark.e2e
def test_two_cpu_processes_match_one_with_twice_the_accumulation(one_process, tmp_path):
    """The whole experiment as 2 gloo processes (``ranks.run_ranks``) with accumulation 1:
    every stage has the one-process losses: SFT, RLHF's reward and policy stages, DPO, IPO,
    SPIN, AIHF-DPO, Self-Play-AIHF (with their sharded self-play samples) and AIHF, whose RLOO
    steps scale rewards by running statistics folded in rank order, as one process folds its
    micro-batches in turn (``ExplicitRewardMethod._scaled_in_rank_order``).

    The first step's loss (no update yet: the sharding, the forward passes and the loss
    reductions) agrees to 1e-5; later steps to 1e-4, because an all-reduce sums gradients in
    another order than accumulation does (float32 differences near 1e-7), and Adam's first
    update, lr * g / (|g| + eps), turns such differences in coordinates with tiny gradients into
    parameter changes of order lr. Measured: AIHF's second step (rewards from a reward model one
    Adam step old) differs by 1.5e-5; every other stage by at most 1.1e-6."""
    out = tmp_path / "two"
    logs = _two_ranks(out, tmp_path)
    assert "2 process(es)" in logs[0].read_text()
    runs = Path("runs") / "ultra"
    stages = [Path("sft"), runs / "rlhf" / "seed-0" / "reward", runs / "rlhf" / "seed-0" / "policy",
              *(runs / m / "seed-0" for m in ("dpo", "ipo", "spin", "aihf-dpo", "self-play-aihf", "aihf"))]
    for stage in stages:
        first, *later = _losses(out / stage)
        expected_first, *expected_later = _losses(one_process / stage)
        assert first == pytest.approx(expected_first, rel=1e-5, abs=1e-6), stage
        assert later == pytest.approx(expected_later, rel=1e-4, abs=1e-6), stage
    assert json.loads((out / "results.json").read_text())["settings"]["ultra"]["base"]["runs"] == \
        json.loads((one_process / "results.json").read_text())["settings"]["ultra"]["base"]["runs"]


@pytest.mark.e2e
def test_a_refusal_on_the_main_process_ends_every_rank(tmp_path):
    """The main process refuses the output folder (it holds a run with other settings): it
    prints the one-line error, the other rank exits too instead of waiting for it."""
    out = tmp_path / "two"
    out.mkdir()
    (out / "config.yaml").write_text("seeds: [0]\nmodel: {max_length: 7}\n")
    logs = _two_ranks(out, tmp_path, expect=None)
    assert "holds a run made with other settings" in logs[0].read_text()
    assert "Traceback" not in logs[1].read_text()


def test_a_hub_base_is_started_from_its_local_snapshot_so_the_units_key_names_its_weights(tmp_path, monkeypatch):
    """UltraFeedback's default run (mistral-7b-sft-beta, ``sft.epochs: 0``) has the hub base as
    its baseline: ``stages.base_model`` gives its snapshot folder (the main process downloads
    it first; every process then asks for it, from the cache, or downloading it on a node that
    does not share the cache), so the key hashes real files instead of a path named like the
    repository; a local folder is used as it is."""
    import hashlib

    import huggingface_hub

    from aihf.experiments.dialogue import stages
    from aihf.lm.tiny import tiny_causal_lm, tiny_tokenizer

    snapshot = tmp_path / "hub" / "snapshots" / "abc123"
    tiny_causal_lm(tiny_tokenizer(), seed=0).save_pretrained(snapshot)
    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, kwargs.get("local_files_only", False)))
        assert "*.safetensors" in allow_patterns and not any(p.endswith(".bin") for p in allow_patterns)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    start = stages.base_model(stages.ModelSection(name_or_path="HuggingFaceH4/mistral-7b-sft-beta"), iter([]), tmp_path)
    assert start == str(snapshot)
    assert calls == [("HuggingFaceH4/mistral-7b-sft-beta", False)] * 2  # the main process first, then each

    class Evaluator:
        texts, judge = ["a prompt"], type("Judge", (), {"name": "keywords"})

    key = stages.unit_key(Evaluator(), Path(start))
    assert key["baseline_sha256"] == hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    calls.clear()
    assert stages.base_model(stages.ModelSection(name_or_path=str(snapshot)), iter([]), tmp_path) == str(snapshot)
    assert calls == []


@pytest.mark.e2e
def test_the_7b_presets_path_a_hub_base_without_sft_runs_to_its_table(one_process, tmp_path, monkeypatch):
    """``mistral-7b`` starts from a hub model that is SFT-ed already (``sft.epochs: 0``): the base is
    the start, the reference and the baseline row. Here the fixture's SFT-ed policy stands in for
    the hub repository's snapshot (``huggingface_hub`` faked: found on the hub, then downloaded
    to that folder), and one method runs through training and evaluation to the results table."""
    import huggingface_hub

    from aihf.cli import main

    snapshot = one_process / "sft" / "final" / "policy"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, filename, **kwargs: str(snapshot / filename))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(snapshot))
    out = tmp_path / "hub-base"
    assert main(["experiment", "ultra", "--preset", "fixture", "--output-dir", str(out),
                 "model.name_or_path=HuggingFaceH4/mistral-7b-sft-beta", "sft.epochs=0", "methods=[dpo]"]) == 0
    table = json.loads((out / "results.json").read_text())["settings"]["ultra"]
    assert list(table) == ["base", "dpo"] and table["base"]["kl"]["mean"] == 0.0
    assert table["base"]["judge"] == json.loads((one_process / "results.json").read_text())["settings"]["ultra"]["base"]["judge"]
    assert not (out / "sft").exists()  # no SFT stage: the snapshot is the base
