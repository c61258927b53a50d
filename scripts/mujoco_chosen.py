"""The MuJoCo test grid with every method at its chosen setting: one table per environment
and one plot.

    python scripts/mujoco_chosen.py docs/results/mujoco-chosen.yaml

A learned-reward method's setting per environment (AIHF's w_P, the reward normalisation)
is chosen on validation reset seeds by a rule fixed before those runs (docs/results.md), and
its test-seed runs at that setting are an export of the paper grid of their own
(``scripts/mujoco_paper_grid.py --export DIR``). The YAML file lists, per environment, its
columns: the method, its setting in words, and the export folder that holds its runs
(relative to the YAML file's folder), or a list of export folders that hold different seeds
of those runs (seeds added later, in an export of their own); and, page-wide and optional,
``settings`` (the data settings shown; default every one), ``confidence`` (the level of the
aggregates' bootstrap intervals; default 0.95) and ``seeds`` (the seeds every column must have
before its task counts as complete, whatever its exports plan so far; default what they plan).
Written beside the YAML file, from the exported
result.json files only (no number typed by hand):

- ``<stem>.md``: per environment, a row per data setting and a cell per column, the grid
  status's cell (``mujoco_paper_grid.method_status``: finished seeds out of planned, the
  final return normalised by the expert's with its 95% t-interval, each seed's final return,
  the last-5 metric);
- then, across environments, a section per group of data settings (``TASK_GROUPS``: the
  paper's three; one episode of demonstrations; a tenth of one; the paper's three with one
  episode; every setting; each once it has rows and differs from the groups before it), over the group's
  tasks (environment, data setting) where every column has all its planned seeds, with the
  pre-registered verdict only once every task of the group is complete: per method the
  interquartile mean of the normalised final returns and the probability that AIHF's final
  return exceeds the method's, each with a 95% stratified bootstrap interval (``aihf.eval.aggregate``; 200,000 resamples, seed 0, so the page is
  reproducible; a run copied into several tasks has its seeds drawn together there, by
  ``run_sources``). Methods are matched across environments by name, each at its own
  environment's setting. Beside them, deciding nothing, the same two estimates on the
  secondary metric (each seed's mean over its last 5 evaluations): how far the final
  evaluation's noise moves them;
- ``<stem>.png``: the normalised final return per data setting and column, mean with its 95%
  t-interval (drawn from 3 seeds on), each seed a dot.
- ``<stem>-aggregate.png`` (once a task is complete): the across-environment IQM and
  probabilities of improvement with their intervals, and each method's score distribution (the
  share of runs above each normalised return) with its pointwise stratified bootstrap band, over
  the first group (the paper's data settings, the pre-registered aggregate); and the same over
  the last group shown (every data setting) as ``<stem>-aggregate-every-setting.png`` once it
  holds other tasks than the first.

A column whose export has no run of a data setting yet shows "-"; an export folder that does
not exist is an error naming the YAML file and the entry.
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

_spec = importlib.util.spec_from_file_location("mujoco_paper_grid", Path(__file__).with_name("mujoco_paper_grid.py"))
grid = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grid)


MIN_SEEDS_FOR_BARS = 3  # the plot's error bars: a 2-seed t-interval (t = 12.7) would set the axis
REFERENCE = "aihf"  # the aggregate's probability of improvement is this method's over each other
# 200,000 resamples: the statistics take few values (P(X > Y) on 9 tasks of 3 x 3 seeds moves in
# steps of 1/81), and at 20,000 a percentile could fall on either of two neighbouring values with
# the seed; the band of the score distributions is only drawn, and 20,000 draw it
RESAMPLES, BAND_RESAMPLES, BOOTSTRAP_SEED = 200_000, 20_000, 0
PAPER_SETTINGS = ("balanced", "low-quality-demos", "few-preferences")
TASK_GROUPS = (  # the aggregate's tasks, by data setting: one section each, as docs/results.md pre-registered them
    ("the paper's data settings", PAPER_SETTINGS),
    ("few demonstrations", ("few-demonstrations",)),
    ("a tenth of an episode", ("tenth-episode",)),
    ("the paper's settings and few demonstrations", (*PAPER_SETTINGS, "few-demonstrations")),
    ("every data setting", tuple(grid.SETTINGS)),
)
THRESHOLDS = np.linspace(0.0, 1.25, 51)  # the score distribution's x axis: final return / expert's


@dataclass(frozen=True)
class Column:
    """One column of an environment's table: ``method``'s runs at ``setting`` in ``exports`` (one
    export, or several holding other seeds of the same runs, e.g. seeds added later)."""

    method: str
    setting: str
    exports: tuple[Path, ...]

    @property
    def label(self) -> str:
        return f"{self.method} ({self.setting})"

    @property
    def where(self) -> str:
        return " + ".join(f"`{export.name}`" for export in self.exports)


@dataclass(frozen=True)
class Options:
    """The YAML file's page-wide keys: the data settings shown (``settings``, default every one),
    the level of the aggregates' bootstrap intervals (``confidence``, default 0.95) and the seeds
    each column's cell must hold to be complete (``seeds``; None: those its exports plan)."""

    settings: tuple[str, ...] = tuple(grid.SETTINGS)
    confidence: float = 0.95
    seeds: tuple[int, ...] | None = None


OPTION_KEYS = ("settings", "confidence", "seeds")


def read_options(path: Path) -> Options:
    """The YAML file's ``settings`` (a list of the grid's data settings) and ``confidence`` (in
    (0, 1)), each checked; an error names the file and the key."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    options = Options()
    if "settings" in raw:
        settings = raw["settings"]
        if not isinstance(settings, list) or not settings or not set(settings) <= set(grid.SETTINGS):
            raise ValueError(f"{path}: settings: expected a list of the data settings {list(grid.SETTINGS)}, "
                             f"got {settings!r}")
        options = Options(tuple(s for s in grid.SETTINGS if s in settings), options.confidence)
    if "confidence" in raw:
        level = raw["confidence"]
        if not isinstance(level, float) or not 0 < level < 1:
            raise ValueError(f"{path}: confidence: expected a number between 0 and 1, got {level!r}")
        options = Options(options.settings, level)
    if "seeds" in raw:
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(k, int) for k in seeds):
            raise ValueError(f"{path}: seeds: expected a list of seed numbers, got {seeds!r}")
        options = Options(options.settings, options.confidence, tuple(sorted(set(seeds))))
    return options


def read_columns(path: Path) -> dict[str, list[Column]]:
    """The YAML file's columns per environment, each entry checked: a known method, a setting,
    an existing export folder; an error names the file, the environment, the entry and the field."""
    from aihf.experiments.mujoco import ALL_METHODS

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of environment to a list of columns")
    columns = {}
    for env, entries in raw.items():
        if env in OPTION_KEYS:
            continue
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{path}: {env}: expected a list of columns (method, setting, export)")
        columns[env] = []
        for i, entry in enumerate(entries):
            where = f"{path}: {env}, column {i + 1}"
            if not isinstance(entry, dict) or set(entry) != {"method", "setting", "export"}:
                raise ValueError(f"{where}: expected exactly the fields method, setting, export; got {entry!r}")
            if entry["method"] not in ALL_METHODS:
                raise ValueError(f"{where}: method {entry['method']!r} is none of {ALL_METHODS}")
            names = entry["export"] if isinstance(entry["export"], list) else [entry["export"]]
            for name in names:
                if not (path.parent / str(name)).is_dir():
                    raise ValueError(f"{where}: export {name!r}: no folder {path.parent / str(name)}")
            columns[env].append(Column(entry["method"], str(entry["setting"]),
                                       tuple(path.parent / str(name) for name in names)))
    return columns


def data_settings(env: str, columns: list[Column], settings: tuple[str, ...] = tuple(grid.SETTINGS)
                  ) -> list[tuple[str, Path]]:
    """The data settings of ``settings`` (the grid's order) with an exported cell in any column,
    each with one such cell (its config.yaml gives the row label: the cells of a setting share
    their data)."""
    found = []
    for setting in settings:
        cells = [export / grid.cell(env, setting) for c in columns for export in c.exports]
        exported = [c for c in cells if (c / "config.yaml").is_file()]
        if exported:
            found.append((setting, exported[0]))
    return found


def column_runs(column: Column, env: str, setting: str, seeds: tuple[int, ...] | None = None
                ) -> tuple[list[dict], int]:
    """The column's finished runs in ``setting`` and how many seeds its exports plan there (0: no
    cell), its exports in their order; a seed that two exports plan is an error. With ``seeds``
    the cell plans those, whichever of them its exports plan yet (a seed outside them is an error)."""
    saved, planned = [], {}
    for export in column.exports:
        exported_cell = export / grid.cell(env, setting)
        if not (exported_cell / "config.yaml").is_file():
            continue
        for seed in yaml.safe_load((exported_cell / "config.yaml").read_text(encoding="utf-8"))["seeds"]:
            if seed in planned:
                raise ValueError(f"{env} {setting}, {column.label}: seed {seed} is planned in both "
                                 f"{planned[seed].name} and {export.name}")
            planned[seed] = export
        saved += grid.finished_runs(exported_cell, column.method)
    if seeds is not None and planned:
        if not set(planned) <= set(seeds):
            raise ValueError(f"{env} {setting}, {column.label}: seeds {sorted(set(planned) - set(seeds))} are planned "
                             f"but not among the page's seeds {list(seeds)}")
        return saved, len(seeds)
    return saved, len(planned)


@dataclass(frozen=True)
class Row:
    """One data setting of an environment's table: its label, the expert's return (the
    normaliser) and, per column, the finished runs and the seeds planned (0: no cell there)."""

    label: str
    setting: str
    expert: float
    cells: list[tuple[list[dict], int]]


def read_rows(env: str, columns: list[Column], settings: tuple[str, ...] = tuple(grid.SETTINGS),
              seeds: tuple[int, ...] | None = None) -> list[Row]:
    """The environment's rows (of ``settings``; each cell planning ``seeds`` when given), every
    exported file read once for both the table and the plot."""
    rows = []
    for setting, any_cell in data_settings(env, columns, settings):
        _, expert, learned_from = grid.cell_demonstrators(any_cell, env)
        rows.append(Row(f"{setting} (expert {expert:,.0f}{learned_from})", setting, expert,
                        [column_runs(column, env, setting, seeds) for column in columns]))
    return rows


def normalised_finals(saved: list[dict], expert: float) -> list[float]:
    """Each finished run's final true return divided by the expert's (the primary metric)."""
    return [s["result"]["returns"][-1] / expert for s in saved]


def normalised_late(saved: list[dict], expert: float) -> list[float]:
    """Each finished run's secondary metric (``experiments.mujoco.late_return``) divided by the expert's."""
    from aihf.experiments.mujoco import late_return

    return [late_return(s["result"]) / expert for s in saved]


@dataclass(frozen=True)
class Aggregate:
    """The across-environment estimates (module docstring): the methods every environment has,
    the tasks where all of them have every planned seed (and the tasks left out), and per method
    (iqm, low, high) and, for each method but ``REFERENCE``, P(REFERENCE > method) likewise; the
    score distribution F at ``THRESHOLDS`` with its pointwise band, per method (for the plot);
    ``late_iqm`` and ``late_improvement``: the IQM and P(REFERENCE > method) again on the
    secondary metric (``normalised_late``), a check of how far the final evaluation's noise
    moves them, which decides no verdict; ``confidence``: the intervals' level."""

    methods: list[str]
    tasks: list[str]
    left_out: list[str]
    iqm: dict[str, tuple[float, float, float]]
    improvement: dict[str, tuple[float, float, float]]
    distribution: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    late_iqm: dict[str, tuple[float, float, float]]
    late_improvement: dict[str, tuple[float, float, float]]
    confidence: float = 0.95


def run_sources(saved: list[dict], cell_name: str) -> tuple[str, ...]:
    """The cell each seed's run was trained in: the one it was copied from
    (``experiments.mujoco.copied_from_cell``), else ``cell_name``. Tasks whose runs share their
    sources hold the same runs."""
    from aihf.experiments.mujoco import copied_from_cell

    return tuple(cell.name if (cell := copied_from_cell(s)) else cell_name for s in saved)


@dataclass(frozen=True)
class TaskScores:
    """Per method, over the complete tasks of a group: each task's normalised final returns
    (``scores``) and secondary metric (``late``), and its group label (``groups``: tasks whose
    runs are the same runs share it, ``run_sources``); the group's ``tasks`` and those left out."""

    methods: list[str]
    tasks: list[str]
    left_out: list[str]
    scores: dict[str, list[list[float]]]
    late: dict[str, list[list[float]]]
    groups: dict[str, list[tuple]]


def task_scores(columns: dict[str, list[Column]], rows: dict[str, list[Row]],
                settings: tuple[str, ...] = TASK_GROUPS[0][1]) -> TaskScores:
    """The methods every environment has, and their scores on the tasks (environment, data
    setting in ``settings``) where every column has all its planned seeds."""
    shared = set.intersection(*({c.method for c in env_columns} for env_columns in columns.values()))
    methods = [c.method for c in next(iter(columns.values())) if c.method in shared]
    scores, late, groups = ({method: [] for method in methods} for _ in range(3))
    tasks, left_out = [], []
    for env, env_columns in columns.items():
        position = {c.method: j for j, c in enumerate(env_columns)}
        by_setting = {row.setting: row for row in rows[env]}
        for setting in settings:
            row = by_setting.get(setting)
            cells = [row.cells[position[method]] for method in methods] if row else [([], 0)]
            if all(planned and len(saved) == planned for saved, planned in cells):
                tasks.append(f"{env} {setting}")
                for method, (saved, _) in zip(methods, cells):
                    scores[method].append(normalised_finals(saved, row.expert))
                    late[method].append(normalised_late(saved, row.expert))
                    groups[method].append((env, run_sources(saved, grid.cell(env, setting))))
            else:
                left_out.append(f"{env} {setting}")
    return TaskScores(methods, tasks, left_out, scores, late, groups)


def aggregate(columns: dict[str, list[Column]], rows: dict[str, list[Row]],
              settings: tuple[str, ...] = TASK_GROUPS[0][1], confidence: float = 0.95) -> Aggregate:
    """Each method's normalised final returns on the complete tasks of ``settings`` (every
    environment's), reduced to the IQM and the probability of improvement with their stratified
    bootstrap intervals at level ``confidence`` (none without a task). ``left_out``: the tasks of ``settings`` not
    complete, those with no exported run among them."""
    from aihf.eval.aggregate import distribution_with_band, improvement_with_interval, iqm_with_interval

    found = task_scores(columns, rows, settings)
    methods, groups = found.methods, found.groups
    if not found.tasks or REFERENCE not in methods:
        return Aggregate(methods, [], found.left_out, {}, {}, {}, {}, {}, confidence)

    def iqms(metric: dict[str, list]) -> dict[str, tuple[float, float, float]]:
        return {m: iqm_with_interval(metric[m], RESAMPLES, BOOTSTRAP_SEED, groups[m], confidence) for m in methods}

    def improvements(metric: dict[str, list]) -> dict[str, tuple[float, float, float]]:
        return {m: improvement_with_interval(metric[REFERENCE], metric[m], RESAMPLES, BOOTSTRAP_SEED, groups[REFERENCE],
                                             groups[m], confidence) for m in methods if m != REFERENCE}

    scores = found.scores
    return Aggregate(
        methods, found.tasks, found.left_out, iqms(scores), improvements(scores),
        {m: distribution_with_band(scores[m], THRESHOLDS, BAND_RESAMPLES, BOOTSTRAP_SEED, groups[m]) for m in methods},
        iqms(found.late), improvements(found.late), confidence)


def aggregate_section(result: Aggregate, group: str = TASK_GROUPS[0][0], same_as: str | None = None) -> list[str]:
    """The page's across-environment section over ``group``'s tasks: what the estimates cover
    and a row per method; a verdict only once every task of the group is complete. ``same_as``:
    the group above whose complete tasks these are, so far (its estimates are not repeated)."""
    from aihf.experiments.mujoco import LATE_EVALUATIONS
    from aihf.logs import count

    lines = [f"## Across environments: {group}", ""]
    if REFERENCE not in result.methods:
        return lines + [f"None: {REFERENCE} is not a column of every environment.", ""]
    if not result.tasks:
        return lines + [f"No task has every run of {', '.join(result.methods)} finished yet.", ""]
    if same_as is not None:
        return lines + [f"So far the same {count(len(result.tasks), 'task')} as \"{same_as}\" above, and so its "
                        f"estimates (not yet: {', '.join(result.left_out)}); a verdict once every task of this group "
                        "is complete.", ""]
    interval = "{:.2f} [{:.2f}, {:.2f}]".format
    lines += [f"Over {count(len(result.tasks), 'task')} where every column has all its seeds: "
              f"{', '.join(result.tasks)}" + (f" (not yet: {', '.join(result.left_out)})" if result.left_out else "")
              + ". Scores: each seed's final return over the expert's. IQM: the mean of the middle half of all the "
              f"method's scores; P({REFERENCE} > method): the chance that a seed of {REFERENCE} ends above a seed of "
              "the method on the same task, averaged over tasks (Agarwal et al. 2021). "
              f"[{level(result.confidence)} stratified percentile "
              f"bootstrap, {RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}: seeds resampled within each task.] A method "
              "that is the same run in several data settings (one that does not read the data those settings "
              "change) counts that run in each of those tasks, and the bootstrap draws its seeds there together, "
              "as the one set of runs they are. Verdict, by the rule fixed in docs/results.md: "
              f"{REFERENCE} ahead when the interval of P({REFERENCE} > method) lies wholly above 0.5, behind when "
              "wholly below, neither otherwise" + ("; none until every task of this group is complete."
                                                   if result.left_out else ".")
              + f" The last two columns, a check added after the rule and deciding nothing: the same estimates on "
              f"each seed's mean over its last {LATE_EVALUATIONS} evaluations (the tables' secondary metric), "
              "where a single evaluation's noise weighs less.", "",
              f"| method | IQM | P({REFERENCE} > method) | verdict | IQM, last {LATE_EVALUATIONS} "
              f"| P({REFERENCE} > method), last {LATE_EVALUATIONS} |", "|---|---|---|---|---|---|"]
    for method in result.methods:
        improvement, verdict, late_improvement = "-", "-", "-"
        if method in result.improvement:
            improvement, late_improvement = (interval(*result.improvement[method]),
                                             interval(*result.late_improvement[method]))
            verdict = "-" if result.left_out else rule_verdict(*result.improvement[method][1:])
        lines.append(f"| {method} | {interval(*result.iqm[method])} | {improvement} | {verdict} "
                     f"| {interval(*result.late_iqm[method])} | {late_improvement} |")
    return lines + [""]


def rule_verdict(low: float, high: float) -> str:
    """The pre-registered reading of an interval of P(REFERENCE > method) (docs/results.md)."""
    if low > 0.5:
        return f"{REFERENCE} ahead"
    return f"{REFERENCE} behind" if high < 0.5 else "neither"


def level(confidence: float) -> str:
    """An interval's level in words: ``95%``, ``97.06%``."""
    return f"{100 * confidence:.4g}%"


def aggregates(columns: dict[str, list[Column]], rows: dict[str, list[Row]],
               confidence: float = 0.95) -> list[tuple[str, Aggregate]]:
    """``aggregate`` (intervals at level ``confidence``) for each of ``TASK_GROUPS`` with an
    exported row in some environment, except a group whose settings with rows are those of a
    group before it (every data setting, while only the paper's have rows, is the paper's group
    again)."""
    present = {row.setting for env_rows in rows.values() for row in env_rows}
    shown: list[tuple[str, tuple[str, ...]]] = []
    for name, settings in TASK_GROUPS:
        filled = present & set(settings)
        if filled and all(filled != present & set(earlier) for _, earlier in shown):
            shown.append((name, settings))
    return [(name, aggregate(columns, rows, settings, confidence)) for name, settings in shown]


def tables(columns: dict[str, list[Column]], rows: dict[str, list[Row]], across: list[tuple[str, Aggregate]],
           source: Path) -> str:
    """The markdown page: the note, per environment each column's folder and the table, then
    the estimates across environments, a section per task group (``aggregates``)."""
    from aihf.experiments.mujoco import LATE_EVALUATIONS

    lines = ["# MuJoCo test grid: every method at its chosen setting", "",
             f"Written by `scripts/mujoco_chosen.py {source}` from the exported runs named there; each method's "
             "setting was chosen on validation reset seeds by a rule fixed before its runs (docs/results.md), "
             "\"paper preset\" where none was tuned for that environment. "
             f"{grid.STATUS_NOTE.format(late=LATE_EVALUATIONS)}", ""]
    for env, env_columns in columns.items():
        sources = "; ".join(f"{c.label} in {c.where}" for c in env_columns)
        lines += [f"## {env}", "", f"Runs: {sources}.", "",
                  "| data | " + " | ".join(c.label for c in env_columns) + " |", "|---|" + "---|" * len(env_columns)]
        for row in rows[env]:
            cells = [grid.method_status(saved, row.expert, planned) if planned else "-" for saved, planned in row.cells]
            lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
        lines.append("")
    first_with: dict[tuple[str, ...], str] = {}  # the first group over each set of complete tasks
    for group, result in across:
        lines += aggregate_section(result, group, first_with.get(tuple(result.tasks)) if result.left_out else None)
        first_with.setdefault(tuple(result.tasks), group)
    return "\n".join(lines)


def plot(columns: dict[str, list[Column]], rows: dict[str, list[Row]], path: Path) -> None:
    """One panel per environment: per data setting a bar per column at the mean normalised final
    return, its 95% t-interval as the error bar (from ``MIN_SEEDS_FOR_BARS`` seeds on), each seed a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aihf.eval.stats import interval_caption, mean_interval

    seed_counts = []
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4.2), squeeze=False)
    for ax, (env, env_columns) in zip(axes[0], columns.items()):
        width = 0.8 / len(env_columns)
        for j, column in enumerate(env_columns):
            label = column.label  # on the column's first bar only
            for i, row in enumerate(rows[env]):
                saved = row.cells[j][0]
                if not saved:
                    continue
                finals = normalised_finals(saved, row.expert)
                stats = mean_interval(finals)
                x = i + (j - (len(env_columns) - 1) / 2) * width
                with_interval = len(finals) >= MIN_SEEDS_FOR_BARS
                if with_interval:
                    seed_counts.append(len(finals))
                ax.bar(x, stats["mean"], width, yerr=stats["ci95"] if with_interval else None, capsize=3,
                       color=f"C{j}", alpha=0.7, label=label)
                label = None
                ax.plot([x] * len(finals), finals, "k.", markersize=4)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(rows[env])), [row.setting for row in rows[env]], fontsize=8)
        ax.set_title(env)
        ax.set_ylabel("final true return / expert's")
        ax.legend(fontsize=7)
    fig.text(0.5, 0.01, f"{interval_caption(seed_counts or [0])}, drawn where a cell has {MIN_SEEDS_FOR_BARS} or more "
             "(a 2-seed interval spans the axis); dots: seeds; dashed: the expert", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_aggregate(across: Aggregate, path: Path, group: str = TASK_GROUPS[0][0]) -> None:
    """Three panels, rliable's way: each method's IQM and each baseline's P(REFERENCE > baseline),
    a point with its stratified bootstrap interval (at ``across.confidence``) (0.5, no difference, dashed), and below it,
    hollow, the same on the last-5 metric (the check); and each method's score distribution, the
    share of runs above each score, with its pointwise band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aihf.experiments.mujoco import LATE_EVALUATIONS

    fig, (left, right, profile) = plt.subplots(1, 3, figsize=(15, 0.5 * len(across.methods) + 2.2))
    for ax, estimates, late, title in ((left, across.iqm, across.late_iqm, "IQM of final return / expert's"),
                                       (right, across.improvement, across.late_improvement, f"P({REFERENCE} > method)")):
        names = [m for m in across.methods if m in estimates][::-1]
        for shift, values, style, label in ((0.0, estimates, dict(fmt="o"), "final return"),
                                            (-0.25, late, dict(fmt="o", mfc="none", color="grey"),
                                             f"last {LATE_EVALUATIONS} (a check)")):
            points = np.array([values[m] for m in names])
            ax.errorbar(points[:, 0], np.arange(len(names)) + shift,
                        xerr=[points[:, 0] - points[:, 1], points[:, 2] - points[:, 0]], capsize=4, label=label, **style)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    right.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    for j, method in enumerate(across.methods):
        share, low, high = across.distribution[method]
        profile.plot(THRESHOLDS, share, color=f"C{j}", label=method)
        profile.fill_between(THRESHOLDS, low, high, color=f"C{j}", alpha=0.15)
    profile.set_xlabel("final return / expert's, tau")
    profile.set_title("share of runs scoring above tau", fontsize=10)
    profile.legend(fontsize=7)
    fig.text(0.5, 0.01, f"{len(across.tasks)} tasks ({group}: environment x data setting); {level(across.confidence)} "
             "stratified percentile bootstrap "
             f"intervals, {RESAMPLES:,} resamples (bands: {BAND_RESAMPLES:,})", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_page(path: Path) -> tuple[dict[str, list[Column]], dict[str, list[Row]], list[tuple[str, Aggregate]]]:
    """The YAML file's columns, their rows (of its ``settings``, its cells planning its ``seeds``) and
    the aggregates (at its ``confidence``)."""
    columns, options = read_columns(path), read_options(path)
    rows = {env: read_rows(env, env_columns, options.settings, options.seeds) for env, env_columns in columns.items()}
    return columns, rows, aggregates(columns, rows, options.confidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("columns", type=Path,
                        help="the YAML file: per environment, its columns (method, setting, export)")
    args = parser.parse_args()
    columns, rows, across = read_page(args.columns)
    page = args.columns.with_suffix(".md")
    page.write_text(tables(columns, rows, across, args.columns), encoding="utf-8")
    plot(columns, rows, args.columns.with_suffix(".png"))
    written = [page, args.columns.with_suffix(".png")]
    if across and across[0][1].tasks:  # the paper's data settings: the pre-registered 9 tasks
        written.append(args.columns.with_name(f"{args.columns.stem}-aggregate.png"))
        plot_aggregate(across[0][1], written[-1], across[0][0])
    if len(across) > 1 and across[-1][0] == TASK_GROUPS[-1][0] and across[-1][1].tasks != across[0][1].tasks:
        written.append(args.columns.with_name(f"{args.columns.stem}-aggregate-every-setting.png"))
        plot_aggregate(across[-1][1], written[-1], across[-1][0])
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
