"""What every pipeline stage (prepare, tokenizer, pack) shares: input signatures, the overwrite guard, atomic
JSON writes, file hashing and a progress bar that is silent off a terminal.

A stage records the inputs it was built from (its config section and the sha256 of its upstream output) in its
metadata file, plus a signature (sha256 of those inputs). A stage is up to date when the signature matches; an
output directory that holds something else — other inputs, or files alm did not write — is never overwritten
unless the caller passes force=True.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alm.errors import DataError
from alm.fileio import atomic_write_json as write_json_atomic

FORCE_HINT = "pass --force to rebuild it (the old files are replaced), or set data.root to another directory"


def signature(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when the file is absent; unreadable files are DataErrors."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc})", hint=FORCE_HINT) from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object", hint=FORCE_HINT)
    return data


def sha256_file(path: Path, *, offset: int = 0) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        f.seek(offset)
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """The dotted key where two input records first differ (to say *why* a stage is stale)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = first_difference(a, b, f"{prefix.rstrip('.')}[{i}].")
            if found:
                return found
        return None
    return None if old == new else (prefix.rstrip(".") or "<inputs>")


def check_output(
    directory: Path, meta_file: str, inputs: dict[str, Any], *, force: bool, what: str, rebuild: bool = False
) -> bool:
    """True when `directory` already holds this stage's output for exactly these inputs (nothing to do).

    False when the stage should build: the directory is missing or empty, `rebuild` is set (replacing output
    of the same inputs is always safe), or it holds other data and `force` is set. Otherwise raises DataError
    naming what differs, so nothing is overwritten by accident.
    """
    directory = Path(directory)
    if not directory.exists() or not any(directory.iterdir()):
        return False
    meta = read_json(directory / meta_file) if (directory / meta_file).is_file() else None
    if meta is not None and meta.get("signature") == signature(inputs):
        return not rebuild
    if force:
        return False
    if meta is None:
        raise DataError(
            f"{directory} already holds files that are not {what} written by alm; refusing to overwrite",
            hint=FORCE_HINT,
        )
    changed = first_difference(meta.get("inputs"), inputs) or "<inputs>"
    raise DataError(
        f"{directory} holds {what} built from different inputs ({changed} changed); refusing to overwrite",
        hint=FORCE_HINT,
    )


def announce(console: Any, message: str) -> None:
    """One line about a finished stage, when the caller gave us a console."""
    if console is not None:
        console.print(message, soft_wrap=True, highlight=False)


@contextlib.contextmanager
def progress_task(
    console: Any, description: str, total: float | None = None
) -> Iterator[Callable[[float], None]]:
    """A Rich progress bar on `console` that yields an `advance(n)` function; silent when not a terminal."""
    if console is None or not getattr(console, "is_terminal", False):
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


__all__ = [
    "FORCE_HINT",
    "announce",
    "check_output",
    "first_difference",
    "progress_task",
    "read_json",
    "sha256_file",
    "signature",
    "write_json_atomic",
]
