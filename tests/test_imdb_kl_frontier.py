"""scripts/imdb_kl_frontier.py: methods' best validation gold reward within KL budgets, from their grids."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from aihf.experiments.imdb import tuning

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("imdb_kl_frontier", ROOT / "scripts" / "imdb_kl_frontier.py")
kl_frontier = importlib.util.module_from_spec(spec)
sys.modules["imdb_kl_frontier"] = kl_frontier
spec.loader.exec_module(kl_frontier)


def _results(path: Path, rows: dict[str, dict[str, tuple[float, float]]], evaluate_on: str = "validation") -> Path:
    """A results.json with one row per (setting, run): (gold reward, KL) means, and pi_SFT's row (no spec)."""
    settings = {setting: {"pi_sft": {"gold_reward": {"mean": 0.0}, "kl": {"mean": 0.0}},
                          **{run: {"gold_reward": {"mean": gold}, "kl": {"mean": kl}, "spec": {}}
                             for run, (gold, kl) in runs.items()}}
                for setting, runs in rows.items()}
    path.write_text(json.dumps({"config": {"generation": {"evaluate_on": evaluate_on}}, "settings": settings}))
    return path


def test_each_budget_takes_the_best_point_within_it(tmp_path):
    a = _results(tmp_path / "a.json", {"balanced": {"dpo@lr=1": (0.2, 4.0), "dpo@lr=3": (0.9, 30.0), "dpo@lr=2": (0.5, 12.0),
                                                    "sft-only": (0.1, 1.0)}})
    b = _results(tmp_path / "b.json", {"balanced": {"aihf-dpo@lr=1": (0.6, 8.0), "aihf-dpo@lr=3": (0.4, 18.0)},
                                       "few": {"aihf-dpo@lr=1": (0.3, 2.0)}})
    grids = kl_frontier.read_grids([a, b], ["aihf-dpo", "dpo"])
    assert list(grids) == ["balanced", "few"] and list(grids["balanced"]) == ["aihf-dpo", "dpo"]  # --methods order
    page = tuning.budget_table(grids, [5, 10, 20])
    assert "| method | points | KL <= 5 | KL <= 10 | KL <= 20 | any KL |" in page
    assert "| dpo | 3 | 0.200 (4.0) | 0.200 (4.0) | 0.500 (12.0) | 0.900 (30.0) |" in page
    assert "| aihf-dpo | 2 | — | 0.600 (8.0) | 0.600 (8.0) | 0.600 (8.0) |" in page
    assert "### few" in page and "| aihf-dpo | 1 | 0.300 (2.0) |" in page
    paths = tuning.write_kl_budgets(grids, tmp_path / "out", sources=[a, b])
    written = paths["kl_budgets"].read_text()
    assert f"From `{a}`, `{b}`." in written and written.endswith(tuning.budget_table(grids))  # the default budgets
    assert "| dpo | 3 | 0.200 (4.0) | 0.200 (4.0) | 0.500 (12.0) | 0.500 (12.0) | 0.500 (12.0) | 0.900 (30.0) |" in \
        written
    assert paths["kl_frontier"].stat().st_size > 10_000


def test_a_method_in_two_files_a_missing_method_and_a_test_run_are_errors(tmp_path):
    a = _results(tmp_path / "a.json", {"balanced": {"dpo@lr=1": (0.2, 4.0)}})
    b = _results(tmp_path / "b.json", {"balanced": {"dpo@lr=3": (0.3, 5.0)}})
    with pytest.raises(ValueError, match="balanced/dpo is in both"):
        kl_frontier.read_grids([a, b])
    with pytest.raises(ValueError, match=r"no grid points of \['ipo'\]"):
        kl_frontier.read_grids([a], ["dpo", "ipo"])
    test = _results(tmp_path / "test.json", {"balanced": {"dpo@lr=1": (0.2, 4.0)}}, evaluate_on="test")
    with pytest.raises(ValueError, match="evaluated on the validation"):
        kl_frontier.read_grids([test])


def test_the_committed_page_is_what_the_committed_grids_give():
    """docs/results/imdb-scratch-cpu-kl-frontier/kl_budgets.md: the script's tables of the committed validation
    grids (its README gives the command)."""
    results = ROOT / "docs" / "results"
    files = [results / f"imdb-scratch-cpu-tune{grid}" / f"imdb-tune{grid}{suffix}" / "results.json"
             for grid, suffixes in [("", ["", "-few", "-lq"]), ("-ipo-beta", ["", "-few"]), ("-dpo-beta", ["", "-few"]),
                                    ("-aihf-dpo-beta", ["", "-few", "-lq"]), ("-aihf-dpo-lr", ["", "-few", "-lq"])]
             for suffix in suffixes]
    methods = ["rlhf", "aihf", "aihf-rounds", "dpo-beta", "ipo-beta", "aihf-dpo-beta", "aihf-dpo-lr", "self-play-aihf", "spin"]
    page = (results / "imdb-scratch-cpu-kl-frontier" / "kl_budgets.md").read_text(encoding="utf-8")
    assert page.endswith(tuning.budget_table(kl_frontier.read_grids(files, methods)))
    assert "| aihf-dpo-beta | 27 | 0.833 (2.6) | 1.044 (8.3) |" in page  # the 10-nat choices of the pre-registered test
