"""Trainer processes: the `alm train` command a form builds, and launching/interrupting real subprocesses."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from dashboard_helpers import make_run, start_event

from alm.dashboard.request import TrainRequest
from alm.dashboard.trainer import interrupt_pid, launch, resume_command, tail_text
from alm.errors import UsageError


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_request_builds_the_alm_train_command(tmp_path: Path) -> None:
    request = TrainRequest(run="exp1", model="pico", steps=50, device="cpu")
    request.validate(tmp_path)
    argv = request.command(tmp_path)
    assert argv[:3] == [sys.executable, "-m", "alm"]
    assert argv[3:] == [
        "train", "--model", "pico", "--run", "exp1", "--runs-dir", str(tmp_path),
        "--device", "cpu", "--set", "train.steps=50",
    ]  # fmt: skip
    assert resume_command(tmp_path, "exp1")[3:] == ["resume", "exp1", "--runs-dir", str(tmp_path)]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (TrainRequest(run="bad name"), "invalid run name"),
        (TrainRequest(run="../escape"), "invalid run name"),
        (TrainRequest(run="ok", model="huge"), "neither a preset nor a file"),
        (TrainRequest(run="ok", steps=0), "positive"),
        (TrainRequest(run="ok", device="tpu"), "unknown device"),
        (TrainRequest(run="taken"), "already exists"),
    ],
)
def test_request_validation_names_the_problem(tmp_path: Path, request_: TrainRequest, message: str) -> None:
    make_run(tmp_path, "taken", [start_event("taken")])
    with pytest.raises(UsageError, match=message):
        request_.validate(tmp_path)


def test_request_accepts_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "model.yaml"
    config.write_text("d_model: 64\nn_heads: 4\n")
    TrainRequest(run="ok", model=str(config)).validate(tmp_path)


def test_launch_detaches_and_sigint_stops_the_trainer(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    trainer = launch("r1", scripted_trainer(runs / "r1"), runs)
    try:
        assert trainer.log_path == runs / "r1" / "train.log"
        wait_for(lambda: "training" in tail_text(trainer.log_path))
        assert (
            os.getsid(trainer.pid) == trainer.pid != os.getsid(0)
        )  # its own session: our terminal never reaches it
        assert trainer.alive
        trainer.interrupt()
        wait_for(lambda: trainer.poll() is not None)
        assert trainer.returncode == 130
        log = tail_text(trainer.log_path)
        assert log.splitlines()[0].startswith("$ ") and "stopped" in log
        assert '"reason":"interrupted"' in (runs / "r1" / "events.jsonl").read_text()
    finally:
        if trainer.poll() is None:
            trainer.process.kill()
            trainer.process.wait()


def test_interrupt_pid_signals_a_trainer_started_elsewhere(tmp_path: Path, scripted_trainer) -> None:
    import subprocess

    run = tmp_path / "runs" / "r2"
    process = subprocess.Popen(scripted_trainer(run), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: (run / "train.pid").exists())
        interrupt_pid(int((run / "train.pid").read_text()))
        assert process.wait(timeout=20) == 130
        interrupt_pid(process.pid)  # already gone: no error
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tail_text_reads_the_end_of_a_log(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(10_000)) + "progress 1\rprogress 2\r")
    assert tail_text(log, 3).splitlines() == ["line 9999", "progress 1", "progress 2"]
    assert tail_text(tmp_path / "missing.log") == ""
