"""Dataclass configs: YAML loading, command-line overrides, errors that name the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from aihf.config import ConfigError, load_config, parse_overrides, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    schedule: Literal["constant", "cosine"] = "constant"


@dataclass
class Stage:
    name: str
    steps: int = 1


@dataclass
class Example:
    seed: int = 0
    model: str = "tiny"
    lora: bool = False
    optim: Optim = field(default_factory=Optim)
    stages: list[Stage] = field(default_factory=list)
    note: str | None = None


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\noptim:\n  lr: 1e-4\nstages:\n  - {name: a, steps: 2}\n")
    config = load_config(Example, path, ["optim.schedule=cosine", "lora=true", "seed=7"])
    assert config.seed == 7 and config.lora is True
    assert config.optim == Optim(lr=1e-4, schedule="cosine")
    assert config.stages == [Stage("a", 2)]
    assert config.model == "tiny" and config.note is None


def test_round_trip(tmp_path):
    config = Example(seed=5, optim=Optim(lr=0.5), stages=[Stage("x")], note="n")
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(Example, tmp_path / "saved.yaml") == config


def test_int_is_accepted_for_float_and_exponent_strings_parse():
    assert load_config(Example, overrides=["optim.lr=1"]).optim.lr == 1.0
    assert load_config(Example, overrides=["optim.lr=3e-5"]).optim.lr == pytest.approx(3e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["sed=1"], r"unknown key\(s\) sed for Example"),
        (["optim.lrate=1"], r"unknown key\(s\) optim.lrate for Optim"),
        (["seed=abc"], r"seed: expected int, got str"),
        (["lora=3"], r"lora: expected bool"),
        (["seed=true"], r"seed: expected int, got True"),
        (["optim.schedule=linear"], r"optim.schedule: 'linear' is not one of \['constant', 'cosine'\]"),
        (["optim=3"], r"optim: expected a mapping"),
        (["stages=[{name: a, stepz: 1}]"], r"unknown key\(s\) stages\[0\].stepz"),
        (["seed"], r"expected key=value"),
    ],
)
def test_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Example, overrides=overrides)


def test_file_errors_name_the_file(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("optim:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key\(s\) optim.momentum"):
        load_config(Example, bad_key)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping"):
        load_config(Example, not_mapping)
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML"):
        load_config(Example, broken)
    with pytest.raises(ConfigError, match=r"missing.yaml: cannot read config"):
        load_config(Example, tmp_path / "missing.yaml")


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Example, path)


def test_parse_overrides_nests():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e=[1, 2]"]) == {"a": {"b": {"c": 1}, "d": "x"}, "e": [1, 2]}
