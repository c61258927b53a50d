"""Run safety (issue 12): every setting validated, one run per folder, one command that starts
or resumes, one-line errors, fail fast, no leaked temporary folders.

Runs train the tiny random model on the synthetic task of tests/test_lm_engine.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerBase
from test_lm_engine import loop, make_method
from test_lm_engine_cli import _files

from aihf import run_folder
from aihf.cli import main
from aihf.config import ConfigError, load_config
from aihf.lm.train import TrainConfig, train
from aihf.lm.trainer import Trainer, load_state_dict
from aihf.runtime import NonFiniteLossError, provenance


def config(tmp_path: Path, *overrides: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*_files(tmp_path), *overrides])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_state_dict(folder / "final" / "policy" / "model.safetensors")


# ------------------------------------------------------------------------------ item 1


@pytest.mark.parametrize(
    "override, key",
    [
        ("loop.max_grad_norm=-1", "loop.max_grad_norm must be > 0"),
        ("loop.learning_rate=.nan", "loop.learning_rate must be finite"),
        ("loop.learning_rate=.inf", "loop.learning_rate must be finite"),
        ("loop.learning_rate=0", "loop.learning_rate must be > 0"),
        ("loop.warmup_steps=-3", "loop.warmup_steps must be >= 0"),
        ("loop.save_every=-5", "loop.save_every must be >= 0"),
        ("loop.weight_decay=-0.1", "loop.weight_decay must be >= 0"),
        ("method.beta=.nan", "method.beta must be finite"),
        ("method.w_pref=.nan", "method.w_pref must be finite"),
        ("method.temperature=0", "method.temperature must be > 0"),
        ("method.top_p=1.5", "method.top_p must be <= 1"),
        ("data.max_prompt_length=600", "data.max_prompt_length (600) must be < max_length (512)"),
        ("data.eval_fraction=1", "data.eval_fraction must be < 1"),
        ("model.dtype=float8", "model.dtype: 'float8' is not one of"),
        ("model.lora={r: 0}", "model.lora.r must be >= 1"),
        ("reward_stage_steps=0", "reward_stage_steps must be >= 1"),
    ],
)
def test_a_setting_that_would_ruin_a_run_is_a_config_error_naming_its_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, None, [override])
    assert key in str(err.value)


def test_an_override_with_a_yaml_tag_is_one_line(capsys):
    assert main(["train", "dpo", "loop.seed=!!python/object/apply:os.system [echo]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aihf: config error: override") and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_checkpoint_never_holds_non_finite_weights(tmp_path):
    trainer = Trainer(make_method("dpo"), loop(tmp_path, save_every=1, max_steps=1))
    trainer.fit()
    with torch.no_grad():
        next(trainer.method.models["policy"].parameters())[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="not finite after step 1: no checkpoint was written"):
        trainer.save_checkpoint()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-0000001"]


def test_the_nan_stop_names_the_last_checkpoint_it_checked(tmp_path, monkeypatch):
    method = make_method("dpo")
    real = method.loss

    def loss(indices, split, seed, phase=frozenset()):
        value, metrics = real(indices, split, seed, phase)
        return (value * float("nan") if trainer.step == 3 else value), metrics

    monkeypatch.setattr(method, "loss", loss)
    trainer = Trainer(method, loop(tmp_path, save_every=2, max_steps=6))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert "at step 4" in str(err.value) and "step-0000002 (step 2, weights checked finite" in str(err.value)


# ------------------------------------------------------------------------------ item 2, 8


def test_a_fresh_run_into_a_folder_of_another_run_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=4", "loop.save_every=2"))
    other = config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=2", "loop.save_every=2", "loop.seed=1")
    with pytest.raises(run_folder.RunFolderError, match=r"another run \(loop.seed: 0 -> 1\)"):
        train("dpo", other)
    with pytest.raises(run_folder.RunFolderError, match="method: 'dpo' -> 'ipo'"):
        train("ipo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=4", "loop.save_every=2"))
    train("dpo", other, overwrite=True)  # the old run's higher step numbers do not survive
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002"]
    assert json.loads((out / "run.json").read_text())["config"]["loop"]["seed"] == 1


def test_a_setting_added_since_a_run_was_made_counts_only_off_its_default():
    old = {"method": {"beta": 0.1}, "loop": {"seed": 0}}  # written before method.ipo_average existed
    defaults = {"method": {"beta": 0.1, "ipo_average": False}, "loop": {"seed": 0}}
    same = {"method": {"beta": 0.1, "ipo_average": False}, "loop": {"seed": 0}}
    assert run_folder.differences(old, same, defaults=defaults) == []
    assert run_folder.differences(old, same) == ["method.ipo_average: None -> False"]  # without defaults: a change
    changed = {"method": {"beta": 0.1, "ipo_average": True}, "loop": {"seed": 0}}
    assert run_folder.differences(old, changed, defaults=defaults) == ["method.ipo_average: None -> True"]
    # a key the old run had is compared as it was, default or not
    assert run_folder.differences({"method": {"beta": 0.2}}, {"method": {"beta": 0.1}}, defaults=defaults) == [
        "method.beta: 0.2 -> 0.1"]


def test_a_run_folder_of_an_older_version_resumes(tmp_path):
    out = tmp_path / "run"
    args = (f"loop.output_dir={out}", "loop.max_steps=2", "loop.save_every=2")
    first = train("dpo", config(tmp_path, *args))
    record = json.loads((out / "run.json").read_text())
    del record["config"]["method"]["ipo_average"]  # as aihf wrote it before the setting existed
    (out / "run.json").write_text(json.dumps(record))
    assert train("dpo", config(tmp_path, *args)).history == first.history
    with pytest.raises(run_folder.RunFolderError, match=r"method.ipo_average: None -> True"):
        train("dpo", config(tmp_path, *args, "method.ipo_average=true"))


def test_the_same_command_resumes_and_reproduces_the_uninterrupted_run(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train("dpo", config(tmp_path, f"loop.output_dir={whole}", "loop.max_steps=4", "loop.save_every=2"))
    train("dpo", config(tmp_path, f"loop.output_dir={split}", "loop.max_steps=2", "loop.save_every=2"))
    result = train("dpo", config(tmp_path, f"loop.output_dir={split}", "loop.max_steps=4", "loop.save_every=2"))
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]
    a, b = weights(whole), weights(split)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_is_returned_not_trained_again(tmp_path):
    out = tmp_path / "run"
    args = (f"loop.output_dir={out}", "loop.max_steps=2")
    first = train("dpo", config(tmp_path, *args))
    stamp = (out / "final" / "policy" / "model.safetensors").stat().st_mtime_ns
    again = train("dpo", config(tmp_path, *args))
    assert again.history == first.history
    assert (out / "final" / "policy" / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(run_folder.RunFolderError, match="loop.resume_from is null"):
        train("dpo", config(tmp_path, *args, "loop.resume_from=null"))


def test_a_setting_added_later_at_its_default_keeps_the_default_folder():
    """The folder's hash covers the settings away from their defaults: a config class that gained
    a field (at its default) names the same folder for the same run; the field set otherwise
    does not."""
    @dataclasses.dataclass
    class Loop:
        seed: int = 0
        output_dir: str | None = None

    @dataclasses.dataclass
    class Before:
        lr: float = 1e-3
        loop: Loop = dataclasses.field(default_factory=Loop)

    @dataclasses.dataclass
    class After(Before):
        attention: str | None = None

    before = run_folder.default_output_dir("dpo", Before(lr=2e-3))
    assert run_folder.default_output_dir("dpo", After(lr=2e-3)) == before
    assert run_folder.default_output_dir("dpo", After(lr=2e-3, attention="eager")) != before
    assert run_folder.default_output_dir("dpo", Before(lr=2e-3, loop=Loop(seed=1))) != before
    assert run_folder.default_output_dir("dpo", Before(lr=2e-3, loop=Loop(output_dir="x"))) == before  # may change


def test_the_default_folder_names_the_method_and_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = config(tmp_path)
    dpo, ipo = run_folder.default_output_dir("dpo", base), run_folder.default_output_dir("ipo", base)
    assert dpo.startswith("runs/dpo-") and ipo.startswith("runs/ipo-")
    longer = config(tmp_path, "loop.max_steps=500")  # may change on resume: same folder
    assert run_folder.default_output_dir("dpo", longer) == dpo
    assert run_folder.default_output_dir("dpo", config(tmp_path, "loop.seed=3")) != dpo
    result = train("dpo", config(tmp_path, "loop.max_steps=1"))
    assert result.output_dir == Path(run_folder.default_output_dir("dpo", config(tmp_path, "loop.max_steps=1")))
    record = json.loads((result.output_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["processes"] == 1
    assert record["versions"] == provenance() and {"numpy", "tokenizers", "scikit-learn"} <= set(record["versions"])


def test_a_live_writer_holds_the_folder_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(run_folder.RunFolderError, match=f"being written by process {sleeper.pid}"):
            train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=1"))
    finally:
        sleeper.kill()
        sleeper.wait()
    train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=1"))  # that pid is dead now
    assert not (out / ".lock").exists()


LOG_RECORD = re.compile(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) aihf[\w.]*: ")


def _one_line_failure(err: str) -> bool:
    """Whether stderr, less the log records the command wrote before it failed (aihf.logs),
    is one line without a traceback."""
    rest = [line for line in err.strip().splitlines() if not LOG_RECORD.match(line)]
    return len(rest) == 1 and "Traceback" not in err


def test_ctrl_c_is_one_line_naming_the_checkpoint_and_the_same_command_continues(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["train", "dpo", *_files(tmp_path), f"loop.output_dir={out}", "loop.max_steps=4", "loop.save_every=2"]
    real = Trainer.train_step

    def interrupted(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert _one_line_failure(err)
    assert "interrupted at step 3 of 4" in err and "step-0000002" in err and "continues from it" in err
    monkeypatch.setattr(Trainer, "train_step", real)
    assert main(argv) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]


# ------------------------------------------------------------------------------ items 3-5


def test_file_system_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["train", "dpo", *_files(tmp_path), f"loop.output_dir={blocker / 'run'}"]) == 1
    err = capsys.readouterr().err
    assert _one_line_failure(err) and str(blocker) in err


def test_a_full_disk_is_found_before_training(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    with pytest.raises(run_folder.RunFolderError, match="GiB free, the run's checkpoints"):
        train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.save_every=1"))
    assert not (out / "checkpoints").exists() and not (out / "metrics.json").exists()


def test_final_weights_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    out = tmp_path / "run"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=1"))
    assert not (out / "final").exists() and not list(out.glob(".final.tmp-*"))


def test_temporary_folders_of_killed_saves_are_removed_at_start(tmp_path):
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [out / "checkpoints" / f".step-0000002.tmp-{dead.pid}", out / f".final.tmp-{dead.pid}"]
    live = out / "checkpoints" / f".step-0000004.tmp-{os.getpid()}"
    for path in (*stale, live):
        path.mkdir(parents=True)
    train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=1"))
    assert not any(p.exists() for p in stale) and live.exists()


# ------------------------------------------------------------------------------ item 6


@pytest.mark.parametrize("dedupe", [True, False])
def test_duplicated_rows_are_counted_and_never_on_both_sides_of_the_split(tmp_path, dedupe, caplog):
    from aihf.data import Preference, write_jsonl
    from aihf.lm.train import read_data

    rows = [Preference(f"review: the {s} was", " great", " terrible") for s in ("movie", "plot", "cast", "score")]
    write_jsonl(rows * 3, tmp_path / "prefs.jsonl")  # every row three times
    cfg = load_config(TrainConfig, None, [f"data.preferences={tmp_path / 'prefs.jsonl'}", "data.eval_fraction=0.25",
                                          f"data.dedupe={str(dedupe).lower()}"])
    with caplog.at_level("INFO"):
        _, prefs, _ = read_data(cfg, "dpo")
    assert "8" in caplog.text and "duplicate" in caplog.text  # 8 copies beyond the first of each row
    train_prompts = {p.prompt for p in prefs["train"]}
    assert prefs["eval"] and not train_prompts & {p.prompt for p in prefs["eval"]}
    assert len(prefs["train"]) + len(prefs["eval"]) == (4 if dedupe else 12)


def test_eval_names_the_loadable_folder_and_refuses_pickles_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    train("dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=1"))
    capsys.readouterr()
    for given in (out / "final", out):
        assert main(["eval", "--model", str(given)]) == 2
        err = capsys.readouterr().err
        assert f"the trained model is {out / 'final' / 'policy'}" in err and len(err.strip().splitlines()) == 1
    assert main(["eval", "--model", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pickled / name).write_bytes((out / "final" / "policy" / name).read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded: pickles are refused")
    status = main(["eval", "--model", str(pickled), "--preferences", str(tmp_path / "prefs.jsonl")])
    err = capsys.readouterr().err
    assert status != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_final_models_carry_a_model_card_and_are_readable_by_the_group(tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        train("aihf-dpo", config(tmp_path, f"loop.output_dir={out}", "loop.max_steps=2", "loop.save_every=2"))
    finally:
        os.umask(old)
    card = (out / "final" / "policy" / "README.md").read_text()
    assert "# aihf-dpo: policy" in card and "base_model: tiny" in card and "| train/loss |" in card
    assert "beta: 0.1" in card and str(tmp_path / "demos.jsonl") in card
    assert f'from_pretrained("{out / "final" / "policy"}")' in card
    for folder in (out / "final" / "policy", out / "checkpoints" / "step-0000002"):
        assert all(f.stat().st_mode & 0o777 == 0o644 for f in folder.iterdir()), folder
