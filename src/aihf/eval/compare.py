"""``aihf compare``: differences between methods of experiment runs over seeds (docs/results.md, "The
tuned IMDb comparison at six seeds"): per setting and pair A:B, mean(A) - mean(B) of the test gold
reward with its 95% Welch interval over seeds, a verdict by the interval, and each side's mean KL to
pi_SFT:

    aihf compare docs/results/imdb-scratch-cpu-tuned/balanced \\
        docs/results/imdb-scratch-cpu-tuned/few-preferences --seeds 0 1 2 3 4 5 \\
        --pairs aihf-rounds:rlhf aihf-dpo:dpo self-play-aihf:spin --out page.md

(``python scripts/imdb_compare.py`` is the same command.) Each folder is an ``aihf experiment imdb``
output (or its export, ``scripts/imdb_export_units.py``; hh and ultra outputs have the same form) with a
``results.json``; a setting's methods may come from several folders (one method of a setting
from two is an error). Methods train from one pi_SFT with their own seeds, so the seeds of two
methods are independent draws: unpaired, Welch (``aihf.eval.stats.difference_interval``). With
``--paired`` the differences are taken seed by seed and summarised by a t-interval
(``stats.paired_difference``), for two variants of one method that share each seed's batches and samples. A
unit missing for a requested seed is an error, so a table never mixes seed sets silently. With
``--settings`` only those settings are compared (a folder may hold others, where a pair's method is not).

``--methods`` puts a table of those methods first: per method and setting the mean ``metric`` over the
seeds with its 95% t-interval and the mean KL, "-" where the setting has no unit of the method (a
method that cannot be run there, or was not); ``--pairs`` may then be left out:

    aihf compare <folders> --seeds 0 1 2 3 4 5 --methods rlhf aihf-rounds dpo-beta

``--as SETTING=NAME`` shows a folder's setting under another name, and ``--ratio-plot PNG`` draws the
``--methods`` across the settings shown as one ratio sweep (gold and KL against the demonstrations' share),
e.g. a sweep's folders with the 1,000 + 1,000 balanced setting of another run as its f = 0.5:

    aihf compare <sweep folders> <balanced folders> --seeds 0 1 2 3 4 5 --methods aihf-rounds rlhf \\
        --settings ratio-0.1 ratio-0.25 ratio-0.5 ratio-0.75 --as balanced=ratio-0.5 --ratio-plot ratio.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from aihf.config import ConfigError
from aihf.eval.stats import difference_interval, mean_interval, paired_difference, read_results, seed_scores


class Units(NamedTuple):
    """One method's units in one setting: the folder that holds them and {seed: value} of every seed there."""

    folder: Path
    by_seed: dict[int, float]


def seed_values(results: list[tuple[Path, dict]], metric: str) -> dict[tuple[str, str], Units]:
    """{(setting, method): :class:`Units` of ``metric``} over the folders' results (``stats.seed_scores``),
    pi_SFT's rows left out; a method of a setting in two folders is an error."""
    values: dict[tuple[str, str], Units] = {}
    for folder, result in results:
        for key, runs in seed_scores(result, metric).items():
            if key[1] == "pi_sft":  # every folder's shared start, not a method
                continue
            if key in values:
                raise ValueError(f"{key[0]}/{key[1]} is in both {values[key].folder} and {folder}")
            values[key] = Units(folder, dict(runs))
    return values


def _load(folders: list[Path], aliases: dict[str, str] | None = None) -> list[tuple[Path, dict]]:
    """Each folder's results, a setting named in ``aliases`` renamed ({name: shown as}) in its rows and
    data report (the balanced setting shown as a ratio sweep's ratio-0.5: the same data)."""
    loaded = []
    for folder in folders:
        result = read_results(folder)
        for part in ("settings", "data"):
            result[part] = {(aliases or {}).get(name, name): rows for name, rows in result.get(part, {}).items()}
        loaded.append((folder, result))
    return loaded


def _read(folders: list[Path], metric: str, seeds: list[int], settings: list[str] | None,
          aliases: dict[str, str] | None = None):
    """:func:`_values` of the folders' results (:func:`_load`)."""
    return _values(_load(folders, aliases), metric, seeds, settings)


def _values(results: list[tuple[Path, dict]], metric: str, seeds: list[int], settings: list[str] | None):
    """(``seed_values`` of ``metric``, of the KL, the settings to show: ``settings``, each one the
    folders hold, else every setting of the folders)."""
    values, kls = seed_values(results, metric), seed_values(results, "kl")
    found = list(dict.fromkeys(setting for setting, _ in values))
    missing = [s for s in settings or [] if s not in found]
    if missing:
        raise ValueError(f"no setting {missing} in the folders (they hold {found})")
    return values, kls, settings or found


def _pick(values: dict[tuple[str, str], Units], setting: str, method: str, seeds: list[int]) -> dict[int, float]:
    """A method's {seed: value} in a setting over ``seeds``; a ValueError that names what the folders hold
    when the setting has no such method or its folder no unit for one of the seeds."""
    units = values.get((setting, method))
    if units is None:
        held = [name for where, name in values if where == setting]
        raise ValueError(f"no method {method!r} in setting {setting!r} of the folders (it has {held})")
    missing = [s for s in seeds if s not in units.by_seed]
    if missing:
        raise ValueError(f"--seeds asks for seed(s) {missing}, which {units.folder} has no unit of {setting}/{method} "
                         f"for (it has seeds {sorted(units.by_seed)})")
    return {seed: units.by_seed[seed] for seed in seeds}


def verdict(difference: dict[str, float], first: str, second: str) -> str:
    """``first ahead`` when the interval lies above 0, ``second ahead`` below, ``neither`` otherwise."""
    low, high = difference["mean"] - difference["ci95"], difference["mean"] + difference["ci95"]
    return f"{first} ahead" if low > 0 else f"{second} ahead" if high < 0 else "neither"


def comparison_page(folders: list[Path], pairs: list[tuple[str, str]], seeds: list[int],
                    metric: str = "gold_reward", paired: bool = False, settings: list[str] | None = None,
                    aliases: dict[str, str] | None = None) -> str:
    """One markdown table: a row per setting and pair; the ``settings`` only (in their order) when given,
    else every setting of the folders."""
    values, kls, settings = _read(folders, metric, seeds, settings, aliases)
    rows = [f"| setting | A | B | A - B, {metric} | verdict | A: mean (KL) | B: mean (KL) |",
            "|---|---|---|---|---|---|---|"]
    for setting in settings:
        for first, second in pairs:
            a, b = _pick(values, setting, first, seeds), _pick(values, setting, second, seeds)
            diff = paired_difference(b, a) if paired else difference_interval(list(a.values()), list(b.values()))
            mean_a, mean_b = (mean_interval(list(x.values()))["mean"] for x in (a, b))
            kl_a, kl_b = (mean_interval(list(_pick(kls, setting, m, seeds).values()))["mean"] for m in (first, second))
            rows.append(f"| {setting} | {first} | {second} | {diff['mean']:+.2f} ± {diff['ci95']:.2f} | "
                        f"{verdict(diff, first, second)} | {mean_a:.2f} ({kl_a:.1f}) | {mean_b:.2f} ({kl_b:.1f}) |")
    seeds_text = ", ".join(str(s) for s in seeds)
    how = ("paired by seed, its 95% t-interval" if paired
           else "its 95% Welch interval (unpaired: each method's seeds are its own draws)")
    return ("\n".join(rows) + f"\n\nTest prompts; seeds {seeds_text} of each method; A - B {how}; a verdict only "
            "where the interval excludes 0.\n")


def method_table(folders: list[Path], methods: list[str], seeds: list[int], metric: str = "gold_reward",
                 settings: list[str] | None = None, aliases: dict[str, str] | None = None) -> str:
    """One markdown table: a row per method, a column per setting (``settings`` in their order, else
    every setting of the folders), each cell the mean ``metric`` ± its 95% t-interval over ``seeds``
    (mean KL): every requested seed there, or "-" where the setting has no unit of the method."""
    values, kls, settings = _read(folders, metric, seeds, settings, aliases)
    absent = [m for m in methods if not any((s, m) in values for s in settings)]
    if absent:
        held = list(dict.fromkeys(name for where, name in values if where in settings))
        raise ValueError(f"no unit of {absent} in settings {settings} (the folders have {held} there)")
    rows = [f"| method | {' | '.join(settings)} |", "|---|" + "---|" * len(settings)]
    for method in methods:
        cells = []
        for setting in settings:
            if (setting, method) not in values:
                cells.append("-")
                continue
            stat = mean_interval(list(_pick(values, setting, method, seeds).values()))
            kl = mean_interval(list(_pick(kls, setting, method, seeds).values()))["mean"]
            cells.append(f"{stat['mean']:.2f} ± {stat['ci95']:.2f} ({kl:.1f})")
        rows.append(f"| {method} | {' | '.join(cells)} |")
    seeds_text = ", ".join(str(s) for s in seeds)
    return ("\n".join(rows) + f"\n\nTest prompts; {metric}, mean over seeds {seeds_text} ± its 95% t-interval "
            "(mean KL to pi_SFT); -: no unit of the method in that setting.\n")


def ratio_figure(folders: list[Path], methods: list[str], seeds: list[int], out: Path, metric: str = "gold_reward",
                 settings: list[str] | None = None, aliases: dict[str, str] | None = None) -> Path:
    """Ratio-sweep settings of several folders in one figure (``plots.plot_ratio_sweep``: ``metric`` and KL
    against the demonstrations' share): per setting (``settings``, else every setting of the folders) its
    demonstrations and preferences from the folders' data reports (which must agree where two folders
    hold it), and each of ``methods`` there as its mean ± 95% t-interval over ``seeds`` (every one there).
    pi_SFT's rows are left out."""
    from aihf.eval.plots import plot_ratio_sweep

    results = _load(folders, aliases)
    values, kls, settings = _values(results, metric, seeds, settings)
    counts: dict[str, tuple[int, int]] = {}
    for folder, result in results:
        for setting in settings:
            report = result["data"].get(setting)
            if report is None:
                continue
            made = (report["demonstrations"], report["preferences"])
            if counts.setdefault(setting, made) != made:
                raise ValueError(f"{setting}: {folder} reports {made[0]} demonstrations and {made[1]} preferences, "
                                 f"another folder {counts[setting][0]} and {counts[setting][1]}")
    rows = {setting: {method: {metric: mean_interval(list(_pick(values, setting, method, seeds).values())),
                               "kl": mean_interval(list(_pick(kls, setting, method, seeds).values()))}
                      for method in methods if (setting, method) in values} for setting in settings}
    return plot_ratio_sweep({"settings": rows}, [(name, *counts[name]) for name in settings], out, reward=metric)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's arguments (``aihf compare``, ``scripts/imdb_compare.py``)."""
    p.add_argument("folders", nargs="+", type=Path, help="run folders (each with results.json)")
    p.add_argument("--pairs", nargs="+", default=[], help="A:B method pairs")
    p.add_argument("--methods", nargs="+", help="a table of these methods' means per setting first")
    p.add_argument("--seeds", nargs="+", type=int, required=True, help="the seeds to compare (each must be there)")
    p.add_argument("--metric", default="gold_reward", help="a results row's field (default gold_reward)")
    p.add_argument("--paired", action="store_true", help="differences seed by seed (two variants of one method)")
    p.add_argument("--settings", nargs="+", help="compare in these settings only (default: every setting of the folders)")
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    p.add_argument("--ratio-plot", type=Path, help="also draw --methods across the settings as a ratio sweep (PNG)")
    p.add_argument("--as", dest="aliases", nargs="+", default=[], metavar="SETTING=NAME",
                   help="show a folder's setting under another name (balanced=ratio-0.5: the same data)")


def run(args: argparse.Namespace) -> int:
    """The pages (and figure) ``args`` asks for; ConfigError for arguments that do not fit together or
    that the folders cannot give (a missing seed, setting or method)."""
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs]
    if any(len(pair) != 2 for pair in pairs):
        raise ConfigError("--pairs takes A:B")
    if not pairs and not args.methods:
        raise ConfigError("give --pairs, --methods or both")
    aliases = dict(alias.split("=", 1) for alias in args.aliases if "=" in alias)
    if len(aliases) != len(args.aliases):
        raise ConfigError("--as takes SETTING=NAME")
    if args.ratio_plot and not args.methods:
        raise ConfigError("--ratio-plot draws the --methods")
    try:
        parts = [method_table(args.folders, args.methods, args.seeds, args.metric, args.settings, aliases)] if args.methods else []
        if pairs:
            parts.append(comparison_page(args.folders, pairs, args.seeds, args.metric, args.paired, args.settings, aliases))
        figure = ratio_figure(args.folders, args.methods, args.seeds, args.ratio_plot, args.metric, args.settings,
                              aliases) if args.ratio_plot else None
    except ValueError as err:  # a seed, setting or method the folders do not hold
        raise ConfigError(str(err)) from err
    page = "\n".join(parts)
    if args.out:
        args.out.write_text(page, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(page)
    if figure:
        print(f"wrote {figure}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python scripts/imdb_compare.py ...``: the same command as ``aihf compare``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except ConfigError as err:
        p.error(str(err))
