"""Configs are (nested) dataclasses, loaded from YAML with ``yaml.safe_load`` and
overridden from the command line as ``dotted.key=value``.

An unknown key is an error that names it (and the file it came from), except a key that a
class retired, given at the one value it may still have (``Settings.RETIRED``); a value of the
wrong type is an error that names the key. Values given on the command line are parsed
with ``yaml.safe_load`` too, so ``lr=1e-5``, ``lora=true`` and ``layers=[1,2]`` work.

Values are validated in one place: every config dataclass derives from :class:`Settings`,
whose ``__post_init__`` runs :func:`check_settings`: no float anywhere is NaN or
infinite, and each field declared with :func:`setting` lies in its bounds. A class adds
its cross-field rules (``max_prompt_length < max_length``) in its own ``__post_init__``
after ``super().__post_init__()``; every message starts with the field's name, and
``from_dict`` puts the section in front of it (``loop.learning_rate must be > 0``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


_BOUNDS = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
           ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, help: str = "",
            ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A dataclass field with its help text and numeric bounds (``None`` stays allowed where
    the type admits it): ``warmup_steps: int = setting(0, ge=0, help="...")``."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if bound is not None}
    metadata = {"help": help, "bounds": bounds}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def check_settings(config: Any) -> None:
    """Raise ValueError naming the first field that is not finite or is out of its bounds."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _non_finite(value):
            raise ValueError(f"{f.name} must be finite, got {value!r}")
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        for name, symbol, holds in _BOUNDS:
            bound = f.metadata.get("bounds", {}).get(name)
            if bound is not None and not holds(value, bound):
                raise ValueError(f"{f.name} must be {symbol} {bound}, got {value}")


@dataclasses.dataclass
class Settings:
    """Base of every config dataclass: values are checked when the object is made.

    ``RETIRED``: keys a class no longer has, each with the one value a saved config may still
    hold for it, the value that the class now always behaves as. ``from_dict`` drops such a key
    given at that value, so configs saved before the key was removed load and mean what they
    meant, and refuses any other value.
    """

    RETIRED: typing.ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        check_settings(self)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, key: str, where: str) -> Any:
    """Check ``value`` against ``annotation`` (a small subset of typing), converting ints to floats."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: {key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {key}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {type(value).__name__}")
        return from_dict(annotation, value, where=where, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", where) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # yaml reads "1e-5" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if isinstance(annotation, type):
        if annotation is not bool and isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: expected {annotation.__name__}, got {value!r}")
        if not isinstance(value, annotation):
            raise ConfigError(
                f"{where}: {key}: expected {annotation.__name__}, got {type(value).__name__} {value!r}"
            )
    return value


def _without_retired(cls: type, data: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
    """``data`` without the keys ``cls`` retired (``Settings.RETIRED``), each given at its one value."""
    retired = getattr(cls, "RETIRED", {})
    for key in sorted(set(data) & set(retired)):
        if data[key] != retired[key]:
            raise ConfigError(f"{where}: {prefix}{key} was retired from {cls.__name__}, which now always behaves as "
                              f"{key}: {retired[key]!r}; {data[key]!r} is no longer possible here (remove the key)")
    return {k: v for k, v in data.items() if k not in retired}


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = _without_retired(cls, data, where, prefix)
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        guesses = [m for k in unknown for m in difflib.get_close_matches(k, list(types_), n=1, cutoff=0.6)]
        hint = f"; did you mean {', '.join(prefix + g for g in guesses)}?" if guesses else ""
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}{hint} "
            f"(known keys: {', '.join(prefix + k for k in types_)})"
        )
    kwargs = {k: _coerce(v, types_[k], prefix + k, where) for k, v in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:  # messages start with the field's name
        raise ConfigError(f"{where}: {prefix}{err}") from err
    return obj


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted key, default, help)`` of every leaf setting of config dataclass ``cls``
    (nested sections recursed), for ``--help``."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            rows += describe(annotation, f"{prefix}{f.name}.")
            continue
        optional_section = [a for a in typing.get_args(annotation) if dataclasses.is_dataclass(a)]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        shown = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        rows.append((prefix + f.name, shown, f.metadata.get("help", "")))
        if optional_section:  # e.g. model.lora: null, or a section with these keys
            rows += describe(optional_section[0], f"{prefix}{f.name}.")
    return rows


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data (what ``save_config`` writes)."""
    return dataclasses.asdict(config)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed by yaml.safe_load)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is set both as a value and a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:  # e.g. a tag such as !!python/object, which safe_load refuses
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"override {item!r}: not a plain YAML value ({problem})") from err
    return tree


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` <- ``defaults`` <- YAML file ``path`` <- command-line ``overrides``."""
    data: dict[str, Any] = dict(defaults or {})
    where = "config"
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config: {err}") from err
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = _merge(data, loaded or {})
    if overrides:
        data = _merge(data, parse_overrides(overrides))
        where = f"{where} + command-line overrides" if path else "command-line overrides"
    return from_dict(cls, data, where=where)


def save_config(config: Any, path: str | Path) -> None:
    """Write the config as YAML (``load_config`` reads it back to an equal object)."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
