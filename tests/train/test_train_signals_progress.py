"""Stop signals, the events writer and the reporter, and the terminal progress that renders events."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from alm.events import (
    CheckpointEvent,
    EvalEvent,
    EventWriter,
    StartEvent,
    StepEvent,
    WarningEvent,
    read_events,
)
from alm.train.progress import PlainProgress, make_progress
from alm.train.report import Reporter
from alm.train.signals import StopRequest


def test_first_signal_sets_the_flag_and_the_second_interrupts() -> None:
    # What the process started with: default_int_handler, or SIG_IGN under a shell's `cmd &` without job control.
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest(announce=False)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.reason == "Ctrl+C"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_second_signal_during_a_save_waits_for_the_save() -> None:
    stop = StopRequest(announce=False)
    finished = []
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason == "SIGTERM"
        # the second signal is raised only after the critical section completed
        with pytest.raises(KeyboardInterrupt), stop.critical():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("rename done")
    assert finished == ["rename done"]


GUARDS = {  # the trainer's handlers, and the planning before them (rank 0 failed while planning the run)
    "training": "StopRequest(announce=False, exiting=True, supervised={supervised}).installed()",
    "planning": "interrupt_on_sigterm(supervised={supervised})",
}


@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("supervised", [True, False])
def test_a_supervised_rank_that_failed_outlives_the_supervisors_sigterm(guard: str, supervised: bool) -> None:
    """torchrun SIGTERMs the other processes as soon as one dies: a rank that lost its peer must still get its
    error out (the CI saw it die with -15 in between); a process on its own keeps the default stop."""
    script = f"""
import os, signal
from alm.train.signals import StopRequest, interrupt_on_sigterm
try:
    with {GUARDS[guard].format(supervised=supervised)}:
        raise RuntimeError("gloo: connection reset by peer")
except RuntimeError:
    os.kill(os.getpid(), signal.SIGTERM)  # torchrun's stop, while the error is on its way out
    print("error: rank 1: another process of this run stopped answering", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    if supervised:
        assert done.returncode == 0 and "stopped answering" in done.stdout, done.stderr
    else:
        assert done.returncode == -signal.SIGTERM and not done.stdout


def test_events_are_strict_json_lines_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.write(StepEvent(step=1, loss=float("nan"), router={"frac": [0.5, float("inf")]}))
    lines = path.read_text().splitlines()  # readable before close: flushed per line
    event = json.loads(lines[0])
    assert event["schema"] == 1 and event["type"] == "step" and isinstance(event["time"], float)
    assert event["loss"] is None and event["router"] == {"frac": [0.5, None]}
    writer.close()
    assert read_events(path)[0] == StepEvent(time=event["time"], step=1, router={"frac": [0.5, None]})


def test_disabled_writer_writes_nothing(tmp_path: Path) -> None:
    Reporter()(StartEvent(run="x"))  # a non-zero rank reports to no sink
    EventWriter(tmp_path / "events.jsonl").close()  # a writer for a run that never started
    assert not (tmp_path / "events.jsonl").exists()


def test_one_report_reaches_the_events_file_and_the_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = make_progress("plain", Console(file=out, force_terminal=False, width=200))
    with Reporter(EventWriter(tmp_path / "events.jsonl"), progress) as report:
        report(WarningEvent(step=3, message="loss spike"))
    assert [e.type for e in read_events(tmp_path / "events.jsonl")] == ["warning"]
    assert "warning: loss spike" in out.getvalue()


def _run_events(total: int = 100) -> list:
    start = StartEvent(run="run-x", total_steps=total, device={"device": "cpu", "precision": "fp32"})
    step = StepEvent(step=10, tokens=640, loss=2.5, loss_ema=2.7, lr=3e-4, grad_norm=0.5, tok_per_s=1200.0)
    return [start, step]


def test_plain_progress_prints_lines_without_terminal_codes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    progress = make_progress("auto", console)
    assert isinstance(progress, PlainProgress)
    for event in _run_events():
        progress.write(event)
    progress.write(EvalEvent(step=10, val_loss=2.6, val_ppl=13.5, val_bpb=1.9, best_val_loss=2.6))
    progress.close()
    text = out.getvalue()
    assert "step 10/100" in text and "loss 2.5000" in text and "1.2k" in text and "eval step 10" in text
    assert "val loss 2.6000" in text and "(best)" in text and "lr 3.00e-04" in text
    assert "\x1b[" not in text


def test_rich_progress_renders_a_panel() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    progress = make_progress("rich", console)
    start = StartEvent(run="run-x", total_steps=50, device={"device": "cpu", "precision": "fp32"})
    for event in (
        start,
        StepEvent(step=25, tokens=1000, loss=1.25),
        EvalEvent(step=25, val_loss=1.5, best_val_loss=1.5),
        CheckpointEvent(step=25, path="runs/run-x/checkpoints/last.pt", kind="last"),
    ):
        progress.write(event)
    progress.close()
    text = out.getvalue()
    assert "run-x" in text and "step 25/50" in text and "50.0%" in text and "checkpoint step 25" in text
    assert "last.pt" in text and "1.5000" in text  # the best val loss, from the same fold as `alm runs`


def test_none_progress_prints_nothing() -> None:
    out = io.StringIO()
    progress = make_progress("none", Console(file=out, width=120))
    for event in [*_run_events(), WarningEvent(step=10, message="x")]:
        progress.write(event)
    assert out.getvalue() == ""
    assert progress.summary.step == 10  # it still follows the run
