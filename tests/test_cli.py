"""The aihf command: help, argument layout, overrides in any position, errors."""

import json
from pathlib import Path

import pytest

from aihf.cli import build_parser, main, parse_args
from aihf.runtime import provenance

REPO = Path(__file__).resolve().parents[1]


def test_help_documents_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "eval", "experiment", "quickstart"):
        assert command in out


def test_train_help_lists_the_methods(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for method in ("sft", "reward", "rlhf", "dpo", "ipo", "spin", "aihf", "aihf-dpo", "self-play-aihf"):
        assert f"\n  {method} " in out


def test_parsing_a_command_imports_no_language_model_library():
    """``aihf experiment mujoco`` runs once per unit of the MuJoCo grid: building the parser
    must not import transformers (``train --help`` makes its epilog from it, on demand)."""
    import subprocess
    import sys

    code = ("import sys; from aihf.cli import parse_args; parse_args(['experiment', 'mujoco', '--env', 'Hopper-v5']); "
            "print(sorted(m for m in ('transformers', 'trl', 'accelerate') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_train_help_documents_every_config_key_with_its_default(capsys):
    from aihf.config import describe
    from aihf.lm.train import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    keys = describe(TrainConfig)
    assert len(keys) > 50
    for key, default, text in keys:
        assert f"  {key} " in out, key
    assert "loop.learning_rate" in out and "1.0e-05" in out and "AdamW learning rate" in out
    assert all(text for key, _, text in keys if key.startswith(("loop.", "method.", "model."))), "a key without help"


def test_version_and_a_suggestion_for_a_mistyped_key(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("aihf ")
    assert main(["train", "dpo", "loop.max_stepz=3"]) == 2
    assert "did you mean loop.max_steps?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "dpo", "--config", "c.yaml", "loop.max_steps=3", "method.beta=0.2"],
        ["train", "dpo", "loop.max_steps=3", "--config", "c.yaml", "method.beta=0.2"],
        ["train", "dpo", "loop.max_steps=3", "method.beta=0.2", "--config", "c.yaml"],
    ],
)
def test_overrides_may_stand_anywhere(argv):
    args = parse_args(argv)
    assert args.method == "dpo" and args.config == "c.yaml"
    assert args.overrides == ["loop.max_steps=3", "method.beta=0.2"]


def test_unknown_options_are_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(["train", "dpo", "--confg", "c.yaml"])
    assert exit_.value.code == 2 and "--confg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["eval", "--model", "m", "a=b"])  # eval takes no overrides


def test_experiment_help_lists_each_settings_presets_and_the_mujoco_environments(capsys):
    from aihf import shipped

    with pytest.raises(SystemExit):
        main(["experiment", "--help"])
    out = capsys.readouterr().out
    assert shipped.config_names("imdb") and shipped.config_names("mujoco")
    assert f"  imdb     {', '.join(shipped.config_names('imdb'))}\n" in out
    assert f"  mujoco   {', '.join(shipped.config_names('mujoco'))}\n" in out
    envs = sorted(p.parent.name for p in (REPO / "data" / "mujoco").glob("*/demos.npz"))
    assert envs == ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"] and f"--env (mujoco): {', '.join(envs)} " in out


def test_train_config_is_a_file_or_a_shipped_name(tmp_path, monkeypatch, capsys):
    from aihf import shipped

    monkeypatch.chdir(tmp_path)
    assert shipped.find_config("lm", "tiny") == REPO / "configs" / "lm" / "tiny.yaml"
    assert shipped.find_config("lm", "mine.yaml") == Path("mine.yaml")  # a path, even one not there yet
    (tmp_path / "plain").write_text("loop: {max_steps: 1}\n")
    assert shipped.find_config("lm", "plain") == Path("plain")  # a file without the suffix
    assert shipped.find_config("lm", "nosuch") is None
    assert main(["train", "dpo", "--config", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aihf: config error: --config nosuch: no such file") and "tiny" in err
    assert len(err.splitlines()) == 1


def test_experiment_layout():
    args = parse_args(["experiment", "mujoco", "--env", "Walker2d-v5", "--preset", "quick", "loop.total_steps=10"])
    assert (args.setting, args.env, args.preset, args.overrides) == ("mujoco", "Walker2d-v5", "quick", ["loop.total_steps=10"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["experiment", "atari"])


def test_toy_config_error_exits_2_and_names_the_key(tmp_path, capsys):
    assert main(["experiment", "toy", "--output-dir", str(tmp_path), "iterationz=3"]) == 2
    assert "unknown key(s) iterationz" in capsys.readouterr().err


def test_toy_experiment_from_the_command_line(tmp_path, capsys):
    settings = "settings=[{name: s, num_demonstrations: 20, num_preferences: 20}]"
    assert main(["experiment", "toy", "--output-dir", str(tmp_path), "iterations=20", "seeds=[0]", settings]) == 0
    out = capsys.readouterr().out
    assert "| s | aihf |" in out and str(tmp_path / "normalised_return.png") in out
    assert "1 setting x 3 methods x 1 seed in" in out
    assert json.loads((tmp_path / "results.json").read_text())["versions"] == provenance()
    assert (tmp_path / "results.json").is_file()


def test_dry_run_where_there_is_none_is_an_error_not_a_training_run(tmp_path, capsys):
    assert main(["experiment", "toy", "--dry-run", "--output-dir", str(tmp_path / "o")]) == 2
    assert "--dry-run is for imdb, mujoco, hh and ultra" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_imdb_dry_run_trains_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """``aihf experiment imdb --dry-run`` into a new folder: every stage and unit to make, nothing made (the
    folder is not even created), and a bad config is refused the way the run refuses it."""
    from aihf.experiments.imdb import pipeline

    monkeypatch.setattr(pipeline, "run", lambda *a, **k: pytest.fail("the dry run must not run"))
    out = tmp_path / "o"
    assert main(["experiment", "imdb", "--preset", "tiny", "--dry-run", "--output-dir", str(out), "seeds=[0, 1]",
                 "methods=[dpo, aihf]"]) == 0
    said = capsys.readouterr().out
    assert not out.exists()
    for line in ("split: to make (split.json)", "SFT stage stage-0: 2 steps, to train", "build answers: to sample",
                 "units: 4 (2 seed(s) each), 4 to train:", "tiny / dpo: seeds 0, 1: to train", "in all: 4 to train"):
        assert line in said, line
    assert main(["experiment", "imdb", "--preset", "tiny", "--dry-run", "--output-dir", str(out), "seeds=[0"]) == 2
