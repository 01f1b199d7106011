"""Typed configuration: YAML files load into dataclasses, validated, with `--set dotted.key=value` overrides.

Each layer owns its dataclass (`alm.model.config.ModelConfig`, `alm.data.config.DataConfig`,
`alm.train.config.TrainConfig`; together the sections of a run's config, `alm.train.run_config.RunConfig`); this
module only knows how to build any of them from plain data. Unknown keys, wrong types and invalid values
(non-finite numbers included: no field takes inf or nan) are `ConfigError`s naming the key and where the value
came from (a file, or `--set`); nothing is silently ignored.
A dataclass may define `validate(self)` that raises `ConfigError(key, message)` for cross-field rules.

Every config is made by `build`: base values (a file, a preset, a saved run) with overrides on top. `--set` keys
are fully qualified (`model.d_model=128`) in every command; a command that reads one section also takes them
bare (`d_model=128`), through the same `qualify_overrides`. The environment variable `ALM_SET` holds default
overrides (`ALM_SET="train.steps=4 train.batch_size=2"`) that every command applies, before its own `--set`s, to
the sections it reads: tiny runs for tests and CI without editing a command line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from alm.errors import ConfigError, UsageError

T = TypeVar("T")

RUN_SECTIONS = ("model", "train", "data")  # the sections of a run's config, and of qualified `--set` keys
CONFIG_DIR = Path(__file__).resolve().parent / "resources" / "configs"  # shipped presets (package data)
ENV_OVERRIDES = "ALM_SET"  # default `--set` items of every command (see the module docstring)


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
    cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (), *, section: str | None = None
) -> T:
    """`cls` from an optional YAML file plus `key=value` overrides (see `build` for `section`)."""
    base = read_yaml(path) if path is not None else {}
    return build(cls, base, overrides, section=section, source=str(path) if path is not None else None)


def build(
    cls: type[T],
    base: Mapping[str, Any] | None,
    overrides: Iterable[str] = (),
    *,
    section: str | None = None,
    source: str | Mapping[str, str] | None = None,
) -> T:
    """`cls` from `base` values with `key=value` overrides applied on top: the one way configs are made.

    With `section` (e.g. "model") `cls` is that section of a run's config: overrides may name the section or
    not (`qualify_overrides`) and error keys read `model.d_model`. A bad value is blamed on where it came from:
    `--set` for an overridden key, else `source` (a file, or a mapping from section to file).
    """
    overrides = list(overrides)
    if section:
        overrides = qualify_overrides(overrides, reads=(section,))
        data = apply_overrides({section: dict(base or {})}, overrides)[section]
    else:
        data = apply_overrides(base or {}, overrides)
    try:
        return from_dict(cls, data, prefix=f"{section}." if section else "")
    except ConfigError as exc:
        where = _blame(exc.key, overrides, source)
        raise ConfigError(exc.key, exc.detail, source=exc.source or where, hint=exc.hint) from None


def _blame(key: str, overrides: Sequence[str], source: str | Mapping[str, str] | None) -> str | None:
    """Where the value at `key` came from: `--set` (or `ALM_SET`) when an override set it (or a section holding
    it); the last override of a key is the one that counts."""
    from_env = set(_env_items())
    for text in reversed(overrides):
        overridden = parse_override(text)[0]
        if key == overridden or key.startswith((overridden + ".", overridden + "[")):
            return ENV_OVERRIDES if text in from_env else "--set"
    if isinstance(source, Mapping):
        return source.get(key.split(".", 1)[0])
    return source


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


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=value` set (every key; `from_dict` rejects unknown ones)."""
    result = _deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(key, f"'{part}' is not a section", source="--set")
            node = child
        node[parts[-1]] = value
    return result


def qualify_overrides(overrides: Iterable[str], reads: Sequence[str] = RUN_SECTIONS) -> list[str]:
    """`--set` items with fully qualified keys (`model.d_model=128`) for a command that reads the `reads`
    sections of a run's config, after the `ALM_SET` items of those sections (`env_overrides`). Where it reads
    one section a bare key (`d_model=128`) belongs to it; a key of a section it does not read is an error, never
    skipped."""
    qualified = env_overrides(reads)
    for text in overrides:
        key, _ = parse_override(text)
        raw = text.partition("=")[2]
        head, _, rest = key.partition(".")
        if (head in RUN_SECTIONS or head in reads) and rest:
            if head not in reads:
                only = ", ".join(f"{s}.*" for s in reads)
                raise ConfigError(key, f"this command reads only {only} keys", source="--set")
            qualified.append(f"{key}={raw}")
        elif len(reads) == 1:
            qualified.append(f"{reads[0]}.{key}={raw}")
        else:
            raise ConfigError(key, f"overrides must start with one of: {', '.join(reads)}", source="--set")
    return qualified


def env_overrides(reads: Sequence[str] = RUN_SECTIONS) -> list[str]:
    """The `ALM_SET` items (shell words, each `section.key=value`) of the sections in `reads`. Items of other
    sections belong to the commands that read them; a bare key or an unknown section is an error, so a typo never
    goes unnoticed."""
    chosen = []
    for text in _env_items():
        try:
            key, _ = parse_override(text)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.detail, source=ENV_OVERRIDES) from None
        head, _, rest = key.partition(".")
        if head not in RUN_SECTIONS or not rest:
            raise ConfigError(
                key,
                f"{ENV_OVERRIDES} items must start with one of: {', '.join(RUN_SECTIONS)}",
                source=ENV_OVERRIDES,
                hint=f'e.g. {ENV_OVERRIDES}="train.steps=4 train.batch_size=2"',
            )
        if head in reads:
            chosen.append(text)
    return chosen


def _env_items() -> list[str]:
    text = os.environ.get(ENV_OVERRIDES, "")
    try:
        return shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        raise ConfigError("<all>", f"cannot split {text!r}: {exc}", source=ENV_OVERRIDES) from None


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
        for arg in args:
            if arg is type(None):
                continue
            with contextlib.suppress(ConfigError):  # the next type may fit; the error below lists them all
                return _coerce(arg, value, key, source)
        expected = " or ".join(_type_name(a) for a in args)
        raise ConfigError(key, f"expected {expected}, got {value!r}", source=source)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}", source=source
            )
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise ConfigError(key, f"expected a number, got {value!r}", source=source)
        if not math.isfinite(number):  # inf/nan (or 1e999) would only surface later as NaN weights
            raise ConfigError(key, f"must be a finite number, got {value!r}", source=source)
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}", source=source)
    if tp is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise ConfigError(key, f"expected a path, got {value!r}", source=source)
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a programming error, not user input


@dataclass(frozen=True)
class Presets(Generic[T]):
    """A folder of YAML presets for one section of a run's config (`CONFIG_DIR/<section>/`)."""

    section: str
    cls: type[T]
    directory: Path

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.yaml"))

    def path(self, name_or_path: str | Path) -> Path:
        """A preset name or the path of a YAML file; a UsageError lists the presets."""
        text = str(name_or_path)
        path = Path(text).expanduser()
        names = ", ".join(self.names())
        if path.suffix in (".yaml", ".yml") or "/" in text or path.is_file():
            if not path.is_file():
                raise UsageError(f"{self.section} config file not found: {path}", hint=f"presets: {names}")
            return path
        preset = self.directory / f"{text}.yaml"
        if not preset.is_file():
            raise UsageError(
                f"unknown {self.section} preset '{text}'; available: {names}",
                hint=f"pass a preset name or the path of a {self.section} YAML file",
            )
        return preset

    def load(self, name_or_path: str | Path, overrides: Iterable[str] = ()) -> T:
        """The preset (or file) with `--set` overrides, keys with or without the section prefix."""
        return load(self.cls, self.path(name_or_path), overrides, section=self.section)


def require(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError(key, message) unless `condition` holds; for use inside `validate()`."""
    if not condition:
        raise ConfigError(key, message)


__all__ = [
    "CONFIG_DIR",
    "ENV_OVERRIDES",
    "RUN_SECTIONS",
    "ConfigError",
    "Presets",
    "apply_overrides",
    "build",
    "env_overrides",
    "from_dict",
    "load",
    "parse_override",
    "qualify_overrides",
    "read_yaml",
    "require",
    "to_dict",
]
