"""Writing an export or an imported run so that it is never half there: every file goes into a hidden temp
sibling of the target, which is renamed into place only once complete. A failure (or Ctrl+C) removes the temp
and any parent directories this write created, so nothing partial is left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from alm.errors import AlmError, UsageError
from alm.fileio import TMP_PREFIX, fsync_dir

Kind = Literal["directory", "file"]


def check_target(target: Path, kind: Kind, *, force: bool, flag: str = "--out") -> None:
    """Refuse, before any work, to replace something without `--force`, or a file with a directory."""
    if target.is_dir() and kind == "file":
        raise UsageError(f"{target} is a directory", hint=f"give {flag} a file name ending in .gguf")
    if target.exists() and not target.is_dir() and kind == "directory":
        raise UsageError(f"{target} exists and is not a directory", hint=f"choose another {flag}")
    occupied = target.is_dir() and any(target.iterdir()) if kind == "directory" else target.exists()
    if occupied and not force:
        what = "is not empty" if kind == "directory" else "exists"
        raise UsageError(f"{target} {what}", hint=f"pass --force to replace it, or choose another {flag}")


@contextlib.contextmanager
def staged(target: Path, kind: Kind, *, force: bool, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp path (a directory, or a file name) beside `target`; on success it replaces `target`."""
    check_target(target, kind, force=force, flag=flag)
    created = _make_parents(target.parent)
    try:
        tmp = _make_temp(target, kind)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield tmp
        _sync(tmp)
        _replace(tmp, target)
    except BaseException:
        _remove(tmp)
        _remove_empty(created)
        raise
    fsync_dir(target.parent)


def _unwritable(path: Path, exc: OSError) -> AlmError:
    return AlmError(
        f"cannot write to {path}: {exc.strerror or exc}", hint="choose a writable location with --out"
    )


def _make_parents(directory: Path) -> list[Path]:
    """Create `directory` and its missing ancestors; return those created, deepest first."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists():
            break
        missing.append(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise _unwritable(directory, exc) from None
    return missing


def _make_temp(target: Path, kind: Kind) -> Path:
    """A fresh hidden name beside `target`, created with the umask's permissions (tempfile's are owner-only,
    which the renamed export would keep)."""
    for _ in range(100):
        tmp = target.parent / f"{TMP_PREFIX}{target.name}.{secrets.token_hex(4)}"
        try:
            if kind == "directory":
                tmp.mkdir()
            else:
                tmp.open("xb").close()
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise _unwritable(target.parent, exc) from None
    raise AlmError(f"cannot create a temporary name in {target.parent}")


def _sync(tmp: Path) -> None:
    """Flush what was written to disk before the rename publishes it."""
    for path in [p for p in tmp.rglob("*") if p.is_file()] if tmp.is_dir() else [tmp]:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _replace(tmp: Path, target: Path) -> None:
    """Rename `tmp` over `target`; an existing directory is moved aside first and removed after."""
    if tmp.is_dir() and target.exists():
        old = tmp.with_name(tmp.name + ".old")
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(old, target)  # put the previous export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:  # deepest first; one still holding something else stays
        with contextlib.suppress(OSError):
            directory.rmdir()


__all__ = ["Kind", "check_target", "staged"]
