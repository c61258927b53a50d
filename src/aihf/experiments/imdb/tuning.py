"""Choosing each method's settings on the validation prompts, for a fair comparison.

A tuning run is an IMDb run with a ``grid`` (``presets.ImdbConfig.runs``), one seed, and
``generation.evaluate_on: validation``: its results hold, per setting, one row per grid
point (``dpo@learning_rate=0.0003``) with the overrides that made it (``spec``). For each
setting and each ``methods`` entry, :func:`choose` takes the grid point with the highest
mean gold reward on the validation prompts, among those whose mean KL to pi_SFT is at most
``max_kl`` when one is given (so that methods are compared at a like KL, not each at the
KL its best gold reward happened to need: a method with no point within the budget is
reported with its lowest-KL point, marked); :func:`tuned_preset` writes a preset that runs
every setting with its own chosen values (``setting_variants``), on the test prompts, over
the seeds given. The test prompts and seeds of that run are never seen by the choice.
:func:`confirm_preset` re-runs each method's few best one-seed points on more seeds first, so
that the choice is made on their means rather than on one seed's luck.
:func:`kl_frontier` gives the choice at every budget at once (the grid's reward-KL frontier),
to compare methods at a like KL (``scripts/imdb_kl_frontier.py``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Sequence

import yaml

from aihf.config import from_dict
from aihf.eval.plots import plot_kl_frontiers
from aihf.experiments.imdb.presets import ImdbConfig

log = logging.getLogger(__name__)

CRITERION = "gold_reward"
KL = "kl"
KL_BUDGETS = (5.0, 10.0, 15.0, 20.0, 25.0)  # nats: the columns of budget_table (25: the tuning rule's budget)


def base_name(run_name: str) -> str:
    """``dpo@learning_rate=0.0003`` -> ``dpo``."""
    return run_name.partition("@")[0]


def grid_points(results: dict[str, Any], criterion: str = CRITERION) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{setting: {methods entry: [{"run", "value", "kl", "spec"}]}}: a validation run's grid points (its
    rows but pi_SFT's), each with its mean ``criterion`` and mean KL to pi_SFT, in grid order."""
    if results.get("config", {}).get("generation", {}).get("evaluate_on") != "validation":
        raise ValueError("grid points (choices, KL budgets) are read from a run that evaluated on the validation "
                         "prompts (generation.evaluate_on)")
    points: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for setting, rows in results["settings"].items():
        per_method = points.setdefault(setting, {})
        for run_name, entry in rows.items():
            if "spec" not in entry:  # pi_SFT's row
                continue
            per_method.setdefault(base_name(run_name), []).append(
                {"run": run_name, "value": entry[criterion]["mean"], "kl": entry[KL]["mean"], "spec": entry["spec"]})
    return points


def best_within(candidates: list[dict[str, Any]], max_kl: float | None) -> dict[str, Any] | None:
    """The candidate with the highest ``value`` (ties: the first) among those with ``kl`` <= ``max_kl``
    (all when None); None when none is within it."""
    allowed = [c for c in candidates if max_kl is None or c["kl"] <= max_kl]
    return max(allowed, key=lambda c: c["value"]) if allowed else None


def top_points(candidates: list[dict[str, Any]], top: int, max_kl: float | None) -> list[dict[str, Any]]:
    """The ``top`` candidates with the highest ``value`` among those with ``kl`` <= ``max_kl`` (all when
    None), best first (ties: grid order, as :func:`best_within`); when none is within it, the lowest-KL
    candidate alone (the point :func:`choose` falls back to)."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    allowed = sorted((c for c in candidates if max_kl is None or c["kl"] <= max_kl), key=lambda c: -c["value"])
    return allowed[:top] if allowed else [min(candidates, key=lambda c: c["kl"])]


def kl_frontier(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grid's reward-KL frontier: by increasing KL, each point whose ``value`` is higher than that
    of every point with less or equal KL. The choice within any budget k (:func:`best_within`) has the
    value of the frontier's last point with KL <= k: the frontier is the tuning rule at every budget."""
    frontier: list[dict[str, Any]] = []
    for point in sorted(candidates, key=lambda c: (c["kl"], -c["value"])):
        if not frontier or point["value"] > frontier[-1]["value"]:
            frontier.append(point)
    return frontier


def budget_table(grids: dict[str, dict[str, list[dict[str, Any]]]], budgets: Sequence[float] = KL_BUDGETS) -> str:
    """Per setting of ``grids`` ({setting: {method: grid points}}, :func:`grid_points`) a markdown table:
    one row per method, one column per KL budget and one without, each cell the best point's value
    within the budget (:func:`best_within`) with its KL in brackets, or a dash where none is within it."""
    header = [f"KL <= {b:g}" for b in budgets] + ["any KL"]
    lines = []
    for setting, per_method in grids.items():
        lines += [f"### {setting}", "", "| method | points | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for method, points in per_method.items():
            picks = [best_within(points, b) for b in [*budgets, None]]
            cells = ["—" if p is None else f"{p['value']:.3f} ({p['kl']:.1f})" for p in picks]
            lines.append(f"| {method} | {len(points)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_kl_budgets(grids: dict[str, dict[str, list[dict[str, Any]]]], out: Path, budget_line: float = KL_BUDGETS[-1],
                     sources: Sequence[str | Path] = ()) -> dict[str, Path]:
    """``kl_budgets.md`` (a heading naming the results files ``sources`` when given, then :func:`budget_table`)
    and ``kl_frontier.png`` (each method's frontier, ``plots.plot_kl_frontiers``) of validation grids in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    origin = f"From {', '.join(f'`{s}`' for s in sources)}. " if sources else ""
    heading = (f"# Best validation gold reward within a KL budget\n\n{origin}Each cell: the best grid point's "
               "validation gold reward (its KL to pi_SFT, nats) among the points within the budget, each point "
               "its mean over the seeds it ran.\n\n")
    page = out / "kl_budgets.md"
    page.write_text(heading + budget_table(grids), encoding="utf-8")
    frontiers = {s: {m: (points, kl_frontier(points)) for m, points in per_method.items()} for s, per_method in grids.items()}
    return {"kl_budgets": page, "kl_frontier": plot_kl_frontiers(frontiers, out / "kl_frontier.png", budget_line)}


def choose(results: dict[str, Any], criterion: str = CRITERION,
           max_kl: float | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{setting: {methods entry: {"run", "value", "kl", "within_kl", "spec"}}}: per setting and
    entry, the grid point with the highest mean ``criterion`` (ties: the first in grid order)
    among those with mean KL <= ``max_kl`` (all when None; :func:`best_within`); an entry with
    no such point gets its lowest-KL point, with ``within_kl`` False."""
    chosen: dict[str, dict[str, dict[str, Any]]] = {}
    for setting, per_method in grid_points(results, criterion).items():
        best: dict[str, dict[str, Any]] = {}
        for name, candidates in per_method.items():
            pick = best_within(candidates, max_kl)
            best[name] = ({**pick, "within_kl": True} if pick is not None
                          else {**min(candidates, key=lambda c: c["kl"]), "within_kl": False})
        chosen[setting] = best
    return chosen


def tuned_preset(tuning_config: dict[str, Any], chosen: dict[str, dict[str, dict[str, Any]]], seeds: list[int],
                 suffix: str = "") -> dict[str, Any]:
    """The tuning run's config as a test preset: no grid, the test prompts, ``seeds``, and per
    setting the chosen variants (named like the ``methods`` entries they came from, ``suffix``
    appended, e.g. to test one method's choice by two rules side by side; ``methods`` lists them,
    and only those of ``variants`` are kept). A setting of the config that no tuning run ran has
    no choice, so it is left out (a test run of it would train the variants' untuned values)."""
    preset = copy.deepcopy(tuning_config)
    preset["grid"] = {}
    preset["generation"]["evaluate_on"] = "test"
    preset["seeds"] = list(seeds)
    preset["setting_variants"] = {
        setting: {name + suffix: copy.deepcopy(pick["spec"]) for name, pick in picks.items()}
        for setting, picks in chosen.items()
    }
    preset["methods"] = list(dict.fromkeys(name for variants in preset["setting_variants"].values() for name in variants))
    preset["variants"] = {name: v for name, v in preset.get("variants", {}).items() if name in preset["methods"]}
    _run_only(preset, list(chosen))
    return preset


def _run_only(preset: dict[str, Any], settings: list[str]) -> None:
    """Leave the settings of ``preset`` that ``settings`` does not name (no choice or points there) out of it:
    out of its ``settings`` list and, for a ratio sweep's ratios (not listed there), by ``run_settings`` (None
    when every setting is named). A setting left in would run the variants' untuned values."""
    preset["settings"] = [setting for setting in preset["settings"] if setting["name"] in settings]
    loaded = from_dict(ImdbConfig, {**preset, "run_settings": list(settings)})  # only the settings run must resolve
    names = [setting.name for setting in loaded.all_settings()]
    preset["run_settings"] = None if set(names) <= set(settings) else [name for name in names if name in settings]


def confirm_points(results: dict[str, Any], top: int, max_kl: float | None,
                   methods: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """{setting: {run name: grid point with ``within_kl``}}: each ``methods`` entry's :func:`top_points`
    (with ``methods``, only those entries; a name that no setting's grid has is an error naming the ones it has)."""
    grids = grid_points(results)
    if methods is not None:
        known = {method for per_method in grids.values() for method in per_method}
        unknown = [method for method in methods if method not in known]
        if unknown:
            raise ValueError(f"no grid points of method(s) {unknown} in the tuning runs; they have {sorted(known)}")
        grids = {setting: {method: points for method, points in per_method.items() if method in methods}
                 for setting, per_method in grids.items()}
    return {setting: {point["run"]: {**point, "within_kl": max_kl is None or point["kl"] <= max_kl}
                      for candidates in per_method.values() for point in top_points(candidates, top, max_kl)}
            for setting, per_method in grids.items() if per_method}


def confirm_preset(tuning_config: dict[str, Any], points: dict[str, dict[str, dict[str, Any]]],
                   seeds: list[int]) -> dict[str, Any]:
    """A second validation run that checks a one-seed grid's choice on more ``seeds``: ``points``
    (:func:`confirm_points`: per setting and ``methods`` entry its best grid points within the budget)
    as that setting's variants, each named as its grid point (``dpo@learning_rate=0.0003``). The best of many
    one-seed points is chosen for its seed's luck as well as its values, so its validation score
    overstates it; the mean over more seeds of the few best shrinks that part. Run in (a copy of) the
    grid's folder, it reuses the units the grid trained (same run names, same values) and trains the
    other seeds; :func:`write_choice` on its results then chooses among those points by their means."""
    missing = [seed for seed in tuning_config["seeds"] if seed not in seeds]
    if missing:
        raise ValueError(f"the grid ran seed(s) {missing}, which --seeds {list(seeds)} leaves out: give them among "
                         "the seeds, so that the grid's units are reused and the confirmation adds to them")
    picks = {setting: {run: copy.deepcopy(point["spec"]) for run, point in runs.items()}
             for setting, runs in points.items()}
    preset = copy.deepcopy(tuning_config)
    preset["grid"] = {}
    preset["seeds"] = list(seeds)
    preset["setting_variants"] = picks
    # every name also as a plain variant, so that a setting of the config without picks (a ratio sweep's
    # untuned ratio) still loads; a run name means the same values in every setting
    preset["variants"] = {run: spec for variants in picks.values() for run, spec in variants.items()}
    preset["methods"] = list(preset["variants"])
    _run_only(preset, list(picks))
    return preset


def chosen_table(chosen: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A markdown table of the choice ({setting: {key: pick}}, :func:`choose`, or several picks per
    method, :func:`write_confirm`): setting, method, grid point, validation gold reward and KL (a
    point outside the KL budget, the lowest-KL one, marked)."""
    lines = ["| setting | method | chosen | validation gold reward | validation KL |", "|---|---|---|---|---|"]
    for setting, picks in chosen.items():
        for pick in picks.values():
            name, _, point = pick["run"].partition("@")
            point = point or "(no grid)"
            mark = "" if pick["within_kl"] else " (none within the KL budget: its lowest-KL point)"
            lines.append(f"| {setting} | {name} | {point}{mark} | {pick['value']:.3f} | {pick['kl']:.2f} |")
    return "\n".join(lines) + "\n"


def merge_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Tuning runs of one config split between processes, by setting (one process per setting) or by
    method (one process per group of grid points, a ``methods=[...]`` override each), as one results dict:
    their configs must agree but for ``settings`` and ``methods`` (each joined in order, the first run's
    first) and ``run_settings``. A setting's rows are joined; pi_SFT's row must be the same in every run
    that has the setting (else they started from different pi_SFTs), and a grid point in two runs is an error."""
    if not results:
        raise ValueError("no results to merge")
    merged = copy.deepcopy(results[0])

    def comparable(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in ("settings", "run_settings", "methods")}

    for other in results[1:]:
        difference = sorted(k for k in comparable(other["config"]).keys() | comparable(merged["config"]).keys()
                            if comparable(other["config"]).get(k) != comparable(merged["config"]).get(k))
        if difference:
            raise ValueError(f"tuning runs made with different configs (other than settings and methods) cannot be "
                             f"merged: they differ in {', '.join(difference)}")
        for setting, rows in other["settings"].items():
            joined = merged["settings"].setdefault(setting, {})
            for name, entry in rows.items():
                if name not in joined:
                    joined[name] = copy.deepcopy(entry)
                elif "spec" in entry:
                    raise ValueError(f"{setting}/{name} tuned twice")
                elif entry["runs"] != joined[name]["runs"]:
                    raise ValueError(f"{setting}: pi_SFT's rows differ between the runs ({joined[name]['runs']} and "
                                     f"{entry['runs']}): they started from different pi_SFTs")
        for setting, report in other.get("data", {}).items():  # each setting's data report
            merged.setdefault("data", {}).setdefault(setting, report)
        config = merged["config"]
        known = {setting["name"] for setting in config["settings"]}
        config["settings"] += [s for s in other["config"]["settings"] if s["name"] not in known]
        config["methods"] += [m for m in other["config"]["methods"] if m not in config["methods"]]
    return merged


def read_tuning_runs(results_paths: Sequence[str | Path]) -> dict[str, Any]:
    """Tuning runs' results.json files as one results dict (:func:`merge_runs`)."""
    import json

    return merge_runs([json.loads(Path(path).read_text(encoding="utf-8")) for path in results_paths])


def _write_preset(preset: dict[str, Any], table: str, out_preset: str | Path, header: str) -> None:
    """``preset`` as YAML under the comment ``header`` and ``table`` beside it (``.md``)."""
    out = Path(out_preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(preset, sort_keys=False), encoding="utf-8")
    out.with_suffix(".md").write_text(table, encoding="utf-8")


def _rule(max_kl: float | None) -> str:
    """The choice rule in words, for a preset's header."""
    return f"highest mean {CRITERION}{'' if max_kl is None else f' with mean KL <= {max_kl}'}"


def write_choice(results_paths: list[str | Path], out_preset: str | Path, seeds: list[int],
                 max_kl: float | None = None, suffix: str = "") -> dict[str, Any]:
    """Read tuning runs' results.json files, write the tuned preset YAML (its variants' names
    ``suffix``-ed, :func:`tuned_preset`) and the choice as a markdown table beside it (``.md``),
    choosing within the KL budget ``max_kl`` if given. A choice among one-seed grid points is
    logged as a warning (the best point's score includes its seed's luck: :func:`confirm_preset`)."""
    results = read_tuning_runs(results_paths)
    if len(results["config"]["seeds"]) == 1:
        log.warning("chosen on one seed per grid point: the best point's score includes that seed's luck, so it "
                    "overstates the point; 'aihf tune confirm' re-scores the best few on more seeds first (docs/imdb.md)")
    chosen = choose(results, max_kl=max_kl)
    preset = tuned_preset(results["config"], chosen, seeds, suffix)
    sources = ", ".join(str(path) for path in results_paths)
    header = (
        f"# Written by aihf.experiments.imdb.tuning.write_choice from {sources}: each method's values\n"
        f"# chosen on the validation prompts ({_rule(max_kl)}); test prompts, seeds {seeds}.\n"
    )
    _write_preset(preset, chosen_table(chosen), out_preset, header)
    return preset


def write_confirm(results_paths: list[str | Path], out_preset: str | Path, top: int, seeds: list[int],
                  max_kl: float | None = None, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Read tuning runs' results.json files, write the confirmation run's preset YAML
    (:func:`confirm_preset`; with ``methods``, of those ``methods`` entries only) and its points with
    their grid scores as a markdown table (``.md``)."""
    results = read_tuning_runs(results_paths)
    points = confirm_points(results, top, max_kl, methods)
    preset = confirm_preset(results["config"], points, seeds)
    sources = ", ".join(str(path) for path in results_paths)
    header = (
        f"# Written by aihf.experiments.imdb.tuning.write_confirm from {sources}: each method's {top} best\n"
        f"# grid points ({_rule(max_kl)}), on the validation prompts again, seeds {seeds}.\n"
    )
    _write_preset(preset, chosen_table(points), out_preset, header)
    return preset
