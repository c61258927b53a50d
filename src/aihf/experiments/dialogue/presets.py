"""Presets of the dialogue experiments: ``configs/hh/<name>.yaml`` and
``configs/ultra/<name>.yaml`` as the package ships them (``aihf.shipped``), or a YAML path."""

from __future__ import annotations

from pathlib import Path

from aihf import shipped
from aihf.config import ConfigError


def load_group_preset(group: str, preset: str) -> Path:
    """The shipped ``configs/<group>/<preset>.yaml``, or ``preset`` itself when it is a YAML path."""
    if shipped.is_path(preset):
        return Path(preset)
    path = shipped.config_file(group, preset)
    if path is None:
        names = ", ".join(shipped.config_names(group)) or "none"
        raise ConfigError(f"unknown {group} preset {preset!r}; known presets: {names}")
    return path
