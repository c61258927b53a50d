"""scripts/imdb_grid_pairs.py: two methods' validation units paired by grid point."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("imdb_grid_pairs", ROOT / "scripts" / "imdb_grid_pairs.py")
grid_pairs = importlib.util.module_from_spec(spec)
sys.modules["imdb_grid_pairs"] = grid_pairs
spec.loader.exec_module(grid_pairs)


def _unit(folder: Path, setting: str, run: str, gold: float, kl: float) -> None:
    path = folder / "runs" / setting / run / "seed-0" / "evaluation.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"row": {"seed": 0, "gold_reward": gold, "kl": kl}}), encoding="utf-8")


def test_points_are_paired_by_setting_and_values(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    _unit(new, "balanced", "x-start@lr=1,w=2", 1.0, 5.0)
    _unit(new, "balanced", "x-start@lr=3,w=2", 2.0, 9.0)
    _unit(old, "balanced", "x@lr=1,w=2", 0.5, 6.0)
    _unit(old, "balanced", "x@lr=3,w=2", 2.5, 8.0)
    _unit(old, "balanced", "y@lr=1,w=2", 9.0, 9.0)  # another method: not read
    page = grid_pairs.pairs_page([new, old], "x-start", "x")
    assert "| lr=1,w=2 | 1.000 (5.0) | 0.500 (6.0) | yes |" in page
    assert "| lr=3,w=2 | 2.000 (9.0) | 2.500 (8.0) | no |" in page
    assert "x-start's KL below x's at 1 of 2 points." in page


def test_a_missing_point_and_a_conflicting_copy_are_errors(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _unit(a, "balanced", "x-start@lr=1", 1.0, 5.0)
    _unit(a, "balanced", "x@lr=1", 1.0, 5.0)
    _unit(a, "balanced", "x@lr=3", 1.0, 5.0)
    with pytest.raises(ValueError, match=r"grid points of only one method: \[\('balanced', 'lr=3'\)\]"):
        grid_pairs.pairs_page([a], "x-start", "x")
    _unit(b, "balanced", "x@lr=1", 2.0, 5.0)
    with pytest.raises(ValueError, match="x@lr=1 in balanced is in two folders with different results"):
        grid_pairs.grid_units([a, b], "x")


def test_the_committed_start_reference_page_is_what_its_units_give():
    """docs/results/imdb-scratch-cpu-tune-start/pairs.md (H22 in docs/results.md) is the script's page of the
    committed units: the start-reference grid beside the tuning grid's Self-Play-AIHF."""
    results = ROOT / "docs" / "results"
    start, tune = results / "imdb-scratch-cpu-tune-start", results / "imdb-scratch-cpu-tune"
    folders = [start / "imdb-tune-start", start / "imdb-tune-start-lq", tune / "imdb-tune", tune / "imdb-tune-few",
               tune / "imdb-tune-lq"]
    page = grid_pairs.pairs_page(folders, "self-play-aihf-start", "self-play-aihf")
    assert page + "\n" == (start / "pairs.md").read_text(encoding="utf-8")
    assert "self-play-aihf-start's KL below self-play-aihf's at 8 of 9 points." in page
