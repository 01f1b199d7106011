"""Fine-tuning runs stop and resume like pretraining: SIGINT to a real `alm sft` process, then `alm resume`,
reproduces the uninterrupted run's losses bit for bit (CPU, log_interval=1). And `alm resume`'s refusals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from finetune_helpers import step_events, tiny_sets
from typer.testing import CliRunner

from alm.cli.app import app
from alm.events import EvalEvent, StopEvent, read_events
from alm.runs import run_status
from alm.train.checkpoint import load_checkpoint

STEPS = 300
runner = CliRunner()


def _sft_args(run: str) -> list[str]:
    return [
        "sft",
        "base",
        "--data",
        "data/sft.jsonl",
        "--run",
        run,
        *tiny_sets(steps=STEPS, eval_interval=100),
    ]


def _wait_for_step(events: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((e.step or 0) >= step for e in step_events(events.parent)):
            return
        if proc.poll() is not None:
            pytest.fail(
                f"alm sft exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.01)
    pytest.fail(f"no step {step} within {timeout}s")


@pytest.mark.slow
def test_sft_sigint_then_resume_is_bit_identical(parent: Path, work: Path) -> None:
    def start(run: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "alm", *_sft_args(run)]
        return subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    proc = start("stopped")
    stopped = work / "runs" / "stopped"
    _wait_for_step(stopped / "events.jsonl", 5, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    stop = read_events(stopped / "events.jsonl")[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "interrupted"
    assert stop.resume_command == "alm resume stopped" and "alm resume stopped" in out
    assert stop.step is not None and 5 <= stop.step < STEPS
    assert load_checkpoint(stopped / "checkpoints" / "last.pt")["step"] == stop.step
    assert run_status(stopped) == "interrupted"

    full = runner.invoke(app, _sft_args("full"))
    assert full.exit_code == 0, full.output
    resumed = subprocess.run(
        [sys.executable, "-m", "alm", "resume", "stopped", "--progress", "none"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "alm chat stopped" in resumed.stdout  # a fine-tuning run's next steps
    expected = {e.step: (e.loss, e.loss_ema, e.tokens) for e in step_events(work / "runs" / "full")}
    got = {e.step: (e.loss, e.loss_ema, e.tokens) for e in step_events(stopped)}
    assert sorted(got) == list(range(1, STEPS + 1))
    assert got == expected  # exact float equality, every step
    evals = [
        [(e.step, e.val_loss) for e in read_events(run / "events.jsonl") if isinstance(e, EvalEvent)]
        for run in (work / "runs" / "full", stopped)
    ]
    assert evals[0] == evals[1] and len(evals[0]) == 3
    assert run_status(stopped) == "finished"


def test_resume_refuses_changed_data_and_unsafe_changes(parent: Path, work: Path) -> None:
    result = runner.invoke(app, ["sft", "base", "--data", "data/sft.jsonl", *tiny_sets(steps=4)])
    assert result.exit_code == 0, result.output
    longer = runner.invoke(app, ["resume", "base-sft", "--set", "train.steps=6"])
    assert longer.exit_code == 0, longer.output
    assert [e.step for e in step_events(work / "runs" / "base-sft")][-1] == 6

    unsafe = runner.invoke(app, ["resume", "base-sft", "--set", "train.steps=9", "--set", "train.lr=1"])
    assert unsafe.exit_code == 2 and "train.lr" in unsafe.stderr
    via_train = runner.invoke(app, ["train", "--resume", "--run", "base-sft"])
    assert via_train.exit_code == 2 and "fine-tuning run (sft)" in via_train.stderr
    assert "alm resume base-sft" in via_train.stderr

    data = work / "data" / "sft.jsonl"
    data.write_text(data.read_text().replace("Hello there!", "Hello!"))
    changed = runner.invoke(app, ["resume", "base-sft", "--set", "train.steps=9"])
    assert changed.exit_code == 1 and "fine-tuning data changed" in changed.stderr
    assert "Traceback" not in changed.output
    assert load_checkpoint(work / "runs" / "base-sft" / "checkpoints" / "last.pt")["step"] == 6
