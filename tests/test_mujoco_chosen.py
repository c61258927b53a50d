"""scripts/mujoco_chosen.py: the table of every method at its chosen setting, read from
hand-made exports of the paper grid (returns known, so each cell's figures are checked against
their arithmetic), and the YAML file's errors."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mujoco_chosen", ROOT / "scripts" / "mujoco_chosen.py")
chosen = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = chosen  # its dataclass looks its module up there
spec.loader.exec_module(chosen)


def _export(folder: Path, setting: str, demos: str, runs: dict[str, list[float]], data: Path, planned: int = 3,
            first_seed: int = 0) -> None:
    """One exported cell of HalfCheetah: config.yaml (seeds ``first_seed`` on, ``planned`` of them)
    and each (method, seed)'s result.json, ``runs`` giving each method's final returns by seed
    (two evaluations: half of it, then it)."""
    cell = folder / f"HalfCheetah-v5-{setting}"
    cell.mkdir(parents=True)
    (cell / "config.yaml").write_text(yaml.safe_dump({"env": "HalfCheetah-v5", "data_dir": str(data), "demos": demos,
                                                      "n_prefs": 1200,
                                                      "seeds": list(range(first_seed, first_seed + planned))}))
    for method, finals in runs.items():
        for seed, final in enumerate(finals, start=first_seed):
            run = cell / "runs" / method / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "result.json").write_text(json.dumps({"result": {"returns": [final / 2, final], "wall_s": 1.0}}))


def _aihf_and_rlhf_balanced(tmp_path: Path) -> tuple[Path, Path]:
    """A grid export of HalfCheetah's balanced cell with AIHF (0.9, 0.7, 0.8 of the expert) and
    RLHF (0.1, 0.3, 0.2), and the YAML file naming both: (that file, the data folder)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 1000.0}))
    _export(tmp_path / "grid", "balanced", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [900.0, 700.0, 800.0]}, data)
    path = tmp_path / "chosen.yaml"
    path.write_text(yaml.safe_dump({"HalfCheetah-v5": [{"method": m, "setting": "paper preset", "export": "grid"}
                                                       for m in ("aihf", "rlhf")]}))
    return path, data


def page_of(path: Path, source: Path | None = None) -> str:
    """The markdown page the script writes for the YAML file ``path`` (named ``source`` in it)."""
    return chosen.tables(*chosen.read_page(path), source or path)


@pytest.fixture
def exports(tmp_path):
    """Two exports (the paper grid, and AIHF at another w_P) and the YAML file naming them."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 1000.0, "low_return_mean": 250.0}))
    _export(tmp_path / "grid", "balanced", "demos", {"rlhf": [100.0, 300.0, 200.0], "bc": [50.0]}, data)
    _export(tmp_path / "grid", "low-quality-demos", "demos_low", {"rlhf": [100.0, 300.0, 200.0]}, data)
    _export(tmp_path / "wpref", "balanced", "demos", {"aihf": [900.0, 700.0]}, data)
    path = tmp_path / "chosen.yaml"
    path.write_text(yaml.safe_dump({"HalfCheetah-v5": [
        {"method": "aihf", "setting": "w_P = 30", "export": "wpref"},
        {"method": "rlhf", "setting": "paper preset", "export": "grid"},
        {"method": "bc", "setting": "paper preset", "export": "grid"}]}))
    return path


def test_each_cell_is_the_grid_status_of_that_methods_export(exports):
    page = page_of(exports)
    rows = {line.split(" (expert")[0].strip("| "): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in page.splitlines() if line.startswith("| balanced") or line.startswith("| low-quality")}
    assert "| data | aihf (w_P = 30) | rlhf (paper preset) | bc (paper preset) |" in page
    # AIHF: finals 900, 700 of an expert 1,000: mean 0.80, t(0.975, 1) * s / sqrt(2) = 12.706 * 0.1 = 1.27;
    # last 5 = the mean of both evaluations, (450 + 900) / 2 and (350 + 700) / 2: 0.60 +- 0.95
    assert rows["balanced"] == ["2/3: 0.80 +- 1.27 (900, 700); last 5: 0.60 +- 0.95",
                                "3/3: 0.20 +- 0.25 (100, 300, 200); last 5: 0.15 +- 0.19",
                                "1/3: 0.05 (50); last 5: 0.04"]
    # no AIHF cell in that export, and BC's cell holds none of its runs
    assert rows["low-quality-demos"] == ["-", "3/3: 0.20 +- 0.25 (100, 300, 200); last 5: 0.15 +- 0.19", "-"]
    assert "| low-quality-demos (expert 1,000; demos_low 250) |" in page
    assert "aihf (w_P = 30) in `wpref`" in page


def test_the_plot_is_written(exports):
    pytest.importorskip("matplotlib")
    columns = chosen.read_columns(exports)
    chosen.plot(columns, {env: chosen.read_rows(env, cols) for env, cols in columns.items()}, exports.with_suffix(".png"))
    assert exports.with_suffix(".png").stat().st_size > 10_000


def test_the_aggregate_waits_for_every_seed_of_every_column(exports):
    # AIHF has 2 of 3 seeds, BC 1: no task is complete
    assert "No task has every run of aihf, rlhf, bc finished yet." in page_of(exports)
    exports.write_text(yaml.safe_dump({"HalfCheetah-v5": [{"method": "rlhf", "setting": "s", "export": "grid"}]}))
    assert "None: aihf is not a column of every environment." in page_of(exports)


def test_the_aggregate_covers_the_complete_tasks_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 1000.0, "low_return_mean": 250.0}))
    _export(tmp_path / "grid", "balanced", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [900.0, 700.0, 800.0]}, data)
    _export(tmp_path / "grid", "few-preferences", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [900.0]}, data)
    path = tmp_path / "chosen.yaml"
    path.write_text(yaml.safe_dump({"HalfCheetah-v5": [{"method": m, "setting": "paper preset", "export": "grid"}
                                                       for m in ("aihf", "rlhf")]}))
    page = page_of(path)
    assert "Over 1 task where every column has all its seeds: HalfCheetah-v5 balanced (not yet: " \
           "HalfCheetah-v5 low-quality-demos, HalfCheetah-v5 few-preferences)." in page
    # 3 scores: a quarter of 3 rounds down to none cut, so the IQM is the mean; every AIHF seed above
    # every RLHF seed, in every resample too; no verdict while a task of the group is missing
    assert "| aihf | 0.80 [0.70, 0.90] | - | - |" in page and "none until every task of this group is complete" in page
    assert "| rlhf | 0.20 [0.10, 0.30] | 1.00 [1.00, 1.00] | - |" in page
    # the check on the last-5 metric: each run's two evaluations are half its final, then it, so
    # the metric is 3/4 of the final: AIHF 0.675, 0.525, 0.6; RLHF 0.075, 0.225, 0.15
    assert "| verdict | IQM, last 5 | P(aihf > method), last 5 |" in page
    assert "| aihf | 0.80 [0.70, 0.90] | - | - | 0.60 [0.53, 0.68] | - |" in page
    assert "| rlhf | 0.20 [0.10, 0.30] | 1.00 [1.00, 1.00] | - | 0.15 [0.07, 0.23] | 1.00 [1.00, 1.00] |" in page
    assert page.count("## Across environments") == 1  # no few-demonstrations cell: one group
    for seed in (1, 2):  # AIHF's other two few-preferences seeds finish
        run = tmp_path / "grid" / "HalfCheetah-v5-few-preferences" / "runs" / "aihf" / f"seed{seed}"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({"result": {"returns": [400.0, 800.0], "wall_s": 1.0}}))
    _export(tmp_path / "grid", "low-quality-demos", "demos_low", {"rlhf": [100.0, 300.0, 200.0],
                                                                  "aihf": [600.0, 500.0, 400.0]}, data)
    page = page_of(path)
    assert "Over 3 tasks where every column has all its seeds" in page and "(not yet" not in page
    assert "| 1.00 [1.00, 1.00] | aihf ahead |" in page  # RLHF's row, now with a verdict
    pytest.importorskip("matplotlib")
    columns = chosen.read_columns(path)
    chosen.plot_aggregate(chosen.aggregate(columns, {"HalfCheetah-v5": chosen.read_rows("HalfCheetah-v5", columns[
        "HalfCheetah-v5"])}), tmp_path / "aggregate.png")
    assert (tmp_path / "aggregate.png").stat().st_size > 10_000


def test_few_demonstrations_has_its_own_section_and_one_with_the_papers_settings(tmp_path):
    """A few-demonstrations cell adds two sections: its own group (the pre-registered primary
    there) and the paper's settings with it (the pre-registered 12 tasks); the paper's settings
    keep theirs, unchanged; every data setting is that group again until a tenth-episode cell has
    rows, then it has its own section too, and so has the tenth-episode group; while its complete
    tasks are an earlier group's, it names that group instead of repeating its estimates."""
    path, data = _aihf_and_rlhf_balanced(tmp_path)
    before = page_of(path)
    _export(tmp_path / "grid", "few-demonstrations", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [0.0, 0.0, 600.0]},
            data)
    page = page_of(path)
    sections = page.split("## Across environments: ")[1:]
    assert [section.splitlines()[0] for section in sections] == [
        "the paper's data settings", "few demonstrations", "the paper's settings and few demonstrations"]
    assert before.split("## Across environments: ")[1].strip() == sections[0].strip()
    assert "Over 1 task where every column has all its seeds: HalfCheetah-v5 few-demonstrations." in sections[1]
    # AIHF 0, 0, 0.6 against RLHF 0.1, 0.3, 0.2: it ends above in 3 of 9 pairs
    assert "| rlhf | 0.20 [0.10, 0.30] | 0.33 " in sections[1] and "| aihf ahead |" not in sections[1]
    assert "Over 2 tasks" in sections[2] and "HalfCheetah-v5 low-quality-demos" in sections[2]
    _export(tmp_path / "grid", "tenth-episode", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [500.0]}, data)
    sections = page_of(path).split("## Across environments: ")[1:]
    assert sections[4].splitlines()[0] == "every data setting"  # its complete tasks are the 2 above: not repeated
    assert sections[4].splitlines()[2] == (
        'So far the same 2 tasks as "the paper\'s settings and few demonstrations" above, and so its estimates '
        "(not yet: HalfCheetah-v5 low-quality-demos, HalfCheetah-v5 few-preferences, HalfCheetah-v5 tenth-episode); "
        "a verdict once every task of this group is complete.")
    assert "| rlhf |" not in sections[4]
    for seed, final in ((1, 600.0), (2, 700.0)):  # AIHF's other two tenth-episode seeds finish
        run = tmp_path / "grid" / "HalfCheetah-v5-tenth-episode" / "runs" / "aihf" / f"seed{seed}"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({"result": {"returns": [final / 2, final], "wall_s": 1.0}}))
    sections = page_of(path).split("## Across environments: ")[1:]
    assert [section.splitlines()[0] for section in sections] == [
        "the paper's data settings", "few demonstrations", "a tenth of an episode",
        "the paper's settings and few demonstrations", "every data setting"]
    assert "Over 1 task where every column has all its seeds: HalfCheetah-v5 tenth-episode." in sections[2]
    assert "| rlhf | 0.20 [0.10, 0.30] | 1.00 [1.00, 1.00] | aihf ahead |" in sections[2]  # every pair above
    assert "Over 2 tasks" in sections[3] and "Over 3 tasks" in sections[4]


def test_every_data_setting_gets_its_own_aggregate_plot_once_it_holds_more_than_the_papers(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    path, data = _aihf_and_rlhf_balanced(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mujoco_chosen.py", str(path)])
    first, every = tmp_path / "chosen-aggregate.png", tmp_path / "chosen-aggregate-every-setting.png"
    chosen.main()
    assert first.stat().st_size > 10_000 and not every.exists()  # every data setting is the paper's group so far
    _export(tmp_path / "grid", "tenth-episode", "demos", {"rlhf": [100.0, 300.0, 200.0], "aihf": [0.0, 0.0, 600.0]},
            data)
    chosen.main()
    assert every.stat().st_size > 10_000 and every.read_bytes() != first.read_bytes()


@pytest.mark.parametrize("low, high, verdict", [(0.51, 0.9, "aihf ahead"), (0.5, 0.9, "neither"), (0.2, 0.5, "neither"),
                                                (0.2, 0.49, "aihf behind")])
def test_the_verdict_needs_the_whole_interval_on_one_side_of_one_half(low, high, verdict):
    assert chosen.rule_verdict(low, high) == verdict


def test_a_run_copied_into_several_tasks_is_resampled_as_one(tmp_path):
    """RLHF reads no demonstrations, so its low-quality-demos runs are the balanced cell's
    (``copied_from``): the aggregate draws their seeds together, one group for both tasks."""
    from aihf.eval.aggregate import iqm_with_interval

    data = tmp_path / "data"
    data.mkdir()
    (data / "provenance.json").write_text(json.dumps({"demonstrator_return_mean": 1000.0, "low_return_mean": 250.0}))
    for setting, demos, aihf in (("balanced", "demos", [900.0, 700.0, 800.0]), ("low-quality-demos", "demos_low", [600.0, 500.0, 400.0])):
        _export(tmp_path / "grid", setting, demos, {"rlhf": [100.0, 300.0, 200.0], "aihf": aihf}, data)
    for seed in range(3):
        copied = tmp_path / "grid" / "HalfCheetah-v5-low-quality-demos" / "runs" / "rlhf" / f"seed{seed}" / "result.json"
        run = json.loads(copied.read_text())
        copied.write_text(json.dumps({**run, "copied_from": f"runs/x/HalfCheetah-v5-balanced/runs/rlhf/seed{seed}"}))
    saved = chosen.grid.finished_runs(tmp_path / "grid" / "HalfCheetah-v5-low-quality-demos", "rlhf")
    assert chosen.run_sources(saved, "HalfCheetah-v5-low-quality-demos") == ("HalfCheetah-v5-balanced",) * 3
    path = tmp_path / "chosen.yaml"
    path.write_text(yaml.safe_dump({"HalfCheetah-v5": [{"method": m, "setting": "paper preset", "export": "grid"}
                                                       for m in ("aihf", "rlhf")]}))
    columns = chosen.read_columns(path)
    across = chosen.aggregate(columns, {"HalfCheetah-v5": chosen.read_rows("HalfCheetah-v5", columns["HalfCheetah-v5"])})
    scores, one = [[0.1, 0.3, 0.2]] * 2, ("HalfCheetah-v5", ("HalfCheetah-v5-balanced",) * 3)
    assert across.iqm["rlhf"] == iqm_with_interval(scores, chosen.RESAMPLES, chosen.BOOTSTRAP_SEED, [one, one])
    assert across.iqm["rlhf"] != iqm_with_interval(scores, chosen.RESAMPLES, chosen.BOOTSTRAP_SEED)


@pytest.mark.parametrize("entry, message", [
    ({"method": "sac", "setting": "s", "export": "grid"}, "column 1: method 'sac' is none of"),
    ({"method": "rlhf", "setting": "s", "export": "nowhere"}, "column 1: export 'nowhere': no folder"),
    ({"method": "rlhf", "export": "grid"}, "column 1: expected exactly the fields method, setting, export"),
])
def test_a_wrong_column_is_named_with_its_file_environment_and_field(exports, entry, message):
    exports.write_text(yaml.safe_dump({"HalfCheetah-v5": [entry]}))
    with pytest.raises(ValueError, match=f"chosen.yaml: HalfCheetah-v5, {message}"):
        chosen.read_columns(exports)


@pytest.mark.parametrize("name", ["mujoco-chosen", "mujoco-tenth-five-seeds"])
def test_the_committed_table_is_what_the_committed_exports_give(name):
    """docs/results/<name>.md holds no number the exports do not: regenerated, it is the same."""
    source = Path(f"docs/results/{name}.yaml")
    page = page_of(ROOT / source, source)
    assert (ROOT / source.with_suffix(".md")).read_text(encoding="utf-8") == page


def test_a_column_reads_later_seeds_from_a_second_export(tmp_path):
    """AIHF's seeds 0-2 in one export and 3-4 in another: one column of 5 seeds, in the table and
    the aggregate; a seed that both exports plan is an error naming them."""
    path, data = _aihf_and_rlhf_balanced(tmp_path)
    _export(tmp_path / "later", "balanced", "demos", {"aihf": [150.0, 1000.0]}, data, planned=2, first_seed=3)
    spec = yaml.safe_load(path.read_text())
    spec["HalfCheetah-v5"][0]["export"] = ["grid", "later"]
    path.write_text(yaml.safe_dump(spec))
    page = page_of(path)
    assert "aihf (paper preset) in `grid` + `later`" in page
    assert "| 5/5: 0.71 +- 0.41 (900, 700, 800, 150, 1,000)" in page  # t(0.975, 4) * 0.332 / sqrt(5) = 0.413
    # seed 3 (0.15) beats one of RLHF's three (0.10): P(aihf > rlhf) = (4 x 3 + 1) / 15
    assert "| rlhf | 0.20 [0.10, 0.30] | 0.87 [" in page
    _export(tmp_path / "again", "balanced", "demos", {"aihf": [500.0]}, data, planned=1, first_seed=2)
    spec["HalfCheetah-v5"][0]["export"] = ["grid", "again"]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="seed 2 is planned in both grid and again"):
        page_of(path)


def test_the_file_chooses_the_data_settings_shown_and_the_intervals_level(tmp_path):
    path, data = _aihf_and_rlhf_balanced(tmp_path)
    _export(tmp_path / "grid", "tenth-episode", "demos", {"rlhf": [100.0, 300.0, 200.0],
                                                          "aihf": [300.0, 100.0, 900.0]}, data)
    whole = page_of(path)
    assert "[95% stratified percentile bootstrap" in whole and "| tenth-episode (expert" in whole
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({"settings": ["tenth-episode"], "confidence": 0.5, **spec}))
    page = page_of(path)
    assert "| balanced (expert" not in page and "| tenth-episode (expert" in page
    assert "## Across environments: a tenth of an episode" in page and "paper's data settings" not in page
    assert "[50% stratified percentile bootstrap" in page and chosen.level(0.9706) == "97.06%"

    def iqm_interval(text: str) -> tuple[float, float]:
        section = text[text.index("## Across environments: a tenth of an episode"):]
        row = next(line for line in section.splitlines() if line.startswith("| aihf |"))
        low, high = row.split(" | ")[1].split("[")[1].rstrip("]").split(", ")
        return float(low), float(high)

    (low, high), (low_95, high_95) = iqm_interval(page), iqm_interval(whole)
    assert low_95 < low and high < high_95  # a 50% interval inside the 95% one


@pytest.mark.parametrize("options, message", [
    ({"settings": ["tenth"]}, "settings: expected a list of the data settings"),
    ({"settings": "balanced"}, "settings: expected a list"),
    ({"confidence": 95}, "confidence: expected a number between 0 and 1"),
    ({"confidence": 1.0}, "confidence: expected a number between 0 and 1"),
    ({"seeds": "0-4"}, "seeds: expected a list of seed numbers"),
])
def test_a_wrong_page_key_is_named_with_its_file(tmp_path, options, message):
    path, _ = _aihf_and_rlhf_balanced(tmp_path)
    path.write_text(yaml.safe_dump({**options, **yaml.safe_load(path.read_text())}))
    with pytest.raises(ValueError, match=f"chosen.yaml: {message}"):
        chosen.read_page(path)


def test_the_page_seeds_keep_a_task_open_until_every_column_has_them(tmp_path):
    """``seeds: [0, ..., 4]``: a column whose exports plan only seeds 0-2 so far shows 3/5 and its
    task is not complete (no aggregate, so no verdict); a seed outside the list is an error."""
    path, data = _aihf_and_rlhf_balanced(tmp_path)
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({"seeds": [0, 1, 2, 3, 4], **spec}))
    page = page_of(path)
    assert "| 3/5: 0.80" in page and "No task has every run of aihf, rlhf finished yet." in page
    _export(tmp_path / "later", "balanced", "demos", {"aihf": [150.0, 1000.0], "rlhf": [100.0, 200.0]}, data,
            planned=2, first_seed=3)
    for column in spec["HalfCheetah-v5"]:
        column["export"] = ["grid", "later"]
    path.write_text(yaml.safe_dump({"seeds": [0, 1, 2, 3, 4], **spec}))
    assert "| 5/5: 0.71" in page_of(path) and "No task has every run" not in page_of(path)
    path.write_text(yaml.safe_dump({"seeds": [0, 1, 2], **spec}))
    with pytest.raises(ValueError, match=r"seeds \[3, 4\] are planned but not among the page's seeds"):
        page_of(path)
