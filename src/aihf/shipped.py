"""The files aihf ships besides its code, found through the installed package.

* ``configs/`` of the repository (the IMDb and MuJoCo presets, the language-model and
  accelerate configs) is installed as the package ``aihf.configs``;
* ``data/mujoco/`` (the MuJoCo expert data, docs/control.md) as ``aihf.mujoco_data``.

Both folders stay at the top of the source repository, where the docs name them
(``configs/imdb/quickstart.yaml``): ``pyproject.toml`` maps them into the package
(``[tool.setuptools] package-dir``), so a wheel carries one copy of each file and an
editable install reads them in place. Code reads them here, through
:mod:`importlib.resources`, never through a path relative to a source checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CONFIGS = "aihf.configs"
MUJOCO_DATA = "aihf.mujoco_data"
YAML_SUFFIXES = (".yaml", ".yml")


def _package_folder(package: str) -> Path:
    """The folder of an installed data package, as a file-system path."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            f"aihf's package data {package} is not installed: an editable install made before "
            "aihf shipped its configs and data as package data? Reinstall aihf (`pip install -e .`)"
        ) from err
    if not isinstance(root, Path):  # e.g. imported from a zip file: not how pip installs a wheel
        raise FileNotFoundError(f"aihf's package data {package} is not a folder on disk ({root!r})")
    return root


def config_dir(group: str) -> Path:
    """The shipped ``configs/<group>/`` folder (``imdb``, ``mujoco``, ``lm``, ``accelerate``)."""
    return _package_folder(CONFIGS) / group


def config_names(group: str) -> list[str]:
    """Names (file stems) of the YAML files in ``configs/<group>/``."""
    folder = config_dir(group)
    return sorted(p.stem for p in folder.iterdir() if p.suffix in YAML_SUFFIXES) if folder.is_dir() else []


def is_path(name: str) -> bool:
    """Whether a preset argument is a YAML path of the user's (else a shipped preset's name)."""
    return name.endswith(YAML_SUFFIXES)


def config_file(group: str, name: str) -> Path | None:
    """``configs/<group>/<name>.yaml`` of the installed package, or None when it has none."""
    path = config_dir(group) / f"{name}.yaml"
    return path if path.is_file() else None


def find_config(group: str, name: str) -> Path | None:
    """A ``--config`` / ``--preset`` argument as a file: ``name`` itself when it ends in
    ``.yaml`` / ``.yml``, else the shipped ``configs/<group>/<name>.yaml``, else ``name`` as a
    path when such a file exists (one without the suffix); None when it is none of these."""
    if is_path(name):
        return Path(name)
    found = config_file(group, name)
    return found if found is not None or not Path(name).is_file() else Path(name)


def mujoco_envs() -> list[str]:
    """The environments the shipped MuJoCo data covers (the folders of ``data/mujoco/``)."""
    root = _package_folder(MUJOCO_DATA)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.npz")))


def mujoco_data_dir(env: str) -> Path:
    """The shipped MuJoCo data of one environment (``data/mujoco/<env>/``)."""
    return _package_folder(MUJOCO_DATA) / env
