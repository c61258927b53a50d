"""scripts/mujoco_paper_grid.py on the toy environment: every unit runs, the cells are merged
and exported, and runs whose method reads none of a setting's changed data are copied."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_the_grid_trains_each_distinct_run_once_and_exports_every_cell(tmp_path, tiny_ml_irl_experiment):
    preset, data = tiny_ml_irl_experiment(methods=["ml_irl", "rlhf", "sac_true"])
    out, export = tmp_path / "grid", tmp_path / "export"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mujoco_paper_grid.py"), "--envs", "aihf/ContextTarget-v0",
         "--seeds", "0", "--workers", "1", "--out", str(out), "--export", str(export), "--preset", str(preset),
         data],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cells = {s: out / f"aihf-ContextTarget-v0-{s}" for s in ("balanced", "low-quality-demos", "few-preferences")}

    def source(setting, method):
        return json.loads((cells[setting] / "runs" / method / "seed0" / "result.json").read_text()).get("copied_from")

    # balanced first: all trained; low-quality demos: RLHF and SAC copied; few preferences: ML-IRL and SAC
    assert all(source("balanced", m) is None for m in ("ml_irl", "rlhf", "sac_true"))
    assert source("low-quality-demos", "ml_irl") is None and source("few-preferences", "rlhf") is None
    assert source("low-quality-demos", "rlhf") == str(cells["balanced"] / "runs" / "rlhf" / "seed0")
    assert source("few-preferences", "ml_irl") == str(cells["balanced"] / "runs" / "ml_irl" / "seed0")
    assert source("few-preferences", "sac_true") is not None and source("low-quality-demos", "sac_true") is not None
    for setting in cells:
        exported = export / f"aihf-ContextTarget-v0-{setting}"
        assert set(json.loads((exported / "results.json").read_text())["summary"]) == {"ml_irl", "rlhf", "sac_true"}
        assert (exported / "curves.png").is_file() and not list(exported.rglob("*.safetensors"))
    status = (export / "status.md").read_text()
    returns = {setting: json.loads((cells[setting] / "results.json").read_text())["summary"] for setting in cells}
    row = next(line for line in status.splitlines() if line.startswith("| few-preferences"))
    header = next(line for line in status.splitlines() if line.startswith("| setting"))
    columns = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert columns["ml_irl"].startswith(f"1/1: {returns['few-preferences']['ml_irl']['normalised_mean']:.2f} (")
    # the toy demonstrators' exact returns, -(slope - 0.8)^2 * 20 / 3: -0.6 (slope 0.5) and -2.4 (demos_low, 0.2)
    assert "| low-quality-demos (expert -1; demos_low -2) |" in status and "| few-preferences (expert -1) |" in status
    late = returns["few-preferences"]["ml_irl"]["late_normalised_mean"]
    assert columns["ml_irl"].endswith(f"(c)); last 5: {late:.2f}") and columns["aihf"] == columns["bc"] == "-"  # neither in this grid
    # --no-run beside a finished grid: trains nothing, writes the same status
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mujoco_paper_grid.py"), "--envs", "aihf/ContextTarget-v0",
         "--seeds", "0", "--no-run", "--out", str(out), "--export", str(export), "--preset", str(preset), data],
        capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and (export / "status.md").read_text() == status, again.stderr


@pytest.mark.e2e
def test_a_cell_is_merged_only_when_every_planned_seed_is_finished(tmp_path, tiny_ml_irl_experiment):
    """Two grid processes may split a cell's seeds (`--seeds 0 1` and `--seeds 2`): the one that
    finishes first must not write the cell's table from its own seeds, and the one-seed tables
    each unit's own run leaves in the cell must not be exported as the cell's. Here the preset
    plans seeds 0 and 1 and only seed 0 is finished: nothing merged, no table exported (a stale
    one removed), the status says 1/2, and the partial curves are drawn."""
    from aihf.config import save_config
    from aihf.experiments.mujoco import MujocoConfig

    preset, data = tiny_ml_irl_experiment(methods=["ml_irl"], seeds=[0, 1])
    folder = tmp_path / "grid" / "aihf-ContextTarget-v0-balanced"
    (folder / "runs" / "ml_irl" / "seed0").mkdir(parents=True)
    save_config(MujocoConfig(env="aihf/ContextTarget-v0", methods=["ml_irl"], seeds=[0], data_dir=data.split("=", 1)[1]),
                folder / "config.yaml")
    curve = {"steps": [100, 200], "returns": [-3.0, -1.0], "stds": [0.5, 0.5], "wall_s": 1.0}
    (folder / "runs" / "ml_irl" / "seed0" / "result.json").write_text(json.dumps({"key": {}, "result": curve}))
    export = tmp_path / "export"
    stale = export / "aihf-ContextTarget-v0-balanced" / "results.md"  # from an earlier export
    stale.parent.mkdir(parents=True)
    for table in (folder / "results.json", folder / "results.md", stale):  # the unit's own run writes its seed's tables
        table.write_text("{}")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mujoco_paper_grid.py"), "--envs", "aihf/ContextTarget-v0",
         "--settings", "balanced", "--seeds", "0", "--no-run", "--out", str(tmp_path / "grid"), "--export", str(export),
         "--preset", str(preset), data],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    exported = export / "aihf-ContextTarget-v0-balanced"
    assert (folder / "results.json").read_text() == "{}", "the cell was merged from one of its two seeds"
    assert not (exported / "results.json").exists() and not stale.exists()
    assert (exported / "curves-partial.png").is_file() and (exported / "runs" / "ml_irl" / "seed0" / "result.json").is_file()
    assert "| 1/2: " in (export / "status.md").read_text()
