"""scripts/mujoco_sweep.py: each setting's row summarised as the experiment's own tables are,
its labels and its plot."""

import copy
import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))  # mujoco_sweep imports mujoco_reward_diag, as it does when run from scripts/
spec = importlib.util.spec_from_file_location("mujoco_sweep", SCRIPTS / "mujoco_sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_sweep_rows_summarise_each_method_as_the_experiment_tables_do(tmp_path):
    from aihf.eval.stats import mean_interval

    def result(seed: int, w_pref: float, returns: list[float], accuracy: float) -> dict:
        settings = {"eval_split": "validation", "total_steps": 100, "reward_updates": 1,
                    "reward": {"w_demo": 1.0, "w_pref": w_pref}}
        return {"key": {"seed": seed, "env": "Hopper-v5", "demos": "demos", "n_prefs": 20, "settings": settings},
                "result": {"steps": [10, 20, 30], "returns": returns, "wall_s": 1.0,
                           "reward_diagnostics": [{"pref_train_accuracy": 0.5}, {"pref_train_accuracy": accuracy}]}}

    runs = [result(11, 30.0, [0.0, 100.0, 300.0], 0.8), result(10, 30.0, [0.0, 200.0, 100.0], 0.9)]
    row = sweep.sweep_row(Path("cell"), "aihf", runs, expert=200.0, correlations=[0.9, 0.7])
    assert row["seeds"] == [10, 11] and row["split"] == "validation" and row["w_pref"] == 30.0
    final = mean_interval([1.5, 0.5])  # 300 / 200 and 100 / 200
    assert row["final"] == final["mean"] and row["final_ci95"] == final["ci95"]
    assert abs(row["pair_accuracy"] - 0.85) < 1e-12 and abs(row["correlation"]["mean"] - 0.8) < 1e-12
    runs[1]["key"]["settings"]["reward"] = {"w_demo": 1.0, "w_pref": 300.0}
    assert sweep.sweep_row(Path("cell"), "aihf", runs, 200.0, [])["w_pref"] == "mixed"
    ml_irl = sweep.sweep_row(Path("cell"), "ml_irl", runs, 200.0, [])
    assert ml_irl["w_pref"] == "-" and ml_irl["w_demo"] == 1.0 and ml_irl["correlation"] is None
    assert sweep.sweep_label(row) == "aihf w_D=1 w_P=30" and sweep.sweep_label(ml_irl) == "ml_irl"
    one, other = {**ml_irl, "folder": "tune/cell"}, {**ml_irl, "folder": "tune-normalize/cell", "reward_normalize": True}
    assert sweep._distinct_labels([row, one, {**one, "folder": "again/cell"}]) == \
        ["aihf w_D=1 w_P=30", "tune: ml_irl", "again: ml_irl"]
    assert sweep._distinct_labels([one, other]) == ["ml_irl", "ml_irl normalised"]
    ensemble_runs = copy.deepcopy(runs)
    for run in ensemble_runs:  # a 5-member worst-case ensemble, as the key of such a run holds it: the
        # settings added later only where they differ from LATER_SETTINGS (no penalty, no resample)
        run["key"]["settings"].update(reward_normalize=True, reward_ensemble=5, reward_ensemble_rule="wco")
    ensemble = sweep.sweep_row(Path("cell"), "ml_irl", ensemble_runs, 200.0, [])
    assert ensemble["reward_nets"] == "5 wco" and sweep.sweep_label(ensemble) == "ml_irl normalised ensemble 5 wco"
    assert sweep.reward_nets({"reward_ensemble": 3, "reward_ensemble_rule": "uwo", "reward_ensemble_penalty": 0.5}) == "3 uwo 0.5"
    assert sweep.reward_nets({"reward_ensemble": 5, "reward_ensemble_rule": "wco",
                              "reward_ensemble_resample": "segments"}) == "5 wco resampled segments"
    assert sweep.reward_nets({}) == "1"
    assert row["runs"] == [r["result"] for r in runs] and (row["env"], row["n_prefs"]) == ("Hopper-v5", 20)
    sweep.plot_sweep([row, ml_irl], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert row["learned_per_step"] is None  # runs made before evaluations recorded the learned reward
    runs[0]["result"]["eval_reward"] = [{"policy_mean": 9.0, "demo_mean": 9.0}, {"policy_mean": 0.5, "demo_mean": 1.0}]
    runs[1]["result"]["eval_reward"] = [{"policy_mean": 9.0, "demo_mean": 9.0}, {"policy_mean": 1.5, "demo_mean": 2.0}]
    learned = sweep.sweep_row(Path("cell"), "aihf", runs, 200.0, [])
    assert learned["learned_per_step"] == {"policy": 1.0, "demo": 1.5, "seeds": 2}  # the final evaluation's, mean over seeds
    table = sweep.sweep_table([row, ml_irl, learned]).splitlines()
    assert len(table) == 5 and "| False | 1 | 10, 11 | 1.000 +- 6.353" in table[2] and "| 0.850 | 0.800 +- 1.271 | - |" in table[2]
    assert table[4].endswith("| 1.000 / 1.500 |")
    plain = [result(10, 30.0, [0.0, 50.0, 100.0], 0.8), result(11, 30.0, [0.0, 60.0, 90.0], 0.8)]
    unrecorded = sweep.sweep_row(Path("cell"), "aihf", plain, 200.0, [])
    assert sweep.plot_learned([unrecorded], tmp_path / "none.png") == 0 and not (tmp_path / "none.png").exists()
    plain[1]["result"]["eval_reward"] = [{"policy_mean": p, "demo_mean": 1.0, "margin": 1.0 - p} for p in (0.0, 0.5, 1.2)]
    recorded = sweep.sweep_row(Path("cell"), "aihf", plain, 200.0, [])
    assert sweep.plot_learned([recorded], tmp_path / "learned.png") == 1  # only the seed that recorded it
    assert sweep.sweep_table([recorded]).splitlines()[2].endswith("| 1.200 / 1.000 (1 seed) |")
    assert (tmp_path / "learned.png").stat().st_size > 0
