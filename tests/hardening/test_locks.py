"""`alm.locks` and the run directory's lock, against real other processes (a lock is only worth what a second
process sees of it)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from alm import locks
from alm.rundir import RunDir
from testkit.locks import hold


def test_a_second_process_is_refused_and_named(tmp_path: Path) -> None:
    path = tmp_path / "run" / "run.lock"
    other = hold(path)
    try:
        holder = locks.holder(path)
        assert holder is not None and holder.pid == other.pid and holder.exclusive
        with pytest.raises(locks.LockedError, match=rf"the run is in use by pid {other.pid}") as caught:
            locks.acquire(path, "the run", hint="wait")
        assert caught.value.exit_code == 2 and caught.value.hint == "wait"
    finally:
        other.kill()
        other.wait()
    # killed, not released: the OS dropped the lock with the process
    assert locks.holder(path) is None
    with locks.acquire(path, "the run") as lock:
        assert lock.exclusive and locks.read_holder(path).pid == os.getpid()
        stamp = path.stat().st_mtime_ns
    with locks.acquire(path, "the run"):  # taken again by the same process: the file is not touched
        assert path.stat().st_mtime_ns == stamp
    assert locks.holder(path) is None  # the pid left in the file means nothing without the lock


def test_readers_share_and_keep_writers_out(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    reader = hold(path, exclusive=False)
    try:
        with locks.acquire(path, "the run", exclusive=False):  # readers share
            pass
        with pytest.raises(locks.LockedError, match="another process reading it"):
            locks.acquire(path, "the run")
        assert locks.holder(path) is None  # no writer
    finally:
        reader.kill()
        reader.wait()
    locks.acquire(path, "the run").release()


def test_locks_are_reentrant_within_a_process(tmp_path: Path) -> None:
    path = tmp_path / "data.lock"
    outer = locks.acquire(path, "data")
    inner = locks.acquire(path, "data")  # a stage calling the stages before it
    inner.release()
    assert locks.holder(path) is not None  # the outer hold still counts
    outer.release()
    outer.release()  # releasing twice is harmless
    assert locks.holder(path) is None


def test_wait_for_takes_the_lock_once_its_holder_ends(tmp_path: Path) -> None:
    path = tmp_path / "data.lock"
    other = hold(path, seconds=1.0)
    seen: list[locks.Holder] = []
    started = time.monotonic()
    with locks.wait_for(path, on_wait=seen.append, poll_seconds=0.05):
        waited = time.monotonic() - started
        assert locks.holder(path) is not None
    other.wait()
    assert [h.pid for h in seen] == [other.pid] and waited > 0.3


def test_a_removed_lock_file_is_not_locked_twice(tmp_path: Path) -> None:
    """A holder that removes its lock file as it lets go must not leave one process holding the old file while
    another holds a new one."""
    path = tmp_path / "run.lock"
    lock = locks.acquire(path, "run")
    lock.release(remove=True)
    assert not path.exists()
    first = locks.acquire(path, "run")
    try:
        assert path.exists() and locks.holder(path) is not None
    finally:
        first.release()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_directory_this_process_cannot_write_needs_no_lock(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with locks.acquire(tmp_path / "data.lock", "data"):
            pass
    finally:
        tmp_path.chmod(0o700)


def test_probing_never_makes_a_writer_fail(tmp_path: Path) -> None:
    """The dashboard polls `holder()` on every run; a trainer starting meanwhile must still get its lock."""
    path = tmp_path / "run.lock"
    path.touch()
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            locks.holder(path)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(200):
            locks.acquire(path, "run").release()
    finally:
        stop.set()
        prober.join()


def test_a_run_is_live_while_its_lock_is_held(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert not run.is_live() and run.read_pid() is None
    other = hold(run.lock_path)
    try:
        assert run.is_live() and run.read_pid() == other.pid
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    run.pid_path.write_text(f"{os.getpid()}\n")  # a pid file left by a killed trainer no longer means "live"
    assert not run.is_live()
