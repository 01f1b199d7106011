"""Run directory layout (docs/CONTRACTS.md) and run-name resolution; torch-free.

```
runs/NAME/config.yaml  tokenizer.json  events.jsonl  train.pid  checkpoints/{step-000100,last,best}.pt
```
"""

from __future__ import annotations

import contextlib
import difflib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from alm.errors import UsageError

DEFAULT_RUNS_ROOT = Path("runs")
CHECKPOINT_KINDS = ("last", "best")


def rank_info() -> tuple[int, int]:
    """(rank, world_size) from the torchrun environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 writes files and prints."""
    return rank_info()[0] == 0


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def pid_path(self) -> Path:
        return self.path / "train.pid"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str | int) -> Path:
        """`last`, `best`, a step number or `step-N` -> the checkpoint's path (which may not exist)."""
        if isinstance(which, int) or str(which).isdigit():
            return self.checkpoints_dir / step_checkpoint_name(int(which))
        which = str(which)
        if which in CHECKPOINT_KINDS:
            return self.checkpoints_dir / f"{which}.pt"
        if which.startswith("step-") and which[5:].isdigit():
            return self.checkpoints_dir / step_checkpoint_name(int(which[5:]))
        raise UsageError(f"unknown checkpoint {which!r}", hint="use last, best, a step number or step-N")

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """Existing `step-N.pt` files, oldest first."""
        found = []
        for path in self.checkpoints_dir.glob("step-*.pt"):
            digits = path.stem[5:]
            if digits.isdigit():
                found.append((int(digits), path))
        return sorted(found)

    def is_populated(self) -> bool:
        """Whether a run already lives here (anything the trainer writes)."""
        return any(p.exists() for p in (self.config_path, self.events_path, self.checkpoints_dir))

    def read_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_path.read_text().strip())
        return None

    def is_live(self) -> bool:
        """A trainer is running here: the pid file names a live process that looks like alm."""
        pid = self.read_pid()
        return pid is not None and pid_alive(pid)


def step_checkpoint_name(step: int) -> str:
    return f"step-{step:06d}.pt"


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process; on Linux also that it is a Python/alm process (pids get reused)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the signal probe
    return b"alm" in cmdline or b"python" in cmdline


def default_run_name(preset: str, now: float | None = None) -> str:
    """`20250101-120000-micro`: sortable, and says what was trained."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in preset) or "run"
    return f"{stamp}-{safe}"


def run_path(name_or_path: str | Path, root: str | Path = DEFAULT_RUNS_ROOT) -> Path:
    """Where a run called `name_or_path` lives: a bare name goes under `root`, anything path-like is used as is."""
    text = str(name_or_path)
    if not text.strip():
        raise UsageError("the run name is empty")
    if os.sep in text or "/" in text or text.startswith("."):
        return Path(text)
    return Path(root) / text


def resolve_run_dir(name_or_path: str | Path, root: str | Path = DEFAULT_RUNS_ROOT) -> RunDir:
    """An existing run by name (under `root`) or path; a mistyped name is an error that suggests close names."""
    candidates = [Path(name_or_path), Path(root) / str(name_or_path)]
    for path in candidates:
        if path.is_dir() and RunDir(path).is_populated():
            return RunDir(path)
    known = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
    close = difflib.get_close_matches(str(name_or_path), known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "`alm runs list` shows the runs"
    where = f"under {root}/" if Path(root).is_dir() else f"({root}/ does not exist)"
    raise UsageError(f"no run {str(name_or_path)!r} {where}", hint=hint)
