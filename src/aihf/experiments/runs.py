"""Which runs an experiment trains: methods, named variants and tuning grids.

Shared by the language-model experiments (IMDb, Anthropic-HH, UltraFeedback). Every entry
of ``methods`` is a method (a recipe name of ``aihf.lm.methods.RECIPES``) or a named
variant ``{recipe, method: {...}, loop: {...}}``: a recipe with its own overrides of the
``method`` and ``loop`` sections (e.g. AIHF's Algorithm 1 with ``schedule: rounds``, docs/
method.md section 3). ``grid`` expands an entry into one run per combination of the listed
values (``{"dpo": {"loop.learning_rate": [1e-4, 3e-4]}}`` -> runs ``dpo@learning_rate=0.0001``
and ``dpo@learning_rate=0.0003``).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Any

from aihf.config import ConfigError, Settings, from_dict
from aihf.lm.methods import RECIPES, MethodConfig
from aihf.lm.trainer import LoopConfig


@dataclass(frozen=True)
class RunSpec:
    """One trained entry of a run: its name (a folder and a results row), its recipe, and its
    ``method`` and ``loop`` sections after the variant's and the grid point's overrides."""

    name: str
    recipe: str
    method: MethodConfig
    loop: LoopConfig


def override(section: Any, cls: type, changes: dict[str, Any], where: str) -> Any:
    """``section`` (a dataclass) with ``changes`` merged in, checked as ``cls``."""
    merged = asdict(section)
    merged.update(changes)
    return from_dict(cls, merged, where=where)


def _grid_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_methods(methods: list[str], variants: dict[str, dict]) -> None:
    """ValueError unless ``methods`` is a non-empty list of policy-training recipes or variant names."""
    known = sorted(name for name, recipe in RECIPES.items() if recipe.train_policy)
    unknown = [m for m in methods if m not in known and m not in variants]
    if not methods or unknown:
        raise ValueError(f"methods must be a non-empty list of {known} or variant names, got {methods}")


def expand_runs(
    methods: list[str], variants: dict[str, dict], grid: dict[str, dict], method: MethodConfig, loop: LoopConfig
) -> list[RunSpec]:
    """Every entry of ``methods`` as a :class:`RunSpec` (variants applied to the shared
    ``method`` and ``loop`` sections), grid entries expanded in order; ConfigError on a bad
    variant or grid, or when two runs would share a name."""
    specs = []
    for name in methods:
        variant = dict(variants.get(name, {}))
        extra = set(variant) - {"recipe", "method", "loop"}
        if extra:
            raise ConfigError(f"variants.{name}: unknown key(s) {sorted(extra)}; use recipe, method, loop")
        recipe = variant.get("recipe", name)
        if recipe not in RECIPES or not RECIPES[recipe].train_policy:
            raise ConfigError(f"variants.{name}.recipe: {recipe!r} is not a method that trains a policy")
        base_method = override(method, MethodConfig, variant.get("method") or {}, f"variants.{name}.method")
        base_loop = override(loop, LoopConfig, variant.get("loop") or {}, f"variants.{name}.loop")
        axes = grid.get(name, {})
        for key, values in axes.items():
            if key.partition(".")[0] not in ("method", "loop") or not isinstance(values, list) or not values:
                raise ConfigError(f"grid.{name}: {key!r} must be method.KEY or loop.KEY with a non-empty list")
        for point in itertools.product(*axes.values()):
            changes: dict[str, dict[str, Any]] = {"method": {}, "loop": {}}
            for key, value in zip(axes, point):
                section, _, field_name = key.partition(".")
                changes[section][field_name] = value
            built = {
                "method": override(base_method, MethodConfig, changes["method"], f"grid.{name}"),
                "loop": override(base_loop, LoopConfig, changes["loop"], f"grid.{name}"),
            }
            label = ",".join(
                f"{key.partition('.')[2]}={_grid_value(getattr(built[key.partition('.')[0]], key.partition('.')[2]))}"
                for key in axes
            )
            specs.append(RunSpec(f"{name}@{label}" if label else name, recipe, built["method"], built["loop"]))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"run names repeat: {names}")
    return specs


def spec_overrides(spec: RunSpec, method: MethodConfig, loop: LoopConfig) -> dict[str, Any]:
    """``spec`` as a variant of the shared sections: its recipe and the method / loop fields it changes."""
    changed = {}
    for section, base in (("method", method), ("loop", loop)):
        mine, theirs = asdict(getattr(spec, section)), asdict(base)
        changed[section] = {k: v for k, v in mine.items() if v != theirs[k]}
    return {"recipe": spec.recipe, **changed}


@dataclass
class RunSelection(Settings):
    """The run-selecting part of an experiment's config: ``methods`` (recipes or variant
    names), ``variants``, ``grid``, the shared ``method`` and ``loop`` sections and ``seeds``.
    A config class derives from it and redefines the defaults it needs."""

    methods: list[str] = field(default_factory=lambda: ["dpo"])
    variants: dict[str, dict] = field(default_factory=dict)
    grid: dict[str, dict] = field(default_factory=dict)
    method: MethodConfig = field(default_factory=MethodConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        super().__post_init__()
        check_methods(self.methods, self.variants)
        if not self.seeds:
            raise ValueError("seeds is empty")

    def runs(self) -> list[RunSpec]:
        """Every entry of ``methods`` as a :class:`RunSpec` (:func:`expand_runs`)."""
        return expand_runs(self.methods, self.variants, self.grid, self.method, self.loop)
