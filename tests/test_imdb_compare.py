"""aihf compare (aihf.eval.compare; scripts/imdb_compare.py): Welch differences between methods of
IMDb test runs, by setting."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aihf.eval import compare

ROOT = Path(__file__).resolve().parents[1]


def _folder(path: Path, setting: str, methods: dict[str, list[float]], kl: float = 5.0) -> Path:
    path.mkdir(parents=True)
    entries = {"pi_sft": {"runs": [{"seed": 0, "gold_reward": 0.1, "kl": 0.0}]}}
    entries.update({m: {"runs": [{"seed": s, "gold_reward": v, "kl": kl} for s, v in enumerate(vs)]}
                    for m, vs in methods.items()})
    (path / "results.json").write_text(json.dumps({"settings": {setting: entries}}), encoding="utf-8")
    return path


def test_page_gives_welch_differences_and_verdicts(tmp_path):
    a = _folder(tmp_path / "a", "balanced", {"x": [1.0, 1.1, 0.9, 5.0], "y": [0.0, 0.1, -0.1, 5.0], "z": [1.0, 0.0, 2.0]})
    b = _folder(tmp_path / "b", "few", {"x": [0.0, 0.1, -0.1], "y": [1.0, 1.1, 0.9], "z": [0.5, 0.4, 0.6]})
    page = compare.comparison_page([a, b], [("x", "y"), ("z", "y")], seeds=[0, 1, 2])
    # s = 0.1 on both sides: se = sqrt(2 * 0.01 / 3), df = 4, t = 2.776 (tables): 0.227; seed 3 left out
    assert "| balanced | x | y | +1.00 ± 0.23 | x ahead | 1.00 (5.0) | 0.00 (5.0) |" in page
    assert "| few | x | y | -1.00 ± 0.23 | y ahead |" in page
    assert "| balanced | z | y | +1.00 ± 2.45 | neither |" in page  # z's spread: df ~ 2
    assert "seeds 0, 1, 2" in page
    only = compare.comparison_page([a, b], [("x", "y")], seeds=[0, 1, 2], settings=["few"])
    assert "| few | x | y |" in only and "| balanced |" not in only
    with pytest.raises(ValueError, match=r"no setting \['lq'\] in the folders"):
        compare.comparison_page([a, b], [("x", "y")], seeds=[0, 1, 2], settings=["lq"])


def test_method_table_gives_each_methods_mean_per_setting(tmp_path):
    a = _folder(tmp_path / "a", "balanced", {"x": [1.0, 1.1, 0.9, 5.0], "y": [0.0, 0.2, 0.1]})
    b = _folder(tmp_path / "b", "few", {"x": [0.0, 0.1, -0.1]}, kl=7.0)
    table = compare.method_table([a, b], ["x", "y"], seeds=[0, 1, 2])
    # x in balanced: mean 1.0, s = 0.1, t(0.975, 2) = 4.303: 0.248; seed 3 left out
    assert "| method | balanced | few |" in table
    assert "| x | 1.00 ± 0.25 (5.0) | 0.00 ± 0.25 (7.0) |" in table and "| y | 0.10 ± 0.25 (5.0) | - |" in table
    assert compare.method_table([a, b], ["y"], seeds=[0, 1, 2], settings=["few", "balanced"]).splitlines()[2] == \
        "| y | - | 0.10 ± 0.25 (5.0) |"
    with pytest.raises(ValueError, match=r"no unit of \['w'\] in settings \['balanced', 'few'\] \(the folders have "
                                         r"\['x', 'y'\] there\)"):
        compare.method_table([a, b], ["x", "w"], seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=rf"--seeds asks for seed\(s\) \[4\], which {re.escape(str(a))} has no unit of balanced/x for "
                                         r"\(it has seeds \[0, 1, 2, 3\]\)"):
        compare.method_table([a, b], ["x"], seeds=[0, 4])
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "imdb_compare.py"), str(a), "--seeds", "0", "1", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "give --pairs, --methods or both" in done.stderr


def test_aihf_compare_is_the_command_and_says_what_the_folders_lack(tmp_path, capsys):
    from aihf.cli import main

    a = _folder(tmp_path / "a", "balanced", {"x": [1.0, 1.1, 0.9], "y": [0.0, 0.1, -0.1]})
    assert main(["compare", str(a), "--seeds", "0", "1", "2", "--pairs", "x:y", "--out", str(tmp_path / "page.md")]) == 0
    assert (tmp_path / "page.md").read_text() == compare.comparison_page([a], [("x", "y")], [0, 1, 2])
    assert main(["compare", str(a), "--seeds", "0", "5", "--methods", "x"]) == 2
    assert (f"aihf: config error: --seeds asks for seed(s) [5], which {a} has no unit of balanced/x for (it has seeds "
            "[0, 1, 2])") in capsys.readouterr().err
    assert main(["compare", str(a), "--seeds", "0", "--pairs", "x:y", "--as", "balanced"]) == 2
    assert "--as takes SETTING=NAME" in capsys.readouterr().err


def test_page_refuses_a_missing_seed_a_missing_method_and_a_method_twice(tmp_path):
    a = _folder(tmp_path / "a", "balanced", {"x": [1.0, 2.0], "y": [0.0, 1.0, 2.0]})
    with pytest.raises(ValueError, match=r"--seeds asks for seed\(s\) \[2\], which .* has no unit of balanced/x"):
        compare.comparison_page([a], [("x", "y")], seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"no method 'w' in setting 'balanced' of the folders \(it has \['x', 'y'\]\)"):
        compare.comparison_page([a], [("w", "y")], seeds=[0, 1])
    b = _folder(tmp_path / "b", "balanced", {"x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="balanced/x is in both"):
        compare.comparison_page([a, b], [("x", "y")], seeds=[0, 1])


def test_paired_differences_take_each_seeds_difference(tmp_path):
    """``paired``: a t-interval over the seeds' differences; a method of a setting may come from another folder."""
    a = _folder(tmp_path / "a", "balanced", {"x": [1.0, 2.0, 3.0]})
    b = _folder(tmp_path / "b", "balanced", {"x-start": [1.5, 2.4, 3.6]})
    page = compare.comparison_page([a, b], [("x-start", "x")], seeds=[0, 1, 2], paired=True)
    # differences 0.5, 0.4, 0.6: mean 0.5, s = 0.1, t(0.975, 2) = 4.303: 0.248
    assert "| balanced | x-start | x | +0.50 ± 0.25 | x-start ahead |" in page and "paired by seed" in page
    welch = compare.comparison_page([a, b], [("x-start", "x")], seeds=[0, 1, 2])
    assert "| balanced | x-start | x | +0.50 ± 2." in welch and "neither" in welch


def test_committed_test_runs_at_three_seeds():
    """The committed tuned test run (seeds 0-2) gives the differences docs/results.md quotes."""
    folder = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned"
    page = compare.comparison_page([folder / "balanced", folder / "few-preferences"],
                                   [("aihf-rounds", "rlhf"), ("aihf-dpo", "dpo")], seeds=[0, 1, 2])
    assert "| balanced | aihf-rounds | rlhf | -0.12 ± 2.14 | neither | 1.48 (21.7) | 1.60 (23.3) |" in page
    assert "| few-preferences | aihf-dpo | dpo | +0.76 ± 0.14 | aihf-dpo ahead | 0.93 (16.9) | 0.17 (10.0) |" in page


def test_committed_start_reference_comparison():
    """docs/results/imdb-scratch-cpu-tuned-start/compare.md (H23 in docs/results.md) is the script's paired page
    of the committed test units."""
    results = ROOT / "docs" / "results"
    tuned = results / "imdb-scratch-cpu-tuned"
    folders = [results / "imdb-scratch-cpu-tuned-start", tuned / "balanced", tuned / "few-preferences",
               tuned / "low-quality-demos"]
    page = compare.comparison_page(folders, [("self-play-aihf-start", "self-play-aihf")], seeds=[0, 1, 2], paired=True)
    assert page == (results / "imdb-scratch-cpu-tuned-start" / "compare.md").read_text(encoding="utf-8")
    assert "| few-preferences | self-play-aihf-start | self-play-aihf | +0.05 ± 0.05 | neither |" in page


def test_committed_six_seed_page():
    """docs/results/imdb-scratch-cpu-tuned-six/primary.md (the six-seed look in docs/results.md) is the script's page."""
    six = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-six"
    folders = [six / "balanced", six / "low-quality-demos", six / "few-preferences"]
    pairs = [("aihf-rounds", "rlhf"), ("aihf-dpo", "dpo"), ("self-play-aihf", "spin")]
    page = compare.comparison_page(folders, pairs, seeds=[0, 1, 2, 3, 4, 5])
    assert page == (six / "primary.md").read_text(encoding="utf-8")
    assert "| low-quality-demos | self-play-aihf | spin | +0.44 ± 0.19 | self-play-aihf ahead |" in page


def test_committed_ipo_beta_pages():
    """docs/results/imdb-scratch-cpu-tuned-ipo-beta/primary.md and secondary.md ("IPO's own beta on IMDb" in
    docs/results.md, H32-H34) are the script's pages of the committed test units."""
    results = ROOT / "docs" / "results"
    here, six = results / "imdb-scratch-cpu-tuned-ipo-beta", results / "imdb-scratch-cpu-tuned-six"
    folders = [here / "balanced-lq", here / "few-preferences", six / "balanced", six / "few-preferences",
               six / "low-quality-demos"]
    for name, pairs in (("primary", [("ipo-beta", "ipo"), ("ipo-beta", "dpo"), ("aihf-dpo", "ipo-beta")]),
                        ("secondary", [("aihf-rounds", "ipo-beta"), ("aihf", "ipo-beta"), ("self-play-aihf", "ipo-beta")])):
        page = compare.comparison_page(folders, pairs, seeds=[0, 1, 2, 3, 4, 5])
        assert page == (here / f"{name}.md").read_text(encoding="utf-8"), name
    assert "| balanced | ipo-beta | dpo | -0.31 ± 0.20 | dpo ahead |" in (here / "primary.md").read_text(encoding="utf-8")


def test_committed_dpo_beta_pages():
    """docs/results/imdb-scratch-cpu-tuned-dpo-beta/primary.md and secondary.md ("DPO's own beta on IMDb" in
    docs/results.md, H36-H37) are the script's pages of the committed test units."""
    results = ROOT / "docs" / "results"
    here, ipo, six = (results / f"imdb-scratch-cpu-tuned-{name}" for name in ("dpo-beta", "ipo-beta", "six"))
    folders = [here / "balanced-lq", here / "few-preferences", six / "balanced", six / "few-preferences",
               six / "low-quality-demos"]
    page = compare.comparison_page(folders, [("dpo-beta", "dpo"), ("aihf-dpo", "dpo-beta")], seeds=[0, 1, 2, 3, 4, 5])
    assert page == (here / "primary.md").read_text(encoding="utf-8")
    pairs = [("ipo-beta", "dpo-beta"), ("aihf-rounds", "dpo-beta"), ("aihf", "dpo-beta"), ("self-play-aihf", "dpo-beta")]
    page = compare.comparison_page([*folders[:2], ipo / "balanced-lq", ipo / "few-preferences", *folders[2:]], pairs,
                                   seeds=[0, 1, 2, 3, 4, 5])
    assert page == (here / "secondary.md").read_text(encoding="utf-8")
    assert "| few-preferences | aihf-dpo | dpo-beta | +0.79 ± 0.13 | aihf-dpo ahead |" in (here / "primary.md").read_text(
        encoding="utf-8")


def test_committed_aihf_dpo_beta_page():
    """docs/results/imdb-scratch-cpu-tuned-aihf-dpo-beta/primary.md ("AIHF-DPO's own beta on IMDb" in docs/results.md,
    H39) is the script's page of the committed test units (few-preferences kept the committed values: its row is
    aihf-dpo - dpo-beta in ``test_committed_dpo_beta_pages``)."""
    results = ROOT / "docs" / "results"
    here, dpo, six = (results / f"imdb-scratch-cpu-tuned-{name}" for name in ("aihf-dpo-beta", "dpo-beta", "six"))
    folders = [here / "balanced", here / "low-quality-demos", dpo / "balanced-lq", six / "balanced", six / "low-quality-demos"]
    page = compare.comparison_page(folders, [("aihf-dpo-beta", "dpo-beta"), ("aihf-dpo-beta", "aihf-dpo")],
                                   seeds=[0, 1, 2, 3, 4, 5])
    assert page == (here / "primary.md").read_text(encoding="utf-8")
    assert "| low-quality-demos | aihf-dpo-beta | dpo-beta | -0.52 ± 0.14 | dpo-beta ahead |" in page


def test_committed_aihf_dpo_lr_page():
    """docs/results/imdb-scratch-cpu-tuned-aihf-dpo-lr/primary.md ("AIHF-DPO's learning-rate axis on IMDb" in
    docs/results.md, H42) is the script's page of the committed test units (balanced only: the other settings kept
    their committed values)."""
    results = ROOT / "docs" / "results"
    here, dpo, six = (results / f"imdb-scratch-cpu-tuned-{name}" for name in ("aihf-dpo-lr", "dpo-beta", "six"))
    page = compare.comparison_page([here / "balanced", dpo / "balanced-lq", six / "balanced"],
                                   [("aihf-dpo-lr", "aihf-dpo"), ("aihf-dpo-lr", "dpo-beta")], seeds=[0, 1, 2, 3, 4, 5],
                                   settings=["balanced"])
    assert page == (here / "primary.md").read_text(encoding="utf-8")
    assert "| balanced | aihf-dpo-lr | aihf-dpo | +0.03 ± 0.11 | neither |" in page


def test_committed_kl10_pages():
    """docs/results/imdb-scratch-cpu-tuned-kl10/{primary,low-quality-demos,algorithm-1}.md ("The implicit-reward
    methods at a like KL on IMDb" and "Algorithm 1 and RLHF at a like KL on IMDb" in docs/results.md, H43-H46, H48,
    H50) are the script's pages of the committed test units."""
    here = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-kl10"
    folders = [here / name for name in ("aihf-dpo-beta", "aihf-dpo-beta-few", "dpo-beta", "dpo-beta-few", "ipo-beta",
                                        "ipo-beta-few")]
    seeds = [0, 1, 2, 3, 4, 5]
    primary = compare.comparison_page(folders, [("aihf-dpo-beta", "dpo-beta"), ("aihf-dpo-beta", "ipo-beta"),
                                                ("ipo-beta", "dpo-beta")], seeds, settings=["balanced", "few-preferences"])
    assert primary == (here / "primary.md").read_text(encoding="utf-8")
    assert "| balanced | aihf-dpo-beta | dpo-beta | +0.50 ± 0.07 | aihf-dpo-beta ahead |" in primary
    low = compare.comparison_page(folders, [("aihf-dpo-beta", "dpo-beta")], seeds, settings=["low-quality-demos"])
    assert low == (here / "low-quality-demos.md").read_text(encoding="utf-8")
    assert "| low-quality-demos | aihf-dpo-beta | dpo-beta | +0.01 ± 0.09 | neither |" in low
    explicit = compare.comparison_page([here / "rlhf", here / "aihf-rounds", here / "aihf-dpo-beta"],
                                       [("aihf-rounds", "rlhf"), ("aihf-dpo-beta", "rlhf"), ("aihf-dpo-beta", "aihf-rounds")],
                                       seeds, settings=["balanced"])
    assert explicit == (here / "algorithm-1.md").read_text(encoding="utf-8")  # "Algorithm 1 and RLHF at a like KL", H48, H50
    assert "| balanced | aihf-rounds | rlhf | +0.22 ± 0.21 | aihf-rounds ahead |" in explicit
    twelve = compare.comparison_page([here / "rlhf", here / "aihf-rounds"], [("aihf-rounds", "rlhf")], list(range(12)),
                                     settings=["balanced"])
    assert twelve == (here / "algorithm-1-twelve.md").read_text(encoding="utf-8")  # the second look, H51
    assert "| balanced | aihf-rounds | rlhf | +0.23 ± 0.15 | aihf-rounds ahead |" in twelve


def test_committed_kl10_pages_of_the_rest_of_the_methods():
    """docs/results/imdb-scratch-cpu-tuned-kl10/{rest-balanced,rest-low-quality-demos,all-methods}.md ("The rest of
    the methods at 10 nats on IMDb" in docs/results.md, H52-H56, H66) and spin-beta-lq.md (H69) are the script's pages of the committed units."""
    here = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-kl10"
    seeds = [0, 1, 2, 3, 4, 5]
    pages = [  # page, setting, folders, pairs, a row it must hold
        ("rest-balanced", "balanced", ("rlhf", "aihf", "self-play-aihf", "dpo-beta", "aihf-dpo-beta", "spin-beta"),
         [("aihf", "rlhf"), ("self-play-aihf", "dpo-beta"), ("aihf-dpo-beta", "self-play-aihf"), ("self-play-aihf", "spin-beta")],
         "| balanced | self-play-aihf | dpo-beta | +0.37 ± 0.12 | self-play-aihf ahead |"),
        ("rest-low-quality-demos", "low-quality-demos",
         ("rlhf-lq", "aihf-rounds-lq", "aihf", "self-play-aihf-lq", "dpo-beta", "aihf-dpo-beta"),
         [("aihf-rounds", "rlhf"), ("aihf", "rlhf"), ("self-play-aihf", "dpo-beta"), ("aihf-dpo-beta", "self-play-aihf")],
         "| low-quality-demos | aihf-rounds | rlhf | -0.08 ± 0.22 | neither |"),
        ("spin-beta-lq", "low-quality-demos", ("spin-beta-lq", "self-play-aihf-lq"), [("self-play-aihf", "spin-beta")],
         "| low-quality-demos | self-play-aihf | spin-beta | +0.39 ± 0.06 | self-play-aihf ahead |"),  # H69
    ]
    for name, setting, names, pairs, row in pages:
        page = compare.comparison_page([here / n for n in names], pairs, seeds, settings=[setting])
        assert page == (here / f"{name}.md").read_text(encoding="utf-8") and row in page, name
    folders = [here / n for n in ("rlhf", "aihf-rounds", "aihf", "aihf-dpo-beta", "aihf-dpo-beta-few", "dpo-beta",
                                  "dpo-beta-few", "ipo-beta", "ipo-beta-few", "self-play-aihf", "self-play-aihf-lq",
                                  "spin-beta", "rlhf-lq", "aihf-rounds-lq", "spin-beta-lq")]
    table = compare.method_table(folders + [ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-six" / "few-preferences"],
                                 ["rlhf", "aihf-rounds", "aihf", "dpo-beta", "ipo-beta", "aihf-dpo-beta", "self-play-aihf",
                                  "spin-beta"], seeds, settings=["balanced", "few-preferences", "low-quality-demos"])
    assert table == (here / "all-methods.md").read_text(encoding="utf-8")
    assert "| aihf-dpo-beta | 1.03 ± 0.04 (8.1) | 0.97 ± 0.09 (9.0) | 0.54 ± 0.08 (7.7) |" in table


def test_committed_spin_beta_and_ratio_pages():
    """docs/results/imdb-scratch-cpu-tuned-spin-beta/spin-beta.md ("SPIN's own beta on IMDb", H64, H65) and
    docs/results/imdb-scratch-cpu-ratio-kl10/ratio.md ("AIHF-DPO and DPO across the demonstration/preference
    ratio", H58-H61) are the script's pages of the committed units."""
    results = ROOT / "docs" / "results"
    seeds = [0, 1, 2, 3, 4, 5]
    spin = compare.comparison_page([results / "imdb-scratch-cpu-tuned-spin-beta" / "spin-beta",
                                    results / "imdb-scratch-cpu-tuned-six" / "balanced"],
                                   [("spin-beta", "spin"), ("self-play-aihf", "spin-beta")], seeds, settings=["balanced"])
    assert spin == (results / "imdb-scratch-cpu-tuned-spin-beta" / "spin-beta.md").read_text(encoding="utf-8")
    assert "| balanced | spin-beta | spin | +0.15 ± 0.33 | neither |" in spin
    sweep = [results / "imdb-scratch-cpu-ratio-kl10" / "ratio-sweep"]
    ratio = (compare.method_table(sweep, ["aihf-dpo-beta", "dpo-beta"], seeds) + "\n"
             + compare.comparison_page(sweep, [("aihf-dpo-beta", "dpo-beta")], seeds))
    assert ratio == (results / "imdb-scratch-cpu-ratio-kl10" / "ratio.md").read_text(encoding="utf-8")
    assert "| ratio-0.75 | aihf-dpo-beta | dpo-beta | +0.39 ± 0.06 | aihf-dpo-beta ahead |" in ratio
    low = compare.comparison_page([results / "imdb-scratch-cpu-tuned-spin-beta" / "spin-beta-lq",
                                   results / "imdb-scratch-cpu-tuned-six" / "low-quality-demos"],
                                  [("self-play-aihf", "spin-beta"), ("spin-beta", "spin")], seeds,
                                  settings=["low-quality-demos"])  # H68
    assert low == (results / "imdb-scratch-cpu-tuned-spin-beta" / "spin-beta-lq.md").read_text(encoding="utf-8")


def test_an_alias_shows_the_balanced_units_as_the_sweeps_even_split_and_the_figure_joins_folders(tmp_path):
    """The balanced 10-nat DPO and AIHF-DPO units, shown as ratio-0.5 (``--as balanced=ratio-0.5``), are the
    sweep's ratio-0.5 units (the same 1,000 + 1,000 records: every seed's gold and KL equal); both in one
    figure is one method in two folders (refused); the figure of the sweep's other ratios with the balanced
    folders as f = 0.5 is drawn, and a setting whose counts disagree between folders is refused."""
    results = ROOT / "docs" / "results"
    seeds, sweep = [0, 1, 2, 3, 4, 5], [results / "imdb-scratch-cpu-ratio-kl10" / "ratio-sweep"]
    balanced = [results / "imdb-scratch-cpu-tuned-kl10" / name for name in ("aihf-dpo-beta", "dpo-beta")]
    methods, alias = ["aihf-dpo-beta", "dpo-beta"], {"balanced": "ratio-0.5"}
    even = compare.method_table(sweep, methods, seeds, settings=["ratio-0.5"])
    assert compare.method_table(balanced, methods, seeds, settings=["ratio-0.5"], aliases=alias) == even
    with pytest.raises(ValueError, match="ratio-0.5/aihf-dpo-beta is in both"):
        compare.ratio_figure(sweep + balanced, methods, seeds, tmp_path / "both.png", aliases=alias)
    out = compare.ratio_figure(sweep + balanced, methods, seeds, tmp_path / "sweep.png",
                               settings=["ratio-0.1", "ratio-0.25", "ratio-0.5", "ratio-0.75"],
                               aliases={"balanced": "ratio-0.5", "ratio-0.5": "unused"})  # the sweep's own f = 0.5 set aside
    assert out.stat().st_size > 10_000
    rlhf = [results / "imdb-scratch-cpu-tuned-kl10" / "rlhf"]  # 1,000 + 1,000 records shown as 200 + 1,800
    with pytest.raises(ValueError, match="ratio-0.1: .*rlhf reports 1000 demonstrations and 1000 preferences, "
                                         "another folder 200 and 1800"):
        compare.ratio_figure(sweep + rlhf, ["dpo-beta", "rlhf"], seeds, tmp_path / "wrong.png", settings=["ratio-0.1"],
                             aliases={"balanced": "ratio-0.1"})


def test_committed_confirmed_10_nat_page():
    """docs/results/imdb-scratch-cpu-confirm-kl10/confirmed.md ("Confirming the implicit-reward methods' 10-nat
    choices on a second seed", H81, H82) is the script's page of the committed test units."""
    kl10 = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-kl10"
    folders = [kl10 / name for name in ("aihf-dpo-beta-2seed", "aihf-dpo-beta", "aihf-dpo-beta-few", "dpo-beta",
                                        "dpo-beta-few", "dpo-beta-2seed-few")]
    seeds = [0, 1, 2, 3, 4, 5]
    page = (compare.method_table(folders, ["aihf-dpo-beta-2seed", "aihf-dpo-beta", "dpo-beta-2seed", "dpo-beta"], seeds,
                                 settings=["balanced", "few-preferences", "low-quality-demos"]) + "\n"
            + compare.comparison_page(folders, [("aihf-dpo-beta-2seed", "aihf-dpo-beta"), ("aihf-dpo-beta-2seed", "dpo-beta")],
                                      seeds, settings=["balanced"]) + "\n"
            + compare.comparison_page(folders, [("dpo-beta-2seed", "dpo-beta"), ("aihf-dpo-beta", "dpo-beta-2seed")], seeds,
                                      settings=["few-preferences"]))
    assert page == (ROOT / "docs" / "results" / "imdb-scratch-cpu-confirm-kl10" / "confirmed.md").read_text(encoding="utf-8")
    assert "| balanced | aihf-dpo-beta-2seed | aihf-dpo-beta | +0.05 ± 0.09 | neither |" in page
    assert "| few-preferences | dpo-beta-2seed | dpo-beta | -0.02 ± 0.10 | neither |" in page


def test_committed_confirmed_model_based_10_nat_page():
    """docs/results/imdb-scratch-cpu-confirm-kl10/confirmed-model-based.md ("Confirming the model-based methods'
    10-nat choices on a second seed", H85, H86) is the command's page of the committed test units: both changed
    choices level with the one-seed ones, and Algorithm 1 with rounds no longer ahead of RLHF."""
    kl10 = ROOT / "docs" / "results" / "imdb-scratch-cpu-tuned-kl10"
    folders = [kl10 / name for name in ("aihf-rounds-2seed", "aihf-2seed", "aihf-rounds", "aihf", "rlhf")]
    page = compare.comparison_page(folders, [("aihf-rounds-2seed", "aihf-rounds"), ("aihf-2seed", "aihf"),
                                             ("aihf-rounds-2seed", "rlhf")], [0, 1, 2, 3, 4, 5], settings=["balanced"])
    assert page == (ROOT / "docs" / "results" / "imdb-scratch-cpu-confirm-kl10" / "confirmed-model-based.md").read_text(
        encoding="utf-8")
    assert "| balanced | aihf-rounds-2seed | rlhf | +0.20 ± 0.22 | neither |" in page


def test_committed_explicit_ratio_pages():
    """docs/results/imdb-scratch-cpu-ratio-kl10-explicit/{ratio,all-four}.md ("Algorithm 1 and RLHF across the
    demonstration/preference ratio", H70-H74) are the script's pages of the committed units, the balanced 10-nat
    units shown as ratio-0.5."""
    results = ROOT / "docs" / "results"
    sweep, kl10 = results / "imdb-scratch-cpu-ratio-kl10-explicit", results / "imdb-scratch-cpu-tuned-kl10"
    folders = [sweep / "rlhf", sweep / "aihf-rounds", sweep / "aihf-rounds-b", kl10 / "aihf-rounds", kl10 / "rlhf"]
    seeds, settings = [0, 1, 2, 3, 4, 5], ["ratio-0.1", "ratio-0.25", "ratio-0.5", "ratio-0.75"]
    alias = {"balanced": "ratio-0.5"}
    page = (compare.method_table(folders, ["aihf-rounds", "rlhf"], seeds, settings=settings, aliases=alias) + "\n"
            + compare.comparison_page(folders, [("aihf-rounds", "rlhf")], seeds, settings=settings, aliases=alias))
    assert page == (sweep / "ratio.md").read_text(encoding="utf-8")
    assert "| ratio-0.75 | aihf-rounds | rlhf | +0.27 ± 0.26 | aihf-rounds ahead |" in page
    four = compare.method_table([results / "imdb-scratch-cpu-ratio-kl10" / "ratio-sweep", *folders],
                                ["aihf-dpo-beta", "dpo-beta", "aihf-rounds", "rlhf"], seeds, settings=settings, aliases=alias)
    assert four == (sweep / "all-four.md").read_text(encoding="utf-8")


def test_committed_per_ratio_tuning_page():
    """docs/results/imdb-scratch-cpu-tuned-ratio/tuned-ratio.md ("Algorithm 1 and RLHF tuned at each ratio", H90,
    H91) is the script's page of the committed units: each method re-tuned per ratio beside its balanced-values
    units of the ratio sweep."""
    results = ROOT / "docs" / "results"
    tuned, sweep = results / "imdb-scratch-cpu-tuned-ratio", results / "imdb-scratch-cpu-ratio-kl10-explicit"
    folders = [tuned / "ratio-01", tuned / "ratio-075", tuned / "ratio-025-aihf-rounds", tuned / "ratio-025-rlhf",
               sweep / "rlhf", sweep / "aihf-rounds", sweep / "aihf-rounds-b"]
    seeds, settings = [0, 1, 2, 3, 4, 5], ["ratio-0.1", "ratio-0.25", "ratio-0.75"]
    pairs = [("aihf-rounds-tuned", "rlhf-tuned"), ("aihf-rounds-tuned", "aihf-rounds"), ("rlhf-tuned", "rlhf")]
    page = (compare.method_table(folders, ["aihf-rounds-tuned", "rlhf-tuned", "aihf-rounds", "rlhf"], seeds,
                                 settings=settings) + "\n" + compare.comparison_page(folders, pairs, seeds, settings=settings))
    assert page == (tuned / "tuned-ratio.md").read_text(encoding="utf-8")
    assert "| ratio-0.25 | rlhf-tuned | rlhf | -0.34 ± 0.28 | rlhf ahead |" in page  # H91 not held for RLHF
