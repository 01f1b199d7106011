"""Incremental reading of an append-only events.jsonl: each poll reads only the bytes added since the last one."""

from __future__ import annotations

import os
from pathlib import Path

from alm.events import Event, decode, parse_lines

# One poll reads at most this much, so a huge backlog (replaying a long run) cannot stall the UI thread;
# the rest comes on the following polls.
MAX_READ_BYTES = 4 * 1024 * 1024


class EventTail:
    """Follows one events.jsonl file, remembering the byte offset of the first unread complete line.

    A line is consumed only once its newline has been written, so a record caught half-written by the trainer
    is picked up whole on the next poll. If the file shrinks or is replaced (a new inode), reading starts over
    and `reset` is set so the caller can rebuild its state.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.bad_lines = 0
        self.reset = False
        self._inode: int | None = None

    def poll(self, max_bytes: int = MAX_READ_BYTES) -> list[Event]:
        """Return the events appended since the last call (possibly none); malformed lines are counted, skipped."""
        self.reset = False
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_ino != self._inode or st.st_size < self.offset:
                    self.reset = self._inode is not None
                    self._inode, self.offset, self.bad_lines = st.st_ino, 0, 0
                if st.st_size == self.offset:
                    return []
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:  # no complete line yet (or one line longer than max_bytes: wait for a bigger read)
            if len(chunk) >= max_bytes:
                return self.poll(max_bytes * 2)
            return []
        self.offset += end + 1
        records, bad = parse_lines(chunk[: end + 1])
        self.bad_lines += bad
        return [decode(record) for record in records]
