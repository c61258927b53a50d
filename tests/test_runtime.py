"""Seeding, RNG capture without pickle, atomic checkpoint directories, the NaN guard."""

import random

import numpy as np
import pytest
import torch

from aihf.runtime import (
    NonFiniteLossError,
    package_versions,
    atomic_directory,
    check_finite,
    load_rng_state,
    save_rng_state,
    set_seed,
)


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_package_versions_name_python_and_what_the_results_depend_on():
    import sys
    from importlib.metadata import version

    versions = package_versions()
    assert versions["python"] == sys.version.split()[0]
    for name in ("aihf", "torch", "transformers", "tokenizers", "accelerate", "numpy", "scikit-learn"):
        assert versions[name] == version(name), name


def test_set_seed_repeats():
    set_seed(11)
    first = _draw()
    set_seed(11)
    assert _draw() == first


def test_rng_state_round_trip(tmp_path):
    set_seed(3)
    _draw()
    save_rng_state(tmp_path)
    expected = _draw()
    _draw()
    load_rng_state(tmp_path)
    assert _draw() == expected
    assert {p.suffix for p in tmp_path.iterdir()} == {".safetensors", ".json"}


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("half-written")
            raise RuntimeError("crash while saving")
    assert (target / "a.txt").read_text() == "first"
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), torch.tensor(float("nan"))])
def test_check_finite_stops_with_message(bad):
    with pytest.raises(NonFiniteLossError, match=r"dpo loss is (nan|inf) at step 12"):
        check_finite(bad, "dpo loss", 12)
    assert check_finite(torch.tensor(1.5), "loss", 0) == 1.5
