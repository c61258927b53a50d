"""The repository's text stays readable and its citations of tests stay true.

The docs cite tests as evidence (``tests/test_objective.py::test_...`` or a backticked
``test_...``); a renamed or deleted test would leave a claim that nothing checks. And a
Python string written without ``r`` can put control characters into a doc (``"\\b"`` is a
backspace), which renders as garbage where LaTeX was meant.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from aihf.eval.generations import CONTROL_CHARACTERS

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg"}
DATASET_SPLITS = {"test_prefs", "test_sft", "test_gen"}  # backticked split names of hub datasets, not tests


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.splitlines() if Path(name).suffix in TEXT_SUFFIXES and (ROOT / name).is_file()]


def defined_tests() -> dict[str, set[str]]:
    return {path.name: set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
            for path in (ROOT / "tests").glob("test_*.py")}


def test_no_tracked_text_file_holds_control_characters():
    found = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CONTROL_CHARACTERS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]!r}")
    assert not found, "control characters (a Python string without r'...'?):\n" + "\n".join(found)


def test_every_test_the_docs_cite_exists():
    names = defined_tests()
    every = set().union(*names.values())
    missing = []
    for path in tracked_text_files():
        if path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?:tests/)?(test_\w+\.py)::(test_\w+)", text):
            if match.group(2) not in names.get(match.group(1), ()):
                missing.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
        for match in re.finditer(r"`(test_\w+)`", text):
            if match.group(1) not in every | DATASET_SPLITS:
                missing.append(f"{path.relative_to(ROOT)}: `{match.group(1)}`")
    assert not missing, "docs cite tests that do not exist:\n" + "\n".join(missing)


def test_the_trl_table_names_real_fields_on_both_sides():
    """docs/from_trl.md: each row's trl argument is a field of trl's ``DPOConfig``; each aihf key
    it names is a key of ``aihf train``'s config; the example command and the LoRA override load
    as a config."""
    import dataclasses
    import shlex

    from aihf.config import load_config
    from aihf.lm.train import TrainConfig

    trl = pytest.importorskip("trl")
    text = (ROOT / "docs" / "from_trl.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) >= 30
    trl_fields = {field.name for field in dataclasses.fields(trl.DPOConfig)}

    def aihf_keys(tree, prefix=""):
        for field in dataclasses.fields(tree):
            value = getattr(tree, field.name)
            if dataclasses.is_dataclass(value):
                yield from aihf_keys(value, f"{prefix}{field.name}.")
            yield prefix + field.name

    keys = set(aihf_keys(TrainConfig()))
    for row in rows:
        name = re.match(r"\| `(\w+)", row[0]).group(1)
        assert name in trl_fields, f"docs/from_trl.md: trl's DPOConfig has no {name!r}"
        for key in re.findall(r"`((?:model|data|method|loop)\.\w+)", row[1]):
            assert key in keys, f"docs/from_trl.md, row {name!r}: aihf has no key {key!r}"
    command = re.search(r"```bash\n# aihf\n(.*?)```", text, re.S).group(1).replace("\\\n", " ")
    overrides = [word for word in shlex.split(command) if "=" in word and not word.startswith("--")]
    config = load_config(TrainConfig, None, overrides)
    assert (config.method.beta, config.loop.lr_scheduler, config.data.max_length) == (0.1, "cosine", 1024)
    lora = re.search(r'"(model\.lora=\{.*?\})"', text).group(1)
    settings = load_config(TrainConfig, None, [lora]).model.lora
    assert (settings.r, settings.alpha, settings.dropout) == (16, 32, 0.05)
