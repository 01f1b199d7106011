"""The run directory layout (docs/CONTRACTS.md) and run-name resolution; torch-free.

```
runs/NAME/config.yaml  tokenizer.json  events.jsonl  train.pid  train.log  run.lock
          checkpoints/{step-000100,last,best}.pt
```
The trainer writes it (`alm.train`); `alm.runs`, the dashboard and `alm sample`/`alm eval` read it through here.
A process writing a run holds the exclusive lock on `run.lock` (`alm.locks`) for its whole life: that, not the
pid file, is what makes a run live.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from alm import locks
from alm.errors import UsageError

DEFAULT_RUNS_ROOT = Path("runs")
CHECKPOINT_KINDS = ("last", "best")
# What the trainer writes beside checkpoints/; `alm train --overwrite` removes exactly these and nothing else.
RUN_FILES = ("config.yaml", "tokenizer.json", "tokenizer.meta.json", "events.jsonl", "train.pid")
LOCK_FILE = "run.lock"
SHARDED_PREFIX = "dcp-"  # FSDP2 runs' sharded checkpoint directories (alm.train.sharded)


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
    def log_path(self) -> Path:
        """stdout + stderr of a trainer the dashboard launched."""
        return self.path / "train.log"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

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

    def checkpoint_files(self) -> list[Path]:
        """What alm wrote in checkpoints/ (last, best, step-N, sharded runs' dcp-* directories and interrupted
        temp files), nothing else."""
        from alm.fileio import TMP_PREFIX

        if not self.checkpoints_dir.is_dir():
            return []
        named = [self.checkpoints_dir / f"{kind}.pt" for kind in CHECKPOINT_KINDS]
        steps = [path for _, path in self.step_checkpoints()]
        found = [
            *self.checkpoints_dir.glob(TMP_PREFIX + "*"),
            *self.checkpoints_dir.glob(SHARDED_PREFIX + "*"),
        ]
        return [p for p in named if p.is_file()] + steps + found

    def is_populated(self) -> bool:
        """Whether a run already lives here (anything the trainer writes)."""
        return any(p.exists() for p in (self.config_path, self.events_path, self.checkpoints_dir))

    def is_alm_run(self) -> bool:
        """Whether alm wrote this directory: events.jsonl opens with a `start` event, or config.yaml is a run's
        (model, train and data sections; an alm model). `--overwrite` clears nothing else: a user's folder that
        happens to hold a checkpoints/ or a config.yaml is not a run."""
        with contextlib.suppress(OSError, ValueError):
            with open(self.events_path, "rb") as fh:
                first = json.loads(fh.readline(1 << 20))
            if isinstance(first, dict) and first.get("type") == "start":
                return True
        with contextlib.suppress(Exception):  # any YAML error means "not ours"
            import yaml

            config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
            model = config.get("model") if isinstance(config, dict) else None
            sections = {"model", "train", "data"} <= set(config)
            return sections and isinstance(model, dict) and "d_model" in model
        return False

    def writer(self) -> locks.Holder | None:
        """The process writing this run (training, resuming, importing), if any: whoever holds its lock."""
        return locks.holder(self.lock_path)

    def read_pid(self) -> int | None:
        writer = self.writer()
        if writer is not None and writer.pid:
            return writer.pid
        with contextlib.suppress(OSError, ValueError):
            return int(self.pid_path.read_text().strip())
        return None

    def is_live(self) -> bool:
        """A process is writing this run right now: it holds the run's lock (released by the OS however the
        process ends, so a killed trainer never looks live, and a reused pid never fools it). A run without a
        lock file was written before runs had one: its pid file decides."""
        if self.lock_path.exists():
            return self.writer() is not None
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
    """Where a run called `name_or_path` lives: a bare name goes under `root`, anything path-like is used as is.
    A run is a directory of its own: `.`, `..` or a path ending in them would spread its files over another."""
    text = str(name_or_path)
    if not text.strip():
        raise UsageError("the run name is empty", hint="name it with --run NAME")
    if Path(text).name in ("", ".", "..") or text.rstrip("/").endswith(("/.", "/..")) or "\0" in text:
        raise UsageError(
            f"{text!r} cannot name a run: it would put the run's files into an existing directory",
            hint="name it with --run NAME (a new directory under the runs directory), or a path ending in one",
        )
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
