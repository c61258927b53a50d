"""scripts/mujoco_paper_grid.py on the toy environment: every unit runs, the cells are merged
and exported, and runs whose method reads none of a setting's changed data are copied."""

import importlib.util
import json
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grid():
    spec = importlib.util.spec_from_file_location("mujoco_paper_grid", ROOT / "scripts" / "mujoco_paper_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(folder: Path, results: dict[tuple[str, int], list[float]], seeds_in_config: list[int]) -> None:
    """A grid cell by hand: config.yaml, one result.json per (method, seed)."""
    folder.mkdir(parents=True)
    methods = sorted({m for m, _ in results})
    (folder / "config.yaml").write_text(yaml.safe_dump({"env": "Hopper-v5", "methods": methods, "seeds": seeds_in_config}))
    for (method, seed), returns in results.items():
        run = folder / "runs" / method / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({"key": {"seed": seed}, "result": {"returns": returns}}))


def test_restore_brings_an_exported_cell_back_without_overwriting_runs_that_are_there(grid, tmp_path):
    """A new machine's grid starts from the committed export: its finished runs and (for a
    complete cell) its tables are copied into --out, a run already in --out is kept."""
    exported, folder = tmp_path / "export" / "cell", tmp_path / "out" / "cell"
    _cell(exported, {("aihf", 0): [1.0], ("aihf", 1): [2.0]}, [0, 1])
    (exported / "results.json").write_text("{}")
    (folder / "runs" / "aihf" / "seed1").mkdir(parents=True)
    (folder / "runs" / "aihf" / "seed1" / "result.json").write_text("kept")
    assert grid.restore(exported, folder) == 3  # config.yaml, seed 0's result.json and results.json
    assert json.loads((folder / "runs" / "aihf" / "seed0" / "result.json").read_text())["result"] == {"returns": [1.0]}
    assert (folder / "runs" / "aihf" / "seed1" / "result.json").read_text() == "kept"
    assert (folder / "results.json").read_text() == "{}" and (folder / "config.yaml").is_file()
    assert not (folder / "curves.png").exists()  # not exported, so not restored
    assert grid.restore(exported, folder) == 0 and grid.restore(tmp_path / "none", tmp_path / "other") == 0


def test_a_cell_counts_as_merged_only_when_its_tables_hold_every_run_as_finished(grid, tmp_path):
    folder = tmp_path / "cell"
    _cell(folder, {("aihf", 0): [1.0], ("aihf", 1): [2.0], ("bc", 0): [3.0], ("bc", 1): [4.0]}, [1])
    tables = {"seeds": [0, 1], "runs": {"aihf": [{"returns": [1.0]}, {"returns": [2.0]}],
                                        "bc": [{"returns": [3.0]}, {"returns": [4.0]}]}}
    assert not grid.merged(folder, [0, 1], ["aihf", "bc"])  # no results.json yet
    (folder / "results.json").write_text(json.dumps(tables))
    assert grid.merged(folder, [0, 1], ["aihf", "bc"])
    assert not grid.merged(folder, [0, 1], ["aihf", "bc", "rlhf"])  # a method more planned
    assert not grid.merged(folder, [0, 1], ["bc"])  # tables of other methods than the cell's (cell_methods)
    assert not grid.merged(folder, [0, 1, 2], ["aihf", "bc"])  # a seed more planned
    (folder / "runs" / "bc" / "seed1" / "result.json").write_text(json.dumps({"result": {"returns": [5.0]}}))
    assert not grid.merged(folder, [0, 1], ["aihf", "bc"])  # a run trained again since
    (folder / "results.json").write_text(json.dumps({**tables, "seeds": [1]}))
    assert not grid.merged(folder, [0, 1], ["aihf", "bc"])  # one unit's own one-seed table


def test_a_grid_asked_for_some_methods_merges_every_method_finished_in_the_cell(grid, tmp_path):
    """`methods=[rlhf]` on a cell where other grid processes finished AIHF (both seeds) and BC
    (one seed), and left a SAC run made with other settings: the cell is merged with AIHF and
    RLHF, in the experiment's method order, not with RLHF alone (which once dropped AIHF from
    an exported table) and not with the unfinished or foreign runs."""
    from aihf.experiments.mujoco import MujocoConfig, data_dir_of, unit_key

    cfg = MujocoConfig(env="Hopper-v5", methods=["rlhf"], seeds=[0, 1])
    other = MujocoConfig(env="Hopper-v5", seeds=[0, 1], loop=replace(cfg.loop, total_steps=1000))
    for run_cfg, method, seed in [(cfg, "aihf", 0), (cfg, "aihf", 1), (cfg, "bc", 0), (other, "sac_true", 0),
                                  (other, "sac_true", 1)]:
        run = tmp_path / grid.cell("Hopper-v5", "balanced") / "runs" / method / f"seed{seed}"
        run.mkdir(parents=True)
        key = unit_key(run_cfg, method, seed, data_dir_of(run_cfg))
        (run / "result.json").write_text(json.dumps({"key": key, "result": {}}))
    assert grid.cell_methods(tmp_path, cfg, "balanced", [0, 1], ["rlhf"]) == ["aihf", "rlhf"]
    assert grid.cell_methods(tmp_path, cfg, "balanced", [0], ["rlhf"]) == ["aihf", "rlhf", "bc"]
    assert grid.cell_methods(tmp_path, cfg, "few-preferences", [0, 1], ["rlhf"]) == ["rlhf"]  # another cell


def test_the_exported_config_names_the_cells_planned_seeds_and_methods(grid, tmp_path):
    """Each unit writes config.yaml with its own seed and method; the export says which the cell holds."""
    folder = tmp_path / "cell"
    _cell(folder, {("aihf", 2): [1.0]}, [2])
    grid.export(folder, tmp_path / "export", complete=False, seeds=[0, 1, 2], methods=["aihf", "bc"])
    exported = yaml.safe_load((tmp_path / "export" / "config.yaml").read_text())
    assert exported == {"env": "Hopper-v5", "methods": ["aihf", "bc"], "seeds": [0, 1, 2]}
    assert (tmp_path / "export" / "runs" / "aihf" / "seed2" / "result.json").is_file()


def test_the_status_keeps_the_environments_exported_by_other_grid_runs(grid, tmp_path):
    for name, env in [("a-balanced", "Hopper-v5"), ("b-few-preferences", "aihf/ContextTarget-v0"), ("c-balanced", "Hopper-v5")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump({"env": env}))
    assert grid.exported_envs(tmp_path, ["HalfCheetah-v5"]) == ["Hopper-v5", "HalfCheetah-v5", "aihf/ContextTarget-v0"]
    assert grid.exported_envs(tmp_path, ["Hopper-v5"]) == ["Hopper-v5", "aihf/ContextTarget-v0"]
    assert grid.exported_envs(tmp_path / "none", ["Hopper-v5"]) == ["Hopper-v5"]


def test_no_unit_starts_once_the_start_window_is_over(grid, tmp_path, capsys):
    codes = grid.run_units([("Hopper-v5", "balanced", 0, "aihf")], tmp_path, workers=1, logs=tmp_path / "logs",
                           preset="paper", overrides=(), start_until=time.time() - 1)
    assert codes == {} and "not started (--start-for is over): [('Hopper-v5', 'balanced', 0, 'aihf')]" in capsys.readouterr().out


def test_units_the_experiment_will_copy_from_another_setting_are_told_apart(grid, tmp_path):
    """ML-IRL seed 0 is finished in balanced, and few-preferences differs only in the preferences
    ML-IRL does not read: that unit is a copy; AIHF's is not (it reads them), nor is ML-IRL's in
    low-quality-demos (it reads the demonstrations)."""
    from aihf.experiments.mujoco import data_dir_of, unit_key

    configs = {("Hopper-v5", s): grid.cell_config("paper", "Hopper-v5", s) for s in grid.SETTINGS}
    run = tmp_path / "Hopper-v5-balanced" / "runs" / "ml_irl" / "seed0"
    run.mkdir(parents=True)
    balanced = configs["Hopper-v5", "balanced"]
    (run / "result.json").write_text(json.dumps({"key": unit_key(balanced, "ml_irl", 0, data_dir_of(balanced))}))
    units = [("Hopper-v5", "few-preferences", 0, "aihf"), ("Hopper-v5", "low-quality-demos", 0, "ml_irl"),
             ("Hopper-v5", "few-preferences", 1, "ml_irl"), ("Hopper-v5", "few-preferences", 0, "ml_irl")]
    assert [grid.copied(tmp_path, configs, unit) for unit in units] == [False, False, False, True]


def test_a_unit_run_in_the_grids_process_ends_as_its_own_process_would(grid, tmp_path):
    """Copies and merges run in the grid's process (``run_here``): a failure there gives the
    exit code and message of ``aihf experiment mujoco`` (which the grid reports, as a unit
    process's), in the unit's log, instead of raising."""
    log = tmp_path / "unit.log"
    code = grid.run_here("Hopper-v5", "balanced", [0], tmp_path, "paper", ("loop.no_such_key=1",), ["aihf"], log)
    assert code == 2 and "aihf: config error" in log.read_text() and "no_such_key" in log.read_text()
    assert grid.run_here("Hopper-v5", "balanced", [0], tmp_path, "no-such-preset", (), ["aihf"], log) == 2
    assert "no MuJoCo preset 'no-such-preset'" in log.read_text()


def test_the_grid_refuses_to_replace_runs_made_with_other_settings_unless_told(tmp_path):
    """An override that changes the runs (here: a run key that is not the preset's) must not
    silently train over a finished run of the grid's --out; the message names the file."""
    run = tmp_path / "Hopper-v5-balanced" / "runs" / "aihf" / "seed0"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"key": {"seed": 0, "made": "with other settings"}}))
    before = (run / "result.json").read_bytes()
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mujoco_paper_grid.py"), "--envs", "Hopper-v5", "--settings", "balanced",
         "--seeds", "0", "--workers", "1", "--out", str(tmp_path), "methods=[aihf]"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "start " not in done.stdout
    assert "1 finished run(s) were made with other settings" in done.stderr and str(run / "result.json") in done.stderr
    assert "--replace" in done.stderr and (run / "result.json").read_bytes() == before


def test_a_unit_runs_one_method_of_one_seed_and_the_plan_reads_the_preset(grid, tmp_path):
    """A unit is one run (so that each fits in a session); the merge runs all the cell's methods."""
    unit = grid.command("Hopper-v5", "few-preferences", [1], tmp_path, "paper",
                        ("loop.eval_episodes=5", "seeds=[1, 2]"), ["aihf"])
    # the unit's seed and method win over a plan given in the overrides (the last override of a key wins)
    assert unit[-5:] == ["n_prefs=200", "loop.eval_episodes=5", "seeds=[1, 2]", "seeds=[1]", "methods=[aihf]"]
    assert grid.cell_config("paper", "Hopper-v5", "balanced", tuple(unit[-3:])).seeds == [1]
    assert f"reuse_from=[{tmp_path / 'Hopper-v5-balanced'}, {tmp_path / 'Hopper-v5-low-quality-demos'}, " \
           f"{tmp_path / 'Hopper-v5-few-demonstrations'}, {tmp_path / 'Hopper-v5-tenth-episode'}]" in unit
    assert grid.planned(grid.cell_config("paper", "Hopper-v5", "balanced"), [3]) == \
        ([0, 1, 2, 3], ["aihf", "ml_irl", "rlhf", "bc", "sac_true"])
    assert grid.planned(grid.cell_config("paper", "HalfCheetah-v5", "few-preferences", ("methods=[bc]",)), [0]) == \
        ([0, 1, 2], ["bc"])


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
    assert "copy aihf/ContextTarget-v0 low-quality-demos seed 0 rlhf" in done.stdout  # in the grid's process
    assert "start aihf/ContextTarget-v0 low-quality-demos seed 0 ml_irl" in done.stdout  # in its own
    assert re.search(r"^end .*: exit 0 after [\d,]+ s \(15/15 units ended\)$", done.stdout, re.M)  # 5 settings x 3
    cells = {s: out / f"aihf-ContextTarget-v0-{s}"
             for s in ("balanced", "low-quality-demos", "few-preferences", "few-demonstrations", "tenth-episode")}

    def source(setting, method):
        return json.loads((cells[setting] / "runs" / method / "seed0" / "result.json").read_text()).get("copied_from")

    # balanced first: all trained; low-quality demos: RLHF and SAC copied; few preferences: ML-IRL and SAC
    assert all(source("balanced", m) is None for m in ("ml_irl", "rlhf", "sac_true"))
    assert source("low-quality-demos", "ml_irl") is None and source("few-preferences", "rlhf") is None
    assert source("low-quality-demos", "rlhf") == str(cells["balanced"] / "runs" / "rlhf" / "seed0")
    assert source("few-preferences", "ml_irl") == str(cells["balanced"] / "runs" / "ml_irl" / "seed0")
    assert source("few-preferences", "sac_true") is not None and source("low-quality-demos", "sac_true") is not None
    # few demonstrations: ML-IRL trained (it reads them), RLHF and SAC copied (they do not)
    assert source("few-demonstrations", "ml_irl") is None and source("few-demonstrations", "sac_true") is not None
    assert source("few-demonstrations", "rlhf") == str(cells["balanced"] / "runs" / "rlhf" / "seed0")
    assert source("tenth-episode", "ml_irl") is None and source("tenth-episode", "sac_true") is not None
    assert source("tenth-episode", "rlhf") == str(cells["balanced"] / "runs" / "rlhf" / "seed0")
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
    # --no-run beside a finished grid: trains nothing, merges nothing again, writes the same status
    tables = {setting: (cells[setting] / "results.json").read_bytes() for setting in cells}
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "mujoco_paper_grid.py"), "--envs", "aihf/ContextTarget-v0",
         "--seeds", "0", "--no-run", "--out", str(out), "--export", str(export), "--preset", str(preset), data],
        capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and (export / "status.md").read_text() == status, again.stderr
    assert "merged" not in again.stdout and all((cells[s] / "results.json").read_bytes() == tables[s] for s in cells)


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


def test_a_run_is_finished_only_when_its_result_was_made_with_the_cells_run_key(grid, tmp_path):
    """A result.json made with other settings (an older preset, a stale export restored) is not
    finished, so its unit runs and the experiment trains it again; one that differs only in data
    its method does not read (ML-IRL's preference count) is."""
    from dataclasses import replace

    from aihf.experiments.mujoco import data_dir_of, unit_key

    cfg = grid.cell_config("paper", "Hopper-v5", "few-preferences")
    assert cfg.n_prefs == 200 and cfg.env == "Hopper-v5"

    def write(method, key):
        run = tmp_path / "Hopper-v5-few-preferences" / "runs" / method / "seed0"
        run.mkdir(parents=True, exist_ok=True)
        (run / "result.json").write_text(json.dumps({"key": key, "result": {}}))

    assert not grid.finished(tmp_path, cfg, "few-preferences", 0, "ml_irl")
    write("ml_irl", unit_key(replace(cfg, n_prefs=20000), "ml_irl", 0, data_dir_of(cfg)))
    assert grid.finished(tmp_path, cfg, "few-preferences", 0, "ml_irl")
    write("bc", unit_key(replace(cfg, bc=replace(cfg.bc, holdout=0.0)), "bc", 0, data_dir_of(cfg)))
    assert not grid.finished(tmp_path, cfg, "few-preferences", 0, "bc")
    write("bc", unit_key(cfg, "bc", 0, data_dir_of(cfg)))
    assert grid.finished(tmp_path, cfg, "few-preferences", 0, "bc")


def test_every_committed_paper_run_is_still_finished_and_a_new_loop_setting_away_from_its_default_is_not(grid):
    """The run key of a setting added to the loop after the grid started (``LATER_SETTINGS``,
    e.g. ``reward_normalize``) leaves every run exported in docs/results/mujoco-paper the same
    run: hours of training are not redone because a field was added. The setting away from
    that value is another run."""
    exported = ROOT / "docs" / "results" / "mujoco-paper"
    runs = sorted(exported.glob("*/runs/*/seed*/result.json"))
    assert len(runs) >= 45  # Hopper's three cells and HalfCheetah's finished runs
    for result in runs:
        folder, method, seed = result.parents[2].parent.name, result.parents[1].name, int(result.parent.name[4:])
        env, setting = next((folder[: -len(s) - 1], s) for s in grid.SETTINGS if folder.endswith("-" + s))
        assert grid.finished(exported, grid.cell_config("paper", env, setting), setting, seed, method), result
        if method in ("aihf", "ml_irl", "rlhf"):
            for override in ("loop.reward_normalize=true", "loop.reward.label_smoothing=0.1",  # nested ones too
                             "loop.reward.label_noise=robust"):
                other = grid.cell_config("paper", env, setting, (override,))
                assert not grid.finished(exported, other, setting, seed, method), (result, override)


def test_a_grid_whose_window_is_over_before_its_first_unit_exports_nothing_and_ends_cleanly(grid, tmp_path,
                                                                                          monkeypatch, capsys):
    """``--start-for`` over before any unit of a new export folder started: no status page is
    written into a folder that does not exist (the grid used to stop there with FileNotFoundError)."""
    monkeypatch.setattr(sys, "argv", ["mujoco_paper_grid.py", "--envs", "Hopper-v5", "--settings", "balanced",
                                      "--seeds", "0", "--workers", "1", "--start-for", "0",
                                      "--out", str(tmp_path / "out"), "--export", str(tmp_path / "export"),
                                      "methods=[aihf]", "seeds=[0]"])
    grid.main()
    out = capsys.readouterr().out
    assert "not started (--start-for is over)" in out and f"nothing exported to {tmp_path / 'export'} yet" in out
    assert not (tmp_path / "export").exists()
