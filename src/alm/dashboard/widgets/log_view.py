"""The trainer's stdout/stderr (runs/NAME/train.log), followed incrementally like `tail -f`."""

from __future__ import annotations

import os
from pathlib import Path

from textual.widgets import Log

# On first display only the end of a long log is read.
INITIAL_BYTES = 64 * 1024


class LogView(Log):
    def __init__(self, **kwargs):
        super().__init__(max_lines=5000, **kwargs)
        self._path: Path | None = None
        self._read_at = 0

    def follow(self, path: Path) -> None:
        """Append what was written to `path` since the last call (switching files starts over)."""
        if path != self._path:
            self._path, self._read_at = path, -1
            self.clear()
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if self._read_at < 0 or size < self._read_at:
                    self._read_at = max(0, size - INITIAL_BYTES)
                if size == self._read_at:
                    return
                fh.seek(self._read_at)
                data = fh.read()
        except FileNotFoundError:
            return
        self._read_at += len(data)
        # Rich progress output uses carriage returns to redraw a line; show each redraw as a line.
        self.write(data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n"))
