"""Running `alm` as real processes (one, or several under torchrun) on a micro model, and reading what runs
wrote. Imported by the tests in this directory (pytest puts it on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from alm.events import CheckpointEvent, EvalEvent, Event, StartEvent, StepEvent, StopEvent, read_events
from testkit.tiny_data import TINY_TRAIN

# tests/train's tiny run with a micro model, 20 steps and a save and an eval every 10: each process takes well
# under a second a step on a 2-core CPU.
MICRO_MODEL = {"d_model": 32, "n_layers": 2, "n_heads": 2, "max_seq_len": 32}
MICRO_TRAIN = {
    **TINY_TRAIN,
    **{"steps": 20, "batch_size": 2, "eval_interval": 10, "eval_batches": 3, "ckpt_interval": 10},
    "progress": "plain",
}
TOLERANCE = 1e-5  # relative, per step (the bound; fp32 on the CPU reaches ~1e-7, see the tests)


def write_configs(work: Path) -> tuple[Path, Path]:
    model, train = work / "micro-model.yaml", work / "micro-train.yaml"
    model.write_text(yaml.safe_dump(MICRO_MODEL))
    train.write_text(yaml.safe_dump(MICRO_TRAIN))
    return model, train


def env() -> dict[str, str]:
    """One CPU thread per process: the processes of a launch share two cores with the test runner."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def alm(work: Path, *args: str, timeout: float = 300, merge: bool = True) -> subprocess.CompletedProcess[str]:
    """`alm ARGS` in `work` as a real process; stdout with stderr (or stderr apart when not `merge`)."""
    return subprocess.run(
        [sys.executable, "-m", "alm", *args],
        cwd=work,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


def start(work: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "alm", *args],
        cwd=work,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, found, timeout: float = 240) -> list[Event]:
    """The events of `path` once `found(events)` holds (polled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(path)
        if found(events):
            return events
        time.sleep(0.05)
    raise AssertionError(f"{path}: not found within {timeout} s")


def events(run: Path) -> list[Event]:
    return read_events(run / "events.jsonl")


def losses(run: Path, after_start: int = 0) -> dict[int, float]:
    """Step -> loss of the step events after the start number `after_start` (0: the first launch)."""
    starts, out = -1, {}
    for event in events(run):
        if isinstance(event, StartEvent):
            starts += 1
        elif isinstance(event, StepEvent) and starts >= after_start and event.loss is not None:
            out[int(event.step or 0)] = event.loss
    return out


def val_losses(run: Path) -> dict[int, float]:
    return {int(e.step or 0): e.val_loss for e in events(run) if isinstance(e, EvalEvent) and e.val_loss}


def starts(run: Path) -> list[StartEvent]:
    return [e for e in events(run) if isinstance(e, StartEvent)]


def stops(run: Path) -> list[StopEvent]:
    return [e for e in events(run) if isinstance(e, StopEvent)]


def saves(run: Path) -> list[CheckpointEvent]:
    return [e for e in events(run) if isinstance(e, CheckpointEvent)]


def max_relative_difference(got: dict[int, float], want: dict[int, float]) -> float:
    assert got and set(got) <= set(want), (sorted(got), sorted(want))
    return max(abs(got[step] - want[step]) / abs(want[step]) for step in got)
