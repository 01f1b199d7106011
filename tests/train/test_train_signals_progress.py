"""Stop signals, the events writer and progress formatting."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
from rich.console import Console

from alm.train.events import EventWriter
from alm.train.progress import PlainProgress, RateMeter, format_count, format_duration, make_progress
from alm.train.signals import StopRequest


def test_first_signal_sets_the_flag_and_the_second_interrupts() -> None:
    stop = StopRequest(announce=False)
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.reason == "Ctrl+C"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


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


def test_events_are_strict_json_lines_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path)
    writer.emit("step", step=1, loss=float("nan"), router={"frac": [0.5, float("inf")]})
    lines = path.read_text().splitlines()  # readable before close: flushed per line
    event = json.loads(lines[0])
    assert event["schema"] == 1 and event["type"] == "step" and isinstance(event["time"], float)
    assert event["loss"] is None and event["router"] == {"frac": [0.5, None]}
    writer.close()


def test_disabled_writer_writes_nothing(tmp_path: Path) -> None:
    EventWriter(tmp_path / "events.jsonl", enabled=False).emit("start", run="x")
    assert not (tmp_path / "events.jsonl").exists()


def test_formatting() -> None:
    assert format_duration(9.4) == "9s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3725) == "1h02m"
    assert format_duration(None) == "--"
    assert format_count(999) == "999"
    assert format_count(1234) == "1.2k"
    assert format_count(5_600_000) == "5.6M"


def test_rate_meter_eta() -> None:
    meter = RateMeter()
    meter.add(0, now=0.0)
    meter.add(10, now=5.0)
    assert meter.steps_per_second() == 2.0
    assert meter.eta(100) == 50.0


def test_plain_progress_prints_lines_without_terminal_codes() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    progress = make_progress("auto", 100, console=console)
    assert isinstance(progress, PlainProgress)
    with progress:
        progress.start(0, 0)
        progress.advance(10, 640)
        progress.update({"loss": 2.5, "loss_ema": 2.7, "lr": 3e-4, "grad_norm": 0.5, "tok_per_s": 1200.0})
        progress.note("eval step 10: val loss 2.6")
    text = out.getvalue()
    assert "step 10/100" in text and "loss 2.5000" in text and "1.2k" in text and "eval step 10" in text
    assert "\x1b[" not in text


def test_rich_progress_renders_a_panel() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    progress = make_progress("rich", 50, console=console, title="run-x")
    with progress:
        progress.start(0, 0)
        progress.advance(25, 1000)
        progress.update({"loss": 1.25, "best_val_loss": 1.5})
        progress.note("checkpoint step 25")
    text = out.getvalue()
    assert "run-x" in text and "step 25/50" in text and "50.0%" in text and "checkpoint step 25" in text
