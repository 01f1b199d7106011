"""Advisory file locks (`fcntl.flock`) that keep two alm processes from writing the same run or data root.

A writer (`alm train`, `alm resume`, a data stage) holds an exclusive lock on a small lock file for as long as it
writes; the OS releases it when the process ends however it ends (kill -9 included), so a stale lock cannot
exist. The holder writes its pid and command into the file after locking, so the loser can name it. A reader
that must not see its files replaced under it (an export of a run that could be `--overwrite`n) takes a shared
lock; readers that tolerate atomic replacement (sampling a live run) only ask `holder()`. Torch-free.

Locks are re-entrant within a process (nested data stages, a plan and its trainer): the OS lock is per open file,
so this module keeps one per path and counts. Two threads of one process therefore share a lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alm.errors import UsageError


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: the pid and command an exclusive holder wrote (None/"" for shared holders)."""

    pid: int | None
    command: str
    exclusive: bool

    def describe(self) -> str:
        if not self.exclusive:
            return "another process reading it"
        who = f"pid {self.pid}" if self.pid else "another process"
        return f"{who}: {self.command}" if self.command else who


class LockedError(UsageError):
    """The lock is held by another process (exit 2)."""

    def __init__(self, message: str, holder: Holder, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.holder = holder


@dataclass
class _Entry:
    fd: int
    exclusive: bool
    count: int


_held: dict[str, _Entry] = {}
_ATTEMPTS = 20
_READERS = Holder(None, "", exclusive=False)
_NO_FILE = (-1, False)
_guard = threading.Lock()


def _key(path: Path) -> str:
    return os.path.join(os.path.realpath(path.parent), path.name)


def _command() -> str:
    return shlex.join(["alm", *sys.argv[1:]])[:300]


def _try_flock(fd: int, exclusive: bool) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file `fd` locked (a holder may remove its lock file as it releases)."""
    try:
        on_disk, ours = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)


def _open(path: Path) -> tuple[int, bool]:
    """(fd, writable) of the lock file, created if missing; `_NO_FILE` where it cannot exist (a read-only or
    foreign directory: this process cannot write there either, so there is nothing to guard)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644), True
    except (PermissionError, OSError) as exc:
        if not isinstance(exc, PermissionError) and exc.errno != errno.EROFS:
            raise
    try:
        return os.open(path, os.O_RDONLY), False  # another user's lock file: flock works on a read-only fd
    except OSError:
        return _NO_FILE


def _open_locked(path: Path, exclusive: bool) -> tuple[int, bool] | None:
    """(fd, writable) of `path` locked as asked (or `_NO_FILE`); None when another process holds a conflicting
    lock."""
    while True:
        opened = _open(path)
        fd = opened[0]
        if opened == _NO_FILE:
            return opened
        if not _try_flock(fd, exclusive):
            os.close(fd)
            return None
        if _same_file(fd, path):
            return opened
        os.close(fd)  # we locked a file its holder removed as it let go: lock the current one instead


def _sign(fd: int) -> None:
    """Write this process's pid and command into the lock file — only when they differ from what it holds, so
    taking a lock again does not touch the file (a data root that is up to date stays untouched)."""
    text = f"{os.getpid()}\n{_command()}\n".encode()
    with contextlib.suppress(OSError):
        if os.pread(fd, len(text) + 1, 0) != text:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text, 0)


def read_holder(path: Path) -> Holder:
    """What an exclusive holder wrote into the lock file (pid, command); empty if nothing readable."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    return Holder(pid, lines[1].strip() if len(lines) > 1 else "", True)


def holder(path: str | Path) -> Holder | None:
    """The process writing under the lock at `path` (another process, or this one through another lock), without
    taking it; None when no writer holds it. The probe is a shared lock held for microseconds, never an
    exclusive one, so polling it (the dashboard does) cannot make a writer's start fail."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return None if _try_flock(fd, exclusive=False) else read_holder(path)
    finally:
        os.close(fd)  # closing drops the probe's lock


class FileLock:
    """A held lock; `release()` (or leaving the `with` block, or the process ending) lets it go."""

    def __init__(self, path: Path, exclusive: bool):
        self.path, self.exclusive = path, exclusive
        self._released = False

    def release(self, *, remove: bool = False) -> None:
        """Let the lock go; with `remove`, delete the lock file first (while still holding it, so a process
        waiting on the old file notices and locks a new one)."""
        if self._released:
            return
        self._released = True
        with _guard:
            entry = _held.get(_key(self.path))
            if entry is None:
                return
            entry.count -= 1
            if entry.count > 0:
                return
            del _held[_key(self.path)]
            if remove:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            os.close(entry.fd)  # the pid stays in the file: only a held lock makes it mean anything

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()


def try_acquire(path: str | Path, *, exclusive: bool = True) -> FileLock | Holder:
    """Take the lock at `path` without waiting: the lock, or who holds it."""
    path = Path(path)
    key = _key(path)
    with _guard:
        entry = _held.get(key)
        if entry is not None:  # re-entrant: this process holds it already
            if exclusive and not entry.exclusive:
                if not _try_flock(entry.fd, exclusive=True):
                    return holder(path) or _READERS
                entry.exclusive = True
            entry.count += 1
            return FileLock(path, exclusive)
        for _ in range(_ATTEMPTS):
            opened = _open_locked(path, exclusive)
            if opened is not None:
                break
            writer = holder(path)
            if writer is not None:
                return writer
            time.sleep(0.01)  # readers hold it, or a prober for a moment: try again before giving up
        else:
            return _READERS
        if opened == _NO_FILE:
            return FileLock(path, exclusive)  # holds nothing: see `_open`
        fd, writable = opened
        if exclusive and writable:
            _sign(fd)
        _held[key] = _Entry(fd, exclusive, 1)
        return FileLock(path, exclusive)


def acquire(path: str | Path, what: str, *, exclusive: bool = True, hint: str | None = None) -> FileLock:
    """Take the lock at `path` now, or raise LockedError saying `what` is in use and by whom."""
    got = try_acquire(path, exclusive=exclusive)
    if isinstance(got, FileLock):
        return got
    raise LockedError(f"{what} is in use by {got.describe()}", got, hint=hint)


def wait_for(
    path: str | Path,
    *,
    exclusive: bool = True,
    on_wait: Callable[[Holder], None] | None = None,
    poll_seconds: float = 0.2,
) -> FileLock:
    """Take the lock at `path`, waiting as long as another process holds it (`on_wait(holder)` is called once
    when the wait begins). Polls rather than blocks, so Ctrl+C and SIGTERM stop the wait as usual."""
    told = False
    while True:
        got = try_acquire(path, exclusive=exclusive)
        if isinstance(got, FileLock):
            return got
        if not told and on_wait is not None:
            on_wait(got)
            told = True
        time.sleep(poll_seconds)


__all__ = ["FileLock", "Holder", "LockedError", "acquire", "holder", "read_holder", "try_acquire", "wait_for"]
