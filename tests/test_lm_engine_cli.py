"""``aihf train METHOD --config FILE key=value``: config files, overrides, errors, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from accelerate.state import AcceleratorState
from test_lm_engine import task

from aihf.cli import main
from aihf.data import write_jsonl
from aihf.lm.models import RewardModel, load_causal_lm
from aihf.lm.train import METHODS, TrainConfig, train_from_cli
from aihf.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _files(tmp_path: Path) -> list[str]:
    demos, prefs = task()
    write_jsonl(demos, tmp_path / "demos.jsonl")
    write_jsonl(prefs, tmp_path / "prefs.jsonl")
    return [f"data.demonstrations={tmp_path / 'demos.jsonl'}", f"data.preferences={tmp_path / 'prefs.jsonl'}",
            "data.eval_fraction=0.25", "data.max_length=24", "data.max_prompt_length=12",
            "loop.log_with=none", "loop.progress=false", "loop.micro_batch_size=2", "loop.learning_rate=3e-3"]


def test_every_shipped_lm_config_loads():
    for path in sorted((REPO / "configs" / "lm").glob("*.yaml")):
        load_config(TrainConfig, path)
    assert set(METHODS) >= {"sft", "reward", "rlhf", "dpo", "ipo", "spin", "aihf", "aihf-dpo", "self-play-aihf"}


@pytest.mark.e2e
def test_cli_trains_and_writes_loadable_weights(tmp_path, capsys):
    out = tmp_path / "run"
    args = _files(tmp_path) + [f"loop.output_dir={out}", "loop.max_steps=2", "loop.save_every=2",
                               "loop.eval_every=2", "loop.mixed_precision=bf16"]
    # accelerate keeps mixed precision in a process-wide singleton: start clean, leak no bf16
    AcceleratorState._reset_state()
    try:  # overrides after --config, as the README writes them; the shipped configs/lm/tiny.yaml by name
        assert main(["train", "aihf-dpo", "--config", "tiny", *args]) == 0
    finally:
        AcceleratorState._reset_state()
    printed, logged = capsys.readouterr()
    assert "aihf-dpo: 2 steps" in printed and "Writing model shards" not in logged
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["w_demo"] == 1.0
    load_causal_lm(out / "final" / "policy")  # safetensors, with its tokenizer


@pytest.mark.e2e
def test_rlhf_runs_its_two_stages(tmp_path):
    out = tmp_path / "run"
    args = _files(tmp_path) + [f"loop.output_dir={out}", "loop.max_steps=2", "reward_stage_steps=2",
                               "method.max_new_tokens=3", "method.rloo_k=2"]
    assert train_from_cli("rlhf", None, args) == 0
    reward = out / "reward" / "final" / "reward"
    RewardModel.load(reward)
    assert (out / "policy" / "final" / "policy" / "model.safetensors").is_file()
    written = {p: p.stat().st_mtime_ns for p in reward.iterdir()}
    assert train_from_cli("rlhf", None, args) == 0  # a finished reward stage is reused
    assert {p: p.stat().st_mtime_ns for p in reward.iterdir()} == written


def test_config_errors_name_the_key_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "dpo", *_files(tmp_path), "loop.max_stepz=3"]) == 2
    assert "loop.max_stepz" in capsys.readouterr().err
    assert main(["train", "dpo", "loop.log_with=none"]) == 2
    assert "needs data.preferences" in capsys.readouterr().err
    assert main(["train", "ppo"]) == 2
    assert not (tmp_path / "runs").exists()  # nothing claimed for a run that cannot start


def test_self_play_without_rounds_is_a_config_error(tmp_path, capsys):
    assert main(["train", "spin", *_files(tmp_path), f"loop.output_dir={tmp_path / 'spin'}"]) == 2
    assert "method.steps_per_round" in capsys.readouterr().err


@pytest.mark.e2e
def test_rlhf_runs_as_two_cpu_processes(tmp_path):
    """The command docs/lm_engine.md gives for 2 CPU processes: both ranks share one process
    group (before, each torchrun rank on a CPU made a one-process state and the second took
    the run folder's lock as another run), through both of rlhf's stages."""
    import sys

    from ranks import run_ranks

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "aihf.cli", "train", "rlhf", *_files(tmp_path), f"loop.output_dir={out}",
            "loop.max_steps=2", "method.rloo_k=2", "method.max_new_tokens=4"]
    logs = run_ranks(argv, tmp_path)
    assert "rlhf: start in" in logs[0].read_text() and "2 process(es)" in logs[0].read_text()
    assert (out / "policy" / "final" / "policy" / "model.safetensors").is_file()
