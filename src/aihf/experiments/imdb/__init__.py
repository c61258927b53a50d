"""IMDb sentiment-controlled generation (docs/method.md section 6), in small parts.

* :mod:`.data`: the reviews, the fixed saved split, prompts and SFT demonstrations;
* :mod:`.presets`: the config dataclass and the YAML presets of ``configs/imdb/``;
* :mod:`.sampling`: answers of a saved policy, as token ids and text;
* :mod:`.base`: a small base model built from scratch on the SFT split (no hub needed);
* :mod:`.pipeline`: everything end to end; :func:`run_from_cli` is ``aihf experiment imdb``;
* :mod:`.plan`: its ``--dry-run``, which stages and units a run into a folder would train or reuse;
* :mod:`.quickstart`: ``aihf quickstart``, the pipeline at its quickstart preset.

What other experiments share lives outside: the gold reward, the judges, the metrics (KL,
win rate, summaries over seeds) and the results tables and figures in :mod:`aihf.eval`;
demonstrations and Bradley-Terry-labelled preferences from scored responses in
:mod:`aihf.data.builders`.
"""


def run_from_cli(preset: str, output_dir: str, overrides: list[str]) -> int:
    """``aihf experiment imdb --preset NAME``: see :func:`aihf.experiments.imdb.pipeline.run_from_cli`.

    Imported on call, so that the data, gold and metric modules load without torch's
    model stack.
    """
    from aihf.experiments.imdb.pipeline import run_from_cli as run

    return run(preset, output_dir, overrides)


def dry_run_from_cli(preset: str, output_dir: str, overrides: list[str]) -> int:
    """``aihf experiment imdb --dry-run``: see :func:`aihf.experiments.imdb.plan.dry_run_from_cli` (imported on call)."""
    from aihf.experiments.imdb.plan import dry_run_from_cli as dry_run

    return dry_run(preset, output_dir, overrides)


def run_quickstart(output_dir: str, overrides: list[str]) -> int:
    """``aihf quickstart``: see :func:`aihf.experiments.imdb.quickstart.run_quickstart` (imported on call)."""
    from aihf.experiments.imdb.quickstart import run_quickstart as run

    return run(output_dir, overrides)


__all__ = ["dry_run_from_cli", "run_from_cli", "run_quickstart"]
