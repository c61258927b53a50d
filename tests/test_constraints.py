"""constraints.txt pins every package aihf[tests] pulls in, and the install commands use it."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("constraints_script", REPO / "scripts" / "constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constraints_pin_the_dependency_closure_of_aihf_tests_less_aihf_and_torch():
    script = _script()
    pins = script.pinned((REPO / "constraints.txt").read_text(encoding="utf-8"))
    needed = set(script.closure()) - script.LEFT_OUT
    assert {"transformers", "tokenizers", "numpy", "scikit-learn", "accelerate", "trl", "filelock"} <= needed
    assert set(pins) == needed, (sorted(needed - set(pins)), sorted(set(pins) - needed))
    assert all(version and " " not in version for version in pins.values())


def test_the_install_commands_use_the_constraints():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line for line in (readme + ci).splitlines() if "pip install" in line and "torch==2.13.0" in line]
    assert len(commands) == 3 and all("-c constraints.txt" in line for line in commands), commands
