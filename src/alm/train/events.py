"""The append-only `events.jsonl` writer (schema in docs/CONTRACTS.md); torch-free.

Each event is one JSON line, flushed as it is written so readers (the dashboard, `alm runs`) see it at once.
Non-finite floats become `null`: a NaN loss is reported through a `warning` event, and the file stays valid JSON.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any

SCHEMA = 1
EVENT_TYPES = ("start", "step", "eval", "sample", "checkpoint", "warning", "stop", "error")


def json_safe(value: Any) -> Any:
    """Replace NaN/Inf (anywhere in nested data) by None so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class EventWriter:
    """Appends events to one file; a disabled writer (non-zero rank) accepts events and writes nothing."""

    def __init__(self, path: str | Path, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._fh: IO[str] | None = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"schema": SCHEMA, "type": type_, "time": time.time(), **fields}
        if self._fh is not None:
            self._fh.write(json.dumps(json_safe(event), allow_nan=False, separators=(",", ":")) + "\n")
            self._fh.flush()
        return event

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
