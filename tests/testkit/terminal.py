"""Reading a child process's output from a pseudo-terminal, for tests that drive `alm` on a real TTY."""

from __future__ import annotations

import os
import select
import time


def read_until(fd: int, needle: bytes, timeout: float = 60.0) -> bytes:
    """Everything read from `fd` up to and including `needle` (or until the child closes the terminal)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {needle!r}; got {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen
