"""Typed configuration: YAML files load into dataclasses, validated, with `--set dotted.key=value` overrides.

Each layer owns its dataclass (`alm.model.config.ModelConfig`, `alm.data.config.DataConfig`,
`alm.train.config.TrainConfig`); this module only knows how to build any of them from plain data. Unknown keys,
wrong types and invalid values are `ConfigError`s naming the key and the file; nothing is silently ignored.
A dataclass may define `validate(self)` that raises `ConfigError(key, message)` for cross-field rules.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from alm.errors import ConfigError, UsageError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning I/O and syntax problems into ConfigErrors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("<file>", f"config file not found: {path}", source=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"invalid YAML: {exc}", source=str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("<file>", "not UTF-8 text", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"expected a mapping, got {type(data).__name__}", source=str(path))
    return data


def from_dict(
    cls: type[T], data: Mapping[str, Any] | None, *, source: str | None = None, prefix: str = ""
) -> T:
    """Build dataclass `cls` from `data`, checking keys, types and the class's own `validate()`."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(key, f"unknown key; valid keys: {', '.join(sorted(fields))}", source=source)
    hints = get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, prefix + name, source) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ConfigError as exc:  # raised with a key relative to `cls`: make it absolute and name the file
        raise ConfigError(prefix + exc.key, exc.detail, source=exc.source or source, hint=exc.hint) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (dataclasses, tuples and paths become YAML-safe types)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load(
    cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (), *, prefix: str = ""
) -> T:
    """Load `cls` from an optional YAML file, then apply `key=value` overrides (keys relative to `prefix`)."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else None
    data = apply_overrides(data, overrides, strip_prefix=prefix)
    return from_dict(cls, data, source=source, prefix=prefix)


def parse_override(text: str) -> tuple[str, Any]:
    """Split `a.b.c=value`; the value is parsed as YAML (so `1e-3`, `true`, `[1,2]` and `null` work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(text, "an override must look like dotted.key=value", source="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], *, strip_prefix: str = ""
) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=value` set; keys outside `strip_prefix` are skipped."""
    result = _deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        if strip_prefix:
            if not key.startswith(strip_prefix):
                continue
            key = key[len(strip_prefix) :]
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(key, f"'{part}' is not a section", source="--set")
            node = child
        node[parts[-1]] = value
    return result


def split_overrides(overrides: Iterable[str], sections: Iterable[str]) -> dict[str, list[str]]:
    """Group `section.key=value` overrides by their first component; unknown sections are errors."""
    sections = list(sections)
    grouped: dict[str, list[str]] = {s: [] for s in sections}
    for text in overrides:
        key, _ = parse_override(text)
        head, _, rest = key.partition(".")
        if head not in grouped or not rest:
            raise ConfigError(key, f"overrides must start with one of: {', '.join(sections)}", source="--set")
        grouped[head].append(text.split(".", 1)[1])
    return grouped


def _deepcopy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str, source: str | None) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, source)
            except ConfigError as exc:
                errors.append(exc)
        expected = " or ".join(_type_name(a) for a in args)
        raise ConfigError(key, f"expected {expected}, got {value!r}", source=source)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}", source=source
            )
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {value!r}", source=source)
        return from_dict(tp, value, source=source, prefix=key + ".")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {value!r}", source=source)
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {value!r}", source=source)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}", source=source)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(key, f"expected an integer, got {value!r}", source=source)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}", source=source)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}", source=source)
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ConfigError(key, f"expected a path, got {value!r}", source=source)
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a programming error, not user input


def preset_names(directory: Path) -> list[str]:
    """The presets in `directory`: the stems of its YAML files."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def resolve_preset(name_or_path: str | Path, directory: Path, kind: str) -> Path:
    """A preset name (a YAML file in `directory`) or the path of a YAML file; a UsageError lists the presets."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    names = ", ".join(preset_names(directory))
    if path.suffix in (".yaml", ".yml") or "/" in text or path.is_file():
        if not path.is_file():
            raise UsageError(f"{kind} config file not found: {path}", hint=f"presets: {names}")
        return path
    preset = directory / f"{text}.yaml"
    if not preset.is_file():
        raise UsageError(
            f"unknown {kind} preset '{text}'; available: {names}",
            hint=f"pass a preset name or the path of a {kind} YAML file",
        )
    return preset


def require(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError(key, message) unless `condition` holds; for use inside `validate()`."""
    if not condition:
        raise ConfigError(key, message)


__all__ = [
    "ConfigError",
    "apply_overrides",
    "from_dict",
    "load",
    "parse_override",
    "preset_names",
    "read_yaml",
    "require",
    "resolve_preset",
    "split_overrides",
    "to_dict",
]
