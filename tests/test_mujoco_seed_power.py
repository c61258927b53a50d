"""scripts/mujoco_seed_power.py: the share of simulated experiments that would decide each
pre-registered verdict, per task group and seed count, from the grid's exports."""

import importlib.util
import sys
from pathlib import Path

import pytest
from test_mujoco_chosen import _aihf_and_rlhf_balanced

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mujoco_seed_power", ROOT / "scripts" / "mujoco_seed_power.py")
power = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = power
spec.loader.exec_module(power)


def _columns_and_rows(tmp_path: Path) -> tuple[dict, dict]:
    columns = power.chosen.read_columns(_aihf_and_rlhf_balanced(tmp_path)[0])
    return columns, {env: power.chosen.read_rows(env, env_columns) for env, env_columns in columns.items()}


def test_a_clear_lead_is_decided_at_every_seed_count(tmp_path, monkeypatch):
    """AIHF at 0.9, 0.7, 0.8 of the expert and RLHF at 0.1, 0.3, 0.2 on the one task."""
    monkeypatch.setattr(power.chosen, "TASK_GROUPS", (("balanced data", ("balanced",)),))
    lines = power.power_table(*_columns_and_rows(tmp_path), [3, 5], 20, 200, 0)
    assert lines[0] == "## balanced data (1 task)"
    assert [line.split(" | ")[:5] for line in lines if line.startswith("| rlhf")] == [
        ["| rlhf", "1.00", "3", "1.00", "0.00"], ["| rlhf", "1.00", "5", "1.00", "0.00"]]


def test_a_group_with_a_task_left_is_not_simulated(tmp_path, monkeypatch):
    """The paper's group: balanced is complete, low-quality-demos and few-preferences have no run."""
    columns, rows = _columns_and_rows(tmp_path)
    assert power.chosen.task_scores(columns, rows).left_out == [
        "HalfCheetah-v5 low-quality-demos", "HalfCheetah-v5 few-preferences"]
    monkeypatch.setattr(power.chosen, "TASK_GROUPS", power.chosen.TASK_GROUPS[:1])
    assert power.power_table(columns, rows, [3], 5, 100, 0) == []


@pytest.mark.slow
def test_the_committed_page_is_what_the_committed_exports_give(tmp_path):
    """docs/results/mujoco-chosen-seed-power.md, regenerated with its defaults (about 3 minutes), is the same."""
    committed = (ROOT / "docs/results/mujoco-chosen-seed-power.md").read_text(encoding="utf-8")
    source = Path("docs/results/mujoco-chosen.yaml")
    columns = power.chosen.read_columns(ROOT / source)
    rows = {env: power.chosen.read_rows(env, env_columns) for env, env_columns in columns.items()}
    body = power.power_table(columns, rows, [3, 5, 8, 12], 200, 2000, 0)
    assert committed.split("\n")[4:] == body
