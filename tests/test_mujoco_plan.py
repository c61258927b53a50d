"""``aihf experiment mujoco --dry-run`` (``aihf.experiments.mujoco_plan``): each run's status from the
folders alone, an estimate from the runs there, and nothing trained, written or removed."""

import json
from pathlib import Path

import pytest

from aihf import shipped
from aihf.cli import main
from aihf.config import load_config
from aihf.control.run_checkpoint import FORMAT
from aihf.experiments import mujoco
from aihf.experiments.mujoco import MujocoConfig, data_dir_of, unit_key


def _config(overrides: list[str]) -> MujocoConfig:
    return load_config(MujocoConfig, shipped.config_file("mujoco", "quick"), overrides, defaults={"env": "Hopper-v5"})


def _finish(folder: Path, cfg: MujocoConfig, method: str, seed: int, wall_s: float, key: dict | None = None) -> None:
    run = folder / "runs" / method / f"seed{seed}"
    run.mkdir(parents=True)
    key = key if key is not None else unit_key(cfg, method, seed, data_dir_of(cfg))
    (run / "result.json").write_text(json.dumps({"key": key, "result": {"returns": [1.0], "wall_s": wall_s}}))


def test_the_mujoco_dry_run_tells_each_runs_fate_and_changes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mujoco, "run", lambda *a, **k: pytest.fail("the dry run must not run"))
    out, balanced = tmp_path / "few", tmp_path / "balanced"
    resumable = ["loop.schedule=ml_irl", "loop.iteration_steps=1000", "loop.resume_every=1"]
    few = ["methods=[aihf, ml_irl, bc]", "seeds=[0, 1]", "n_prefs=200", f"reuse_from=[{balanced}]", *resumable]
    cfg, other = _config(few), _config(["methods=[aihf, ml_irl, bc]", "seeds=[0, 1]", *resumable])
    _finish(out, cfg, "aihf", 0, 600.0)  # reused
    _finish(out, cfg, "aihf", 1, 1200.0, key={"seed": 1, "other": "settings"})  # made with other settings
    _finish(balanced, other, "ml_irl", 0, 900.0)  # ML-IRL reads no preferences: copied from balanced
    _finish(balanced, other, "aihf", 1, 300.0)  # AIHF reads them: not copied
    point = out / "runs" / "ml_irl" / "seed1.resume"
    point.mkdir(parents=True)
    (point / "state.json").write_text(json.dumps({"format": FORMAT, "key": unit_key(cfg, "ml_irl", 1, data_dir_of(cfg)),
                                                  "iteration": 7}))
    for name in ("sac.safetensors", "replay_buffer.safetensors", "sac.json"):  # what run_checkpoint checks is there
        (point / name).write_text("")
    before = sorted(tmp_path.rglob("*"))
    assert main(["experiment", "mujoco", "--env", "Hopper-v5", "--preset", "quick", "--output-dir", str(out),
                 "--dry-run", *few]) == 0
    said = capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before
    for line in ("  aihf: seed 0: reused; seed 1: to train again (its result.json was made with other settings)",
                 f"  ml_irl: seed 0: copied from {balanced / 'runs' / 'ml_irl' / 'seed0'}; seed 1: to resume at outer "
                 "iteration 7",
                 "  bc: seeds 0, 1: to train",
                 "to train: 2 runs (up to 6,000 environment steps), and 2 BC fits (seconds each)",
                 "about 0.5 h for the runs of aihf, ml_irl"):  # one of each to train: (600 + 1200) / 2 s + 900 s
        assert line in said, line
    # the run reads a resume point only when it keeps them (the ml_irl schedule with resume_every): without, it
    # trains the run from the start, and the dry run says so (the unit key changes with resume_every: it is not in it)
    assert main(["experiment", "mujoco", "--env", "Hopper-v5", "--preset", "quick", "--output-dir", str(out),
                 "--dry-run", *few, "loop.resume_every=0"]) == 0
    assert "seed 1: to train\n" in capsys.readouterr().out.split("  ml_irl: ")[1]
    assert sorted(tmp_path.rglob("*")) == before

