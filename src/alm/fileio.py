"""Atomic file writes, the one way alm replaces a file that another process may be reading (torch-free).

A write goes to a temp file in the target's directory, is flushed and fsync'ed, then `os.replace`d over the
target, and the directory is fsync'ed: readers see the old file or the whole new one, never a torn one,
whatever kills the process. Temp files carry `TMP_PREFIX`, so a later start can remove those a kill left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".tmp-"


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable; not supported everywhere, and the rename is atomic either way."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(fh)` on a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_link(source: str | Path, path: str | Path) -> Path:
    """Give the complete file `source` a second name `path`, atomically (a hard link, else a copy)."""
    source, path = Path(source), Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def keep_most_recent(directory: str | Path, pattern: str, keep: int) -> None:
    """Delete all but the `keep` most recently modified files matching `pattern` in `directory`: a store of
    rebuildable files, whose users touch what they load, so what is in use is kept."""

    def modified(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile by another process's pruning
            return 0.0

    for stale in sorted(Path(directory).glob(pattern), key=modified, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            stale.unlink()


def cache_root() -> Path | None:
    """Where alm keeps what it builds for this machine (compiled decode steps, native kernels): $ALM_CACHE_DIR,
    by default $XDG_CACHE_HOME/alm (or ~/.cache/alm); ALM_CACHE_DIR=off keeps nothing."""
    root = os.environ.get("ALM_CACHE_DIR", "")
    if root == "off":
        return None
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alm")
    return Path(root).expanduser()


def remove_stale_temp_files(directory: str | Path) -> None:
    """Delete temp files left by a write that was killed before its rename."""
    for tmp in Path(directory).glob(TMP_PREFIX + "*"):
        with contextlib.suppress(OSError):
            tmp.unlink()


__all__ = [
    "TMP_PREFIX",
    "atomic_link",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "keep_most_recent",
    "remove_stale_temp_files",
]
