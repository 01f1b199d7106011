"""What every pipeline stage (prepare, tokenizer, pack) shares: input signatures, the overwrite guard, atomic
JSON writes, file hashing and a progress bar that is silent off a terminal.

A stage records the inputs it was built from (its own settings and the digests of its upstream output) in its
metadata file, plus a signature (sha256 of those inputs). A stage is up to date when the signature matches. When
only upstream digests changed the old output is stale by construction and is rebuilt; an output directory that
holds something else — built with other settings of its own, or files alm did not write — is never overwritten
unless the caller passes force=True (a refusal is a UsageError: exit 2, like any request alm will not carry out).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alm.errors import DataError, UsageError
from alm.fileio import atomic_write_json as write_json_atomic

FORCE_HINT = (
    "rebuild it with --force (`alm data prepare`, `alm tokenizer train` and `alm pack` take it), "
    "or build elsewhere with --set data.root=DIR"
)


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
    directory: Path,
    meta_file: str,
    inputs: dict[str, Any],
    *,
    what: str,
    force: bool = False,
    rebuild: bool = False,
    derived: tuple[str, ...] = (),
    hint: str = FORCE_HINT,
) -> str | None:
    """Why `directory` must be built for `inputs`, or None when it already holds exactly that output.

    Builds when the directory is missing or empty, when `rebuild` is set (replacing output of the same inputs is
    always safe), when only the `derived` inputs (upstream digests) changed, or when it holds other output and
    `force` is set. Otherwise raises UsageError naming what differs, so nothing is overwritten by accident.
    """
    directory = Path(directory)
    if not directory.exists() or not any(directory.iterdir()):
        return "not built yet"
    meta = read_json(directory / meta_file) if (directory / meta_file).is_file() else None
    if meta is not None and meta.get("signature") == signature(inputs):
        return "rebuild requested" if rebuild else None
    old = meta.get("inputs") if meta is not None else None
    changed = (first_difference(old, inputs) if isinstance(old, dict) else None) or "<inputs>"
    own = [k for k in inputs if k not in derived]
    if (
        isinstance(old, dict)
        and first_difference({k: old.get(k) for k in own}, {k: inputs[k] for k in own}) is None
    ):
        return f"{changed} changed"  # only upstream digests moved: the old output is stale by construction
    if force:
        return "forced"
    if meta is None:
        raise UsageError(
            f"{directory} already holds files that are not {what} written by alm; refusing to overwrite",
            hint=hint,
        )
    raise UsageError(
        f"{directory} holds {what} built from different inputs ({changed} changed); refusing to overwrite",
        hint=hint,
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
