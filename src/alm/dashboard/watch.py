"""Follow run directories on disk: one incremental tail + folded state per run, plus trainer liveness.

`alm.runs.list_runs` re-reads every events.jsonl whole, which is right for a one-shot `alm runs list` but not for
a view refreshed several times a second; here each run keeps its file offset and folds only new events.
"""

from __future__ import annotations

from pathlib import Path

from alm.dashboard.events import EventTail
from alm.dashboard.state import RunState
from alm.rundir import RunDir
from alm.summary import RunStatus


def discover_runs(runs_dir: Path) -> list[RunDir]:
    """Run directories directly under `runs_dir` (anything a trainer wrote, or just the log of one that failed
    before writing anything), sorted by name."""
    if not runs_dir.is_dir():
        return []
    runs = (RunDir(p) for p in runs_dir.iterdir() if p.is_dir())
    return sorted((r for r in runs if r.is_populated() or r.log_path.exists()), key=lambda r: r.name)


class RunWatch:
    """One run being followed: `poll()` reads only new events and re-checks the trainer's pid."""

    def __init__(self, run_dir: Path):
        self.run = RunDir(run_dir)
        self.state = RunState(self.run.name)
        self.tail = EventTail(self.run.events_path)
        self.alive = False

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def path(self) -> Path:
        return self.run.path

    def poll(self, *, child_alive: bool = False) -> bool:
        """Read new events; return whether anything visible changed. `child_alive` covers a trainer this
        process launched whose pid file is not written yet."""
        before = (self.state.version, self.alive)
        events = self.tail.poll()
        if self.tail.reset:  # file replaced or truncated: rebuild from scratch
            self.state = RunState(self.name)
        self.state.extend(events)
        self.alive = child_alive or self.run.is_live()
        return (self.state.version, self.alive) != before

    @property
    def status(self) -> RunStatus:
        return self.state.status(self.alive)


class RunBook:
    """All runs under a runs directory, each followed incrementally; new directories are picked up on refresh."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.watches: dict[str, RunWatch] = {}

    def get(self, name: str) -> RunWatch:
        if name not in self.watches:
            self.watches[name] = RunWatch(self.runs_dir / name)
        return self.watches[name]

    def refresh(self, live_children: frozenset[str] = frozenset()) -> bool:
        """Poll every run; return whether anything changed (a run appeared, vanished or moved on)."""
        names = {r.name for r in discover_runs(self.runs_dir)} | {
            name for name in live_children if (self.runs_dir / name).is_dir()
        }
        changed = bool(set(self.watches) - names)
        for gone in set(self.watches) - names:
            del self.watches[gone]
        for name in sorted(names):
            changed |= self.get(name).poll(child_alive=name in live_children)
        return changed

    def ordered(self) -> list[RunWatch]:
        """Most recently active first; runs without events yet last, by name."""
        return sorted(self.watches.values(), key=lambda w: (-(w.state.last_time or 0.0), w.name))
