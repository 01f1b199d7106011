"""What a data root was built with, and how a command's data config is resolved from it.

Every stage records the full data config it ran with in `<root>/settings.json`. Data commands start from that
record and apply what the user said on top (a `--config` file, then `--set` and flags), so the settings given to
one stage carry to the next: `alm tokenizer train --type unigram` then a plain `alm pack` packs with the unigram
tokenizer. `alm train --data DIR` means the data DIR holds — its corpus.yaml, its record, or (for a packed
directory) the settings in its manifest — and anything else is refused rather than silently built from the
built-in corpus. A tokenizer recorded as a file (`tokenizer.file`) and one to train do not mix: naming the
other kind replaces the recorded tokenizer settings whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alm.config import from_dict, read_yaml, to_dict
from alm.data.config import DataConfig
from alm.data.layout import MANIFEST_FILE, SETTINGS_FILE, data_paths
from alm.data.stage import read_json, write_json_atomic
from alm.errors import UsageError

CORPUS_FILE = "corpus.yaml"
DEFAULT_ROOT = Path("data")
_DATA_HINT = (
    "pass a corpus.yaml (see configs/corpus.yaml; `sources: [{type: local, paths: [DIR]}]` reads a folder of "
    "text), or a data directory built by `alm pack`"
)


def read_settings(root: str | Path) -> dict[str, Any] | None:
    """The data config recorded in `root` (without `root` itself), or None when nothing was built there."""
    path = Path(root) / SETTINGS_FILE
    record = read_json(path)
    if record is None:
        return None
    data = record.get("data")
    if record.get("format") != "alm-data-settings" or not isinstance(data, dict):
        raise UsageError(f"{path} is not a settings record written by alm", hint=f"delete {path}")
    from_dict(DataConfig, {**data, "root": str(root)}, source=str(path))  # a bad record names its file
    return data


def write_settings(cfg: DataConfig) -> None:
    """Record `cfg` as the settings its root was last built with."""
    data = {k: v for k, v in to_dict(cfg).items() if k != "root"}
    path = Path(cfg.root) / SETTINGS_FILE
    if (read_json(path) or {}).get("data") != data:  # unchanged: leave the file (and its mtime) alone
        write_json_atomic(path, {"format": "alm-data-settings", "version": 1, "data": data})


def resolve_data_config(explicit: Mapping[str, Any], *, source: str | None = None) -> DataConfig:
    """The data config a data command works with: its root's record, with `explicit` (a config file's keys and
    `--set` overrides, keys relative to the data section) on top."""
    return from_dict(DataConfig, _rooted(explicit, default_root=None, absolute=False), source=source)


def resolve_data_arg(data: str | Path | None) -> tuple[dict[str, Any], str | None]:
    """`alm train --data`: the data section's base values (overrides go on top) and the file they came from.

    None is the built-in corpus under ./data; otherwise a corpus .yaml, a data root (its corpus.yaml, else the
    settings it records), or a packed directory (the settings in its manifest). Anything else is refused. The
    root comes back absolute, so a run's saved config finds its data from any working directory.
    """
    if data is None:
        return {"root": str(DEFAULT_ROOT.resolve())}, None
    path = Path(data).expanduser()
    if path.suffix in (".yaml", ".yml"):
        return _rooted(read_yaml(path), default_root=None), str(path)  # a missing file is a ConfigError
    if not path.is_dir():
        what = "not a .yaml corpus file or a data directory" if path.exists() else "no such file or directory"
        raise UsageError(f"--data {data}: {what}", hint=_DATA_HINT)
    if (path / CORPUS_FILE).is_file():  # the directory's own corpus config; its `root:` wins if it sets one
        return _rooted(read_yaml(path / CORPUS_FILE), default_root=path), str(path / CORPUS_FILE)
    if (path / SETTINGS_FILE).is_file():
        return _rooted({}, default_root=path), str(path / SETTINGS_FILE)
    if (path / MANIFEST_FILE).is_file():
        return _packed_dir_base(path), str(path / MANIFEST_FILE)
    parent = path.resolve().parent
    if (parent / SETTINGS_FILE).is_file():
        raise UsageError(
            f"--data {data} is one stage of the data root {parent}", hint=f"pass --data {parent}"
        )
    raise UsageError(f"--data {data}: holds no corpus.yaml and no data built by alm", hint=_DATA_HINT)


def _rooted(
    explicit: Mapping[str, Any], *, default_root: Path | None, absolute: bool = True
) -> dict[str, Any]:
    """`explicit` over the record of its root (`root:` if it sets one, else `default_root`, else ./data)."""
    root = Path(explicit.get("root") or default_root or DEFAULT_ROOT)
    recorded = _one_tokenizer_kind(read_settings(root) or {}, explicit)
    return {**_merge(recorded, explicit), "root": str(root.expanduser().resolve() if absolute else root)}


def _one_tokenizer_kind(recorded: Mapping[str, Any], explicit: Mapping[str, Any]) -> dict[str, Any]:
    """`recorded` without its tokenizer when `explicit` names the other kind: a tokenizer.json to use where one to
    train was recorded, or training settings where a file was. Their keys do not mix (`TokenizerConfig`)."""
    mine, theirs = explicit.get("tokenizer"), recorded.get("tokenizer")
    if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping):
        return dict(recorded)
    given_file = mine.get("file") is not None
    if given_file or (theirs.get("file") is not None and "file" not in mine):
        return {key: value for key, value in recorded.items() if key != "tokenizer"}
    return dict(recorded)


def _packed_dir_base(path: Path) -> dict[str, Any]:
    """A packed directory's data settings, from its manifest, rooted at its parent."""
    manifest = read_json(path / MANIFEST_FILE) or {}
    recorded = manifest.get("data")
    if not isinstance(recorded, dict):
        raise UsageError(
            f"--data {path}: its manifest does not record the settings it was packed with (an older alm)",
            hint="pass its data root or corpus.yaml instead",
        )
    base = {**recorded, "root": str(path.parent.expanduser().resolve())}
    expected = data_paths(from_dict(DataConfig, base, source=str(path / MANIFEST_FILE))).packed_dir.name
    if expected != path.name:
        raise UsageError(
            f"--data {path}: the directory was renamed (its settings put it at {expected})",
            hint="rename it back, or pass its data root",
        )
    return base


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`top` over `base`, section by section (lists, like `sources`, are replaced whole)."""
    merged = dict(base)
    for key, value in top.items():
        old = merged.get(key)
        merged[key] = _merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return merged


__all__ = [
    "CORPUS_FILE",
    "DEFAULT_ROOT",
    "read_settings",
    "resolve_data_arg",
    "resolve_data_config",
    "write_settings",
]
