"""aihf as a wheel: the configs, presets and MuJoCo data it ships are package data.

The wheel is built from a copy of the checkout and installed (without dependencies) into a
fresh virtual environment whose only other entry on ``sys.path`` is this environment's
site-packages (for torch, transformers, ...; its ``.pth`` files, the editable install's
finder among them, are not run), then used from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from aihf import shipped

REPO = Path(__file__).resolve().parents[1]
MAPPED = {"aihf.configs": "configs", "aihf.mujoco_data": "data/mujoco"}


def test_pyproject_names_every_package_and_maps_the_shipped_folders():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    code = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src" / "aihf").rglob("__init__.py")}
    config_folders = {f"aihf.configs.{d.name}" for d in (REPO / "configs").iterdir() if d.is_dir() and list(d.glob("*.yaml"))}
    assert set(setuptools["packages"]) == code | set(MAPPED) | config_folders, "pyproject.toml [tool.setuptools] packages"
    assert all(setuptools["package-data"][folder] == ["*.yaml"] for folder in config_folders)
    assert setuptools["package-dir"] == {"": "src", **MAPPED}
    for package, folder in MAPPED.items():
        assert (REPO / folder / "__init__.py").is_file(), folder
        assert not (REPO / "src" / Path(*package.split("."))).exists(), f"a second copy of {folder} under src/"


def test_evaluation_and_the_dataset_builders_have_one_home_each():
    """What the experiments share to judge a policy is aihf.eval, the D/P builders aihf.data
    (docs/architecture.md); the IMDb experiment's old module paths are gone, not re-exported."""
    from importlib.util import find_spec

    for module in ("eval.gold", "eval.judge", "eval.metrics", "eval.plots", "eval.cache", "eval.stats",
                   "data.builders", "experiments.bandit", "control.toy"):
        assert find_spec(f"aihf.{module}") is not None, module
    for module in ("gold", "judge", "metrics", "plots", "cache", "builders"):
        assert find_spec(f"aihf.experiments.imdb.{module}") is None, module
    assert find_spec("aihf.experiments.toy") is None  # control.toy is the only toy.py


def test_the_installed_package_reads_the_repository_folders():
    """In this (editable) install the package data is the checkout's configs/ and data/mujoco/ themselves."""
    assert shipped.config_dir("imdb") == REPO / "configs" / "imdb"
    for group in ("imdb", "mujoco", "lm", "accelerate", "hh", "ultra"):
        assert shipped.config_names(group) == sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml")), group
    assert shipped.mujoco_data_dir("Hopper-v5") == REPO / "data" / "mujoco" / "Hopper-v5"
    assert shipped.config_file("imdb", "no-such-preset") is None


def test_a_preset_given_as_a_path_is_read_from_the_working_directory(tmp_path, monkeypatch):
    from aihf.config import ConfigError
    from aihf.experiments.imdb.presets import load_preset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    text = (shipped.config_file("imdb", "tiny")).read_text(encoding="utf-8").replace("seeds: [0, 1]", "seeds: [5]")
    (tmp_path / "mine" / "tiny.yaml").write_text(text, encoding="utf-8")
    assert load_preset("mine/tiny.yaml").seeds == [5] and load_preset("tiny").seeds == [0, 1]
    with pytest.raises(ConfigError, match="unknown IMDb preset 'mine/tiny'; known presets: .*quickstart"):
        load_preset("mine/tiny")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_preset("missing.yaml")


# ------------------------------------------------------------------------- the wheel

SEPARATE_INSTALL_CHECK = r"""
import sys
from pathlib import Path

import yaml

import aihf
from aihf import shipped
from aihf.config import load_config
from aihf.control.expert_data import demonstrator_return, load_data
from aihf.experiments.dialogue import hh, ultra
from aihf.experiments.imdb.presets import load_preset, preset_names
from aihf.experiments.mujoco import MujocoConfig
from aihf.lm.train import TrainConfig

venv, repo = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
where = Path(aihf.__file__).resolve()
assert where.is_relative_to(venv), f"aihf imported from {where}, not the wheel in {venv}"
checkout = [repo, repo / "src", repo / "configs", repo / "data"]
assert not any(Path(p or ".").resolve().is_relative_to(c) for p in sys.path for c in checkout[1:])
assert repo not in [Path(p or ".").resolve() for p in sys.path], sys.path
names = {}
for group in ("imdb", "mujoco", "lm", "accelerate", "hh", "ultra"):
    folder = shipped.config_dir(group)
    assert folder.resolve().is_relative_to(venv), folder
    names[group] = shipped.config_names(group)
assert preset_names() == names["imdb"]
for name in names["imdb"]:
    load_preset(name)
for name in names["mujoco"]:
    load_config(MujocoConfig, shipped.config_file("mujoco", name))
for name in names["lm"]:
    load_config(TrainConfig, shipped.config_file("lm", name))
for name in names["accelerate"]:
    assert isinstance(yaml.safe_load(shipped.config_file("accelerate", name).read_text()), dict)
for name in names["hh"]:
    hh.load_preset(name)
for name in names["ultra"]:
    ultra.load_preset(name)
for env in ("Hopper-v5", "HalfCheetah-v5"):
    data = shipped.mujoco_data_dir(env)
    demos, prefs = load_data(data, "demos_low", n_demos=100, n_prefs=100)
    assert len(demos) == 100 and len(prefs) == 100 and demonstrator_return(data) > 0
print("NAMES", names)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PYTHONNOUSERSITE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """A fresh venv holding only the wheel built from this checkout, and a working folder outside it."""
    from importlib.metadata import version

    assert int(version("setuptools").split(".")[0]) >= 77, "the build needs setuptools>=77: pip install -e '.[tests]'"
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy: the build writes build/ and *.egg-info next to its sources
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("src", "configs", "data"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(root / "dist"), str(source)], check=True, env=_clean_env())
    (wheel,) = (root / "dist").glob("aihf-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, env=_clean_env())
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies: this environment's site-packages as a plain path entry (its .pth files,
    # __editable__ ones included, are not processed, so the checkout stays off sys.path)
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(purelib, "aihf-test-dependencies.pth").write_text("".join(f"{p}\n" for p in ours), encoding="utf-8")
    work = root / "work"
    work.mkdir()
    print(f"wheel built and installed in {time.perf_counter() - start:.1f} s")
    return venv, work


@pytest.mark.e2e
def test_the_wheel_loads_every_shipped_config_and_data_file_outside_the_checkout(wheel_venv):
    venv, work = wheel_venv
    script = work / "check.py"
    script.write_text(textwrap.dedent(SEPARATE_INSTALL_CHECK), encoding="utf-8")
    done = subprocess.run([venv / "bin" / "python", script, str(venv), str(REPO)], cwd=work, env=_clean_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for group in ("imdb", "mujoco", "lm", "accelerate", "hh", "ultra"):
        assert f"'{group}': {shipped.config_names(group)}" in done.stdout, group
    # the commands find their presets: the errors below are about the overrides and the name given
    aihf = str(venv / "bin" / "aihf")
    done = subprocess.run([aihf, "quickstart", "--output-dir", "qs", "model.scratch.bogus=1"], cwd=work,
                          env=_clean_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "unknown key(s) model.scratch.bogus" in done.stderr, done.stderr
    assert str(venv) in done.stderr and "aihf/configs/imdb/quickstart.yaml" in done.stderr, done.stderr
    done = subprocess.run([aihf, "experiment", "mujoco", "--preset", "nope"], cwd=work, env=_clean_env(),
                          capture_output=True, text=True)
    assert done.returncode == 2 and f"no MuJoCo preset 'nope'; presets: {', '.join(shipped.config_names('mujoco'))}\n" in done.stdout, done.stdout
    assert not (work / "qs").exists() and not (work / "outputs").exists()


@pytest.mark.e2e
def test_the_wheel_runs_the_tiny_imdb_preset_outside_the_checkout(wheel_venv):
    """``aihf experiment imdb --preset tiny`` from the wheel: preset, reviews, gold reward, judge, a
    method and its evaluation (one seed, 2 methods; about 20 s on one core)."""
    venv, work = wheel_venv
    env = _clean_env(AIHF_CACHE=str(work / "cache"), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    done = subprocess.run([venv / "bin" / "aihf", "experiment", "imdb", "--preset", "tiny", "--output-dir", "out",
                           "seeds=[0]", "methods=[dpo,aihf]", "model.device=cpu"], cwd=work, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "IMDb (tiny): results in out/results.md" in done.stdout
    results = (work / "out" / "results.md").read_text(encoding="utf-8")
    assert "| dpo |" in results and "| aihf |" in results, results
    assert any((work / "cache").glob("imdb-gold-*")), "the gold reward was fitted and cached"
