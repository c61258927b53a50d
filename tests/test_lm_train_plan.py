"""``aihf train METHOD --dry-run`` (aihf.lm.train_plan): the data the run would read, counted and
checked as the run checks them, and what its folder would do, with nothing trained and the
folder untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_lm_engine_cli import _files

from aihf.cli import main
from aihf.data import DataError
from aihf.lm.train import train
from aihf.lm.train_plan import describe
from test_run_safety import config


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AIHF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def dry_run(tmp_path: Path, capsys, *args: str) -> tuple[int, str]:
    code = main(["train", "dpo", "--dry-run", f"--output-dir={tmp_path / 'run'}", *_files(tmp_path), *args])
    return code, capsys.readouterr().out


def test_a_dry_run_counts_the_data_and_leaves_the_folder_alone(tmp_path, capsys):
    code, out = dry_run(tmp_path, capsys, "method.w_demo=2")
    assert code == 0 and not (tmp_path / "run").exists()
    # the synthetic task's 8 preferences, a quarter held out (data.eval_fraction 0.25), as the run splits them
    assert f"preferences: {tmp_path / 'prefs.jsonl'}: 6 to train on, held out: 2 (data.eval_fraction 0.25)" in out
    assert f"demonstrations: {tmp_path / 'demos.jsonl'}: not read by dpo" in out
    assert f"run folder {tmp_path / 'run'}: starts at step 0" in out
    assert "settings dpo does not read: method.w_demo=2.0" in out and "model: tiny (not loaded)" in out


def test_a_dry_run_says_what_the_folder_holds(tmp_path, capsys):
    train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'run'}", "loop.max_steps=2"))
    stamp = (tmp_path / "run" / "run.json").stat().st_mtime_ns
    code, out = dry_run(tmp_path, capsys, "loop.max_steps=2")
    assert code == 0 and "finished already: nothing to train" in out
    code, out = dry_run(tmp_path, capsys, "loop.max_steps=2", "loop.learning_rate=1e-2")
    assert code == 2 and "run folder: refused:" in out and "loop.learning_rate" in out
    code, out = dry_run(tmp_path, capsys, "loop.max_steps=2", "loop.learning_rate=1e-2", "--overwrite")
    assert code == 0 and "which --overwrite would replace" in out
    assert (tmp_path / "run" / "run.json").stat().st_mtime_ns == stamp  # the folder is untouched


def test_a_dry_run_stops_on_bad_data_as_the_run_would(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl.*line 1.*chosen is identical to rejected"):
        describe("dpo", config(tmp_path, f"data.preferences={bad}"))
    assert main(["train", "dpo", "--dry-run", *_files(tmp_path), f"data.preferences={bad}"]) == 2
    assert "bad.jsonl" in capsys.readouterr().err


def test_a_dry_run_reads_renamed_columns(tmp_path, capsys, cache):
    renamed = tmp_path / "renamed.jsonl"
    _files(tmp_path)  # writes the task's files
    rows = [json.loads(line) for line in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    renamed.write_text("".join(json.dumps({"q": r["prompt"], "a": r["chosen"], "b": r["rejected"]}) + "\n" for r in rows))
    code, out = dry_run(tmp_path, capsys, f"data.preferences={renamed}",
                        "data.columns={preferences: {prompt: q, chosen: a, rejected: b}}")
    assert code == 0 and f"preferences: {renamed} (stored as {cache / 'data'}/preferences-" in out
    assert ": 6 to train on, held out: 2" in out


def test_a_dry_run_of_rlhf_says_what_its_reward_stage_would_do(tmp_path, capsys):
    """rlhf trains the preference-only reward stage into output_dir/reward first: the dry run plans both."""
    args = [f"--output-dir={tmp_path / 'run'}", *_files(tmp_path), "loop.max_steps=2", "method.max_new_tokens=4"]
    assert main(["train", "rlhf", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    assert f"reward stage: run folder {tmp_path / 'run' / 'reward'}: starts at step 0" in out
    assert main(["train", "rlhf", *args]) == 0
    capsys.readouterr()
    assert main(["train", "rlhf", "--dry-run", *args]) == 0
    out = capsys.readouterr().out
    assert f"reward stage: run folder {tmp_path / 'run' / 'reward'}: finished already" in out
    assert f"policy stage: run folder {tmp_path / 'run' / 'policy'}: finished already" in out
    assert main(["train", "rlhf", "--dry-run", *args, "reward_stage_steps=3"]) == 2  # the stage's folder refuses
    assert "reward stage: run folder: refused:" in capsys.readouterr().out
    assert main(["train", "rlhf", "--dry-run", *args, "method.beta=0.5"]) == 2  # both stages' folders refuse
    out = capsys.readouterr().out
    assert "reward stage: run folder: refused:" in out and "policy stage: run folder: refused:" in out
    train("dpo", config(tmp_path, f"loop.output_dir={tmp_path / 'dpo'}", "loop.max_steps=2"))
    assert main(["train", "rlhf", "--dry-run", *args, f"--output-dir={tmp_path / 'dpo'}"]) == 2
    out = capsys.readouterr().out  # output_dir itself holds another method's run: refused before its stages
    assert "\n  run folder: refused:" in out and "'dpo' -> 'rlhf'" in out and "stage" not in out


def test_a_dry_run_of_aihf_plans_its_reward_stage_and_its_own_folder(tmp_path, capsys):
    """aihf with reward_init: preferences trains the reward stage in output_dir/reward, then itself in output_dir."""
    code, out = dry_run(tmp_path, capsys)  # dpo: one folder, no stage
    assert code == 0 and "stage" not in out
    code = main(["train", "aihf", "--dry-run", f"--output-dir={tmp_path / 'run'}", *_files(tmp_path),
                 "method.reward_init=preferences"])
    out = capsys.readouterr().out
    assert code == 0 and f"reward stage: run folder {tmp_path / 'run' / 'reward'}: starts at step 0" in out
    assert f"\n  run folder {tmp_path / 'run'}: starts at step 0" in out
