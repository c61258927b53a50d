"""The committed IMDb exports say how many prompts their units were scored on, and say it right.

Every tuned test run inherits ``generation.num_eval_prompts: 200`` from its tuning grid's config
(the untuned ``scratch-cpu`` preset has 500); the results text said "the 500 test prompts" for
them until 2026-12-07. Each export's README that gives a count of test or validation prompts is
checked against the ``evaluation.json`` keys of its units of that kind (the prompts a unit was
scored on), so a wrong count fails here instead of reaching a reader.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
READMES = sorted(RESULTS.glob("imdb-*/README.md"))
COUNT = re.compile(r"\b(\d[\d,]*) (test|validation)\s+prompts")


def scored_counts(folder: Path) -> dict[str, set[int]]:
    """{evaluate_on: the numbers of prompts its units under ``folder`` were scored on}."""
    counts: dict[str, set[int]] = {}
    for path in folder.rglob("evaluation.json"):
        key = json.loads(path.read_text(encoding="utf-8"))["key"]
        counts.setdefault(key["evaluate_on"], set()).add(len(key["prompts"]))
    return counts


def test_the_exports_units_are_found():
    """The check below reads real units: most exports hold some."""
    assert len(READMES) >= 20 and sum(bool(scored_counts(readme.parent)) for readme in READMES) >= 20


@pytest.mark.parametrize("readme", READMES, ids=lambda path: path.parent.name)
def test_an_exports_stated_prompt_count_is_its_units(readme):
    scored = scored_counts(readme.parent)
    for number, kind in COUNT.findall(readme.read_text(encoding="utf-8")):
        if kind in scored:  # a count of the other kind describes another run (the grid a choice came from)
            assert scored[kind] == {int(number.replace(",", ""))}, (
                f"{readme.relative_to(RESULTS)} says {number} {kind} prompts; its {kind} units were scored on "
                f"{sorted(scored[kind])}")
