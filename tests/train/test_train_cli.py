"""`alm train` / `alm resume` / `alm runs` end to end: real subprocesses, real signals, real files.

The centrepiece: a run stopped with SIGINT and resumed produces, step for step, bit-identical losses to the same
run trained without interruption (CPU, log_interval=1).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alm.cli.app import app
from alm.events import EvalEvent, StartEvent, StepEvent, StopEvent, read_events
from alm.rundir import RunDir
from alm.runs import run_status
from alm.train.checkpoint import load_checkpoint
from alm.train.step import LossOutput

STEPS = 24


def _train_args(tiny, run: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(tiny.model_yaml),
        "--train",
        str(tiny.train_yaml),
        "--data",
        str(tiny.corpus_yaml),
        "--run",
        str(run),
        "--progress",
        "plain",
        "--set",
        f"train.steps={STEPS}",
        "--set",
        "train.eval_interval=8",
        "--set",
        "train.ckpt_interval=0",
        *extra,
    ]


def _alm(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alm", *args], cwd=cwd, capture_output=True, text=True, timeout=240, **kw
    )


def _step_losses(run: Path) -> dict[int, tuple[float, float]]:
    """step -> (loss, loss EMA); the EMA is carried through checkpoints, so it must match as well."""
    return {
        e.step: (e.loss, e.loss_ema)
        for e in read_events(run / "events.jsonl")
        if isinstance(e, StepEvent) and e.step is not None
    }


def _eval_losses(run: Path) -> dict[int, float | None]:
    return {
        e.step: e.val_loss
        for e in read_events(run / "events.jsonl")
        if isinstance(e, EvalEvent) and e.step is not None
    }


def _wait_for_step(events: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(isinstance(e, StepEvent) and (e.step or 0) >= step for e in read_events(events)):
            return
        if proc.poll() is not None:
            pytest.fail(
                f"trainer exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.02)
    pytest.fail(f"no step {step} within {timeout}s")


@pytest.mark.slow
def test_sigint_then_resume_is_bit_identical(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stopped = runs / "stopped"

    def start(run: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "alm", *_train_args(tiny_data, run)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    reference, proc = start(runs / "full"), start(stopped)  # side by side: the losses must not care
    _wait_for_step(stopped / "events.jsonl", 5, proc)
    assert RunDir(stopped).is_live() and run_status(stopped) == "running"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    ref_out, ref_err = reference.communicate(timeout=180)
    assert reference.returncode == 0, ref_err
    assert "alm sample" in ref_out  # the next commands are printed
    stop = read_events(stopped / "events.jsonl")[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "interrupted"
    # runs/ under the working directory is the default root, so the printed command names the run alone
    assert stop.resume_command == "alm resume stopped" and "alm resume stopped" in out
    interrupted_at = stop.step
    assert interrupted_at is not None and 5 <= interrupted_at < STEPS
    assert load_checkpoint(stopped / "checkpoints" / "last.pt")["step"] == interrupted_at
    assert not (stopped / "train.pid").exists() and run_status(stopped) == "interrupted"

    resumed = _alm(["resume", "stopped", "--progress", "none"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    expected, got = _step_losses(runs / "full"), _step_losses(stopped)
    assert sorted(got) == list(range(1, STEPS + 1))
    assert got == expected  # exact float equality, every step
    assert _eval_losses(stopped) == _eval_losses(runs / "full")
    assert run_status(stopped) == "finished"

    listing = CliRunner().invoke(app, ["runs", "list", "--runs-dir", str(runs)])
    assert listing.exit_code == 0, listing.output
    assert "full" in listing.output and "stopped" in listing.output and "finished" in listing.output
    png = tmp_path / "cmp.png"
    compared = CliRunner().invoke(
        app, ["runs", "compare", "full", "stopped", "--runs-dir", str(runs), "--out", str(png)]
    )
    assert compared.exit_code == 0, compared.output
    assert "best val" in compared.output and png.stat().st_size > 1000


@pytest.fixture
def finished_run(tiny_data, tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "done"
    result = CliRunner().invoke(
        app, [*_train_args(tiny_data, run), "--set", "train.steps=4", "--progress", "none"]
    )
    assert result.exit_code == 0, result.output
    return run


def test_existing_runs_are_never_clobbered(tiny_data, finished_run: Path) -> None:
    runner = CliRunner()
    again = runner.invoke(app, _train_args(tiny_data, finished_run))
    assert again.exit_code == 2 and "already exists" in again.output and "--overwrite" in again.output
    both = runner.invoke(app, [*_train_args(tiny_data, finished_run), "--resume", "--overwrite"])
    assert both.exit_code == 2
    over = runner.invoke(
        app, [*_train_args(tiny_data, finished_run), "--set", "train.steps=2", "--overwrite"]
    )
    assert over.exit_code == 0, over.output
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["step"] == 2
    starts = [e for e in read_events(finished_run / "events.jsonl") if isinstance(e, StartEvent)]
    assert len(starts) == 1  # a fresh events.jsonl


def test_resume_refuses_typos_and_incompatible_changes(finished_run: Path) -> None:
    runner = CliRunner()
    root = str(finished_run.parent)
    typo = runner.invoke(app, ["resume", "dnoe", "--runs-dir", root])
    assert typo.exit_code == 2 and "did you mean done" in typo.output
    for change in ("model.d_model=128", "train.lr=0.1", "train.batch_size=2", "data.val_fraction=0.2"):
        refused = runner.invoke(
            app, ["resume", "done", "--runs-dir", root, "--set", change, "--set", "train.steps=8"]
        )
        assert refused.exit_code == 2, (change, refused.output)
        assert (
            "cannot resume with a changed configuration" in refused.output
            and change.split("=")[0] in refused.output
        )
    finished = runner.invoke(app, ["resume", "done", "--runs-dir", root])
    assert finished.exit_code == 2 and "nothing left to train" in finished.output


def test_resume_with_more_steps_is_recorded(finished_run: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "resume",
            "done",
            "--runs-dir",
            str(finished_run.parent),
            "--set",
            "train.steps=6",
            "--set",
            "train.log_interval=2",
            "--progress",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    assert config["train"]["steps"] == 6 and config["train"]["log_interval"] == 2
    start = [e for e in read_events(finished_run / "events.jsonl") if isinstance(e, StartEvent)][-1]
    assert start.resumed_from == 4 and start.changes["train.steps"] == [4, 6]
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["step"] == 6


def test_bad_config_values_are_clear_errors(tiny_data, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*_train_args(tiny_data, tmp_path / "r"), "--set", "train.lr=-1"])
    assert result.exit_code == 2 and "train.lr" in result.output
    assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(app, [*_train_args(tiny_data, tmp_path / "r"), "--set", "optim.lr=1"])
    assert result.exit_code == 2 and "model, train, data" in result.output
    # A bad --set value keeps its section in the key and is blamed on --set, not on the model's YAML file.
    result = CliRunner().invoke(app, [*_train_args(tiny_data, tmp_path / "r"), "--set", "model.n_heads=3"])
    assert result.exit_code == 2 and "config key 'model.n_heads' (in --set)" in result.output
    assert not (tmp_path / "r").exists()


def test_a_nan_stop_exits_1_and_names_the_last_good_checkpoint(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alm.train import objective as objective_mod

    real, calls = objective_mod.lm_loss, {"n": 0}

    def nan_from_step_5(model, batch) -> LossOutput:
        calls["n"] += 1
        out = real(model, batch)
        if calls["n"] < 5:
            return out
        return LossOutput(out.loss * float("nan"), out.reported * float("nan"), out.metrics)

    monkeypatch.setattr(objective_mod, "lm_loss", nan_from_step_5)  # what pretraining's objective trains with
    run = tmp_path / "runs" / "diverged"
    result = CliRunner().invoke(
        app,
        [*_train_args(tiny_data, run), "--set", "train.ckpt_interval=2", "--set", "train.max_bad_steps=2"],
    )
    assert result.exit_code == 1, result.output
    assert "not finite for 2 steps in a row" in result.output
    assert "last good checkpoint" in result.output and "last.pt" in result.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
