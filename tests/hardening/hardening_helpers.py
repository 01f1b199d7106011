"""Running `alm` the way a user does (a real subprocess, or in-process through Typer's runner) on the tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from alm.cli.app import app
from alm.events import StepEvent, read_events

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train_args(tiny, run: str | Path, *sets: str, runs_dir: Path | None = None) -> list[str]:
    """`alm train` of the tiny model on the tiny data, checkpoint every 2 steps, quiet."""
    args = ["train", "--model", str(tiny.model_yaml), "--train", str(tiny.train_yaml), "--data"]
    args += [str(tiny.corpus_yaml), "--run", str(run), "--device", "cpu", "--progress", "plain"]
    args += [
        "--set",
        "train.warmup_steps=1",
        "--set",
        "train.ckpt_interval=2",
        "--set",
        "train.eval_interval=0",
    ]
    for item in sets:
        args += ["--set", item]
    return args + (["--runs-dir", str(runs_dir)] if runs_dir is not None else [])


def alm(args: list[str], cwd: Path, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        **kw,
    )


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "alm", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(isinstance(e, StepEvent) and (e.step or 0) >= step for e in read_events(run / "events.jsonl")):
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"trainer exited early ({proc.returncode}): {out[-2000:]} {err[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no step {step} within {timeout}s")


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(app, args)


def no_traceback(output: str) -> bool:
    return "Traceback" not in output and "Exception ignored" not in output
