"""Another real process holding a lock (a lock is only worth what a second process sees of it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOLD = """
import sys, time
from alm import locks
lock = locks.acquire(sys.argv[1], "the thing", exclusive=sys.argv[2] == "x")
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold(path: Path, *, exclusive: bool = True, seconds: float = 60) -> subprocess.Popen:
    """Another process holding the lock at `path` until it is killed (or `seconds` pass)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "x" if exclusive else "s", str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc
