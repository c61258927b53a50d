"""The IMDb experiment's settings as one dataclass, and its named YAML presets.

A preset is ``configs/imdb/<name>.yaml`` in the source checkout (or any YAML path); it
overrides :class:`ImdbConfig`'s defaults, and command-line ``dotted.key=value`` overrides
come last (``aihf.config.load_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aihf.config import ConfigError, load_config
from aihf.experiments.imdb.builders import BuildConfig, RatioSweep
from aihf.experiments.imdb.data import PromptConfig, SplitConfig
from aihf.experiments.imdb.gold import GoldConfig

PRESET_DIR = Path(__file__).resolve().parents[4] / "configs" / "imdb"


@dataclass
class ImdbConfig:
    """Split, prompts, gold reward and the data regimes (settings) to build D and P for."""

    split: SplitConfig = field(default_factory=SplitConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    settings: list[BuildConfig] = field(default_factory=lambda: [BuildConfig()])
    ratio_sweep: RatioSweep | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.all_settings()]
        if len(set(names)) != len(names):
            raise ValueError(f"setting names must be unique, got {names}")
        if not names:
            raise ValueError("no settings: give `settings` or `ratio_sweep`")

    def all_settings(self) -> list[BuildConfig]:
        """``settings`` followed by the ratio sweep's settings (if any)."""
        return [*self.settings, *(self.ratio_sweep.settings() if self.ratio_sweep else [])]


def preset_names() -> list[str]:
    """Names of the presets in ``configs/imdb/``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(preset: str) -> Path:
    """``configs/imdb/<preset>.yaml``, or ``preset`` itself when it is a path to a YAML file."""
    if preset.endswith((".yaml", ".yml")):
        return Path(preset)
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown IMDb preset {preset!r}; known presets: {', '.join(preset_names()) or 'none'}")
    return path


def load_preset(preset: str, overrides: list[str] | None = None) -> ImdbConfig:
    """The config of a named preset (or YAML path) with command-line overrides applied."""
    return load_config(ImdbConfig, preset_path(preset), overrides)
