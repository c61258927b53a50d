"""Every markdown table the results writers produce renders as a table on GitHub: each row
has as many cells as its header (issue 13 item 9).

GitHub splits a row at every pipe that is not escaped as ``\\|``, inside code spans and
math too, so a header such as "KL(pi || pi_SFT)" gains two cells, the rows no longer
match it, and the whole table renders as a paragraph. Checked on the writers' output for
made-up results (IMDb ``plots.write_outputs``, whose results.md holds three tables; the
toy and MuJoCo tables; the tuning choice), and on every markdown file committed under
docs/ and the README.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DELIMITER = re.compile(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")


def cell_count(row: str) -> int:
    """Cells of a table row as GitHub counts them: split at unescaped pipes, the leading and
    trailing pipe optional."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return len(re.split(r"(?<!\\)\|", row))


def markdown_tables(text: str) -> list[list[tuple[int, str]]]:
    """The tables of a markdown text, outside fenced code: each a list of (line number, row),
    header first, then the delimiter row, then the body rows."""
    lines, tables, fenced, i = text.splitlines(), [], False, 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and "|" in lines[i] and i + 1 < len(lines) and _DELIMITER.fullmatch(lines[i + 1]):
            j = i + 2
            while j < len(lines) and "|" in lines[j] and lines[j].strip():
                j += 1
            tables.append([(n + 1, lines[n]) for n in range(i, j)])
            i = j
            continue
        i += 1
    return tables


def ragged_rows(text: str) -> list[str]:
    """Rows whose cell count differs from their table's header, as 'line N: k cells, header m'."""
    return [
        f"line {n}: {cell_count(row)} cells, header {cell_count(table[0][1])}: {row[:100]}"
        for table in markdown_tables(text)
        for n, row in table[1:]
        if cell_count(row) != cell_count(table[0][1])
    ]


def test_the_checker_catches_a_pipe_in_a_header():
    broken = "| method | KL(pi || pi_SFT) |\n|---|---|\n| dpo | 1.0 |\n"
    assert len(markdown_tables(broken)) == 1 and len(ragged_rows(broken)) == 2
    assert not ragged_rows("| a \\| b | c |\n|---|---|\n| 1 | 2 |\n")  # an escaped pipe is text
    assert not ragged_rows("```\n| a || b |\n|---|\n```\n")  # fenced code is no table


def _stat(mean: float, ci95: float = 0.1) -> dict[str, float]:
    return {"mean": mean, "ci95": ci95, "n": 3}


def test_imdb_results_md_tables_are_rectangular(tmp_path):
    pytest.importorskip("matplotlib")
    from aihf.eval import plots
    from aihf.eval.metrics import METRICS

    def entry(gold: float, recorded: bool) -> dict:
        runs = [{"train_loss_first": 0.7, "train_loss_last": 0.3}] * 2 if recorded else []
        out = {"runs": runs, **{metric: _stat(gold) for metric in METRICS}, "kl": _stat(2.0, math.nan)}
        if recorded:
            out["heldout_pref_accuracy"] = _stat(0.8, 0.02)
        return out

    results = {
        "judge": {"name": "vader"},
        "settings": {
            "balanced": {"pi_sft": entry(0.1, False), "dpo": entry(0.5, True), "aihf@learning_rate=0.0003": entry(0.9, True)},
            "few-preferences": {"aihf-dpo": entry(0.7, True)},
        },
    }
    text = plots.write_outputs(results, tmp_path)["table"].read_text(encoding="utf-8")
    tables = markdown_tables(text)
    assert len(tables) == 3  # the metrics, the rewards' held-out accuracy, the training losses
    assert [len(t) for t in tables] == [2 + 4, 2 + 3, 2 + 3]
    assert not ragged_rows(text)
    assert all("|" not in plots.label(results, metric) for metric in METRICS)


def test_toy_results_table_is_rectangular():
    from aihf.experiments.bandit import results_table

    entry = {"normalised_return": _stat(0.8), "regularised_value": _stat(0.7), "reward_correlation": _stat(0.6, math.nan)}
    text = results_table({"settings": {"balanced": {"aihf": entry, "ml-irl": entry}, "few": {"rlhf": entry}}})
    assert len(markdown_tables(text)) == 1 and not ragged_rows(text)


def test_mujoco_results_table_is_rectangular():
    pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    from aihf.experiments.mujoco import results_table, summarise

    runs = {
        method: [{"steps": [1000], "returns": [r + seed], "stds": [1.0], "wall_s": 10.0} for seed in range(3)]
        for method, r in (("aihf", 300.0), ("rlhf", 250.0), ("bc", 400.0))
    }
    results = {
        "env": "Hopper-v5", "total_steps": 1000, "n_demos": 10000, "demos": "demos", "n_prefs": 200,
        "seeds": [0, 1, 2], "schedule": "ml_irl", "reward_shift": 0.0, "demonstrator_return": 581.0, "summary": summarise(runs, 581.0),
    }
    text = results_table(results)
    assert len(markdown_tables(text)) == 1 and not ragged_rows(text)
    one_seed = {**results, "seeds": [0], "summary": summarise({m: r[:1] for m, r in runs.items()}, 581.0)}
    assert "none (1 seed)" in results_table(one_seed) and "nan" not in results_table(one_seed)
    assert "validation" not in text.splitlines()[0]
    assert results_table({**results, "eval_split": "validation"}).splitlines()[0].endswith(
        "on the validation reset seeds (for choosing settings, not a test result)")
    from aihf.control.algorithm import ControlLoopConfig
    from aihf.experiments.mujoco import reward_ensemble_entry

    assert reward_ensemble_entry(ControlLoopConfig()) == {} and "ensemble" not in text
    ensemble = reward_ensemble_entry(ControlLoopConfig(reward_ensemble=5, reward_ensemble_rule="uwo",
                                                       reward_ensemble_penalty=0.5))
    assert ensemble == {"reward_ensemble": {"members": 5, "rule": "uwo", "penalty": 0.5, "resample": "none"}}
    assert "learned rewards an ensemble of reward nets (5 uwo 0.5), shifted by 0" in results_table(
        {**results, **ensemble})


def test_mujoco_late_metric_is_each_seeds_mean_over_its_last_evaluations():
    """A run that falls at its final evaluation: the primary metric counts the fall, the
    secondary one averages the last LATE_EVALUATIONS evaluations of each seed, by hand."""
    pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    from aihf.experiments.mujoco import LATE_EVALUATIONS, summarise

    assert LATE_EVALUATIONS == 5
    fell = [100.0, 200.0, 3400.0, 3300.0, 3500.0, 3400.0, 200.0]
    held = [100.0, 200.0, 3000.0, 3100.0, 3200.0, 3300.0, 3400.0]
    runs = {"aihf": [{"returns": fell, "wall_s": 1.0}, {"returns": held, "wall_s": 1.0}],
            "bc": [{"returns": [2000.0], "wall_s": 1.0}, {"returns": [1000.0], "wall_s": 1.0}]}
    s = summarise(runs, expert=1000.0)
    late_fell, late_held = (3400 + 3300 + 3500 + 3400 + 200) / 5, (3000 + 3100 + 3200 + 3300 + 3400) / 5
    assert s["aihf"]["normalised_mean"] == pytest.approx((200 + 3400) / 2 / 1000)
    assert s["aihf"]["late_normalised_mean"] == pytest.approx((late_fell + late_held) / 2 / 1000)
    # two seeds: t(0.975, 1) * sample std / sqrt(2) = 12.706 * |a - b| / 2
    assert s["aihf"]["late_normalised_ci95"] == pytest.approx(12.7062 * abs(late_fell - late_held) / 2 / 1000, rel=1e-4)
    assert s["bc"]["late_normalised_mean"] == s["bc"]["normalised_mean"] == pytest.approx(1.5)


def test_tuning_chosen_table_is_rectangular():
    from aihf.experiments.imdb.tuning import chosen_table

    chosen = {"balanced": {"dpo": {"run": "dpo@learning_rate=0.0003", "value": 0.41, "kl": 3.0, "within_kl": True},
                           "sft": {"run": "sft", "value": 0.1, "kl": 0.0, "within_kl": False}}}
    text = chosen_table(chosen)
    assert len(markdown_tables(text)) == 1 and not ragged_rows(text)


@pytest.mark.parametrize(
    "path", sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")]), ids=lambda p: str(p.relative_to(REPO))
)
def test_committed_markdown_tables_are_rectangular(path):
    assert not ragged_rows(path.read_text(encoding="utf-8")), f"{path.relative_to(REPO)}: {ragged_rows(path.read_text(encoding='utf-8'))}"
