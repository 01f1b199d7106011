"""`alm.runs`: reading events, run status from events + pid liveness, summaries, comparisons and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alm.errors import UsageError
from alm.events import read_events, read_records
from alm.runs import compare_runs, ema, list_runs, plot_runs, resolve_run_dir, run_status


def _write_run(
    root: Path, name: str, events: list[dict], *, pid: int | None = None, t0: float = 1000.0
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    lines = [json.dumps({"schema": 1, "time": t0 + i, **e}) for i, e in enumerate(events)]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    if pid is not None:
        (run / "train.pid").write_text(f"{pid}\n")
    return run


START = {"type": "start", "run": "x", "total_steps": 100, "params": {"total": 1234}, "config": {"model": {}}}


def _steps(*losses: float, tok_per_s: float = 1000.0) -> list[dict]:
    return [
        {
            "type": "step",
            "step": 10 * (i + 1),
            "tokens": 640 * (i + 1),
            "loss": loss,
            "lr": 1e-3,
            "grad_norm": 0.5,
            "tok_per_s": tok_per_s * (i + 1),
        }
        for i, loss in enumerate(losses)
    ]


def test_read_events_skips_torn_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"schema":1,"type":"start","time":1}\nnot json\n[1,2]\n{"no_type":1}\n'
        '{"schema":1,"type":"future_kind","time":2}\n{"schema":1,"type":"st'
    )
    assert [e["type"] for e in read_records(path)] == ["start", "future_kind"]
    assert [e.type for e in read_events(path)] == ["start", "future_kind"]  # unknown types: for folds to skip
    assert read_events(tmp_path / "missing.jsonl") == []


def test_status_from_the_last_lifecycle_event(tmp_path: Path) -> None:
    stop = {"type": "stop", "step": 100}
    assert run_status(_write_run(tmp_path, "done", [START, {**stop, "reason": "finished"}])) == "finished"
    assert (
        run_status(_write_run(tmp_path, "int", [START, {**stop, "reason": "interrupted"}])) == "interrupted"
    )
    assert run_status(_write_run(tmp_path, "nan", [START, {**stop, "reason": "nan"}])) == "failed"
    assert run_status(_write_run(tmp_path, "err", [START, {**stop, "reason": "error"}])) == "failed"
    assert run_status(_write_run(tmp_path, "killed", [START, *_steps(3.0)])) == "failed"
    resumed = [START, {**stop, "reason": "interrupted"}, START]  # resumed, then killed
    assert run_status(_write_run(tmp_path, "resumed", resumed)) == "failed"
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    assert run_status(empty) == "unknown"


def test_running_needs_a_live_pid(tmp_path: Path) -> None:
    assert run_status(_write_run(tmp_path, "live", [START], pid=os.getpid())) == "running"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = _write_run(
        tmp_path, "stale", [START, {"type": "stop", "reason": "finished"}], pid=int(dead.stdout)
    )
    assert run_status(stale) == "finished"


def test_list_runs_summaries_newest_first(tmp_path: Path) -> None:
    evals = [
        {"type": "eval", "step": 10, "val_loss": 2.5, "val_bpb": 3.0, "best_val_loss": 2.5},
        {"type": "eval", "step": 20, "val_loss": 2.7, "val_bpb": 3.2, "best_val_loss": 2.5},
    ]
    _write_run(tmp_path, "old", [START, *_steps(3.0), {"type": "stop", "reason": "finished"}], t0=10.0)
    _write_run(tmp_path, "new", [START, *_steps(3.0, 2.0), *evals], t0=5000.0)
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [r.name for r in runs] == ["new", "old"]
    new, summary = runs[0], runs[0].summary
    loss = summary.last_step.loss if summary.last_step else None
    assert (summary.step, summary.total_steps, summary.tokens, loss) == (20, 100, 1280, 2.0)
    assert (summary.best_val_loss, summary.best_val_bpb, summary.params) == (
        2.5,
        3.0,
        1234,
    )  # bpb at the best
    assert new.status == "failed" and summary.progress == 0.2
    assert list_runs(tmp_path / "absent") == []


def test_compare_uses_median_throughput_and_plots(tmp_path: Path) -> None:
    a = _write_run(tmp_path, "a", [START, *_steps(3.0, 2.5, 2.0)])
    b = _write_run(
        tmp_path,
        "b",
        [START, *_steps(3.1, 2.9), {"type": "eval", "step": 20, "val_loss": 2.8, "best_val_loss": 2.8}],
    )
    rows = compare_runs([a, b])
    assert rows[0].tok_per_s == 2000.0 and rows[1].summary.best_val_loss == 2.8
    png = plot_runs([a, b], tmp_path / "out" / "cmp.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ema_skips_missing_values() -> None:
    assert ema([1.0, None, 2.0], alpha=0.5) == [1.0, None, 1.5]


def test_resolve_run_dir_suggests_close_names(tmp_path: Path) -> None:
    _write_run(tmp_path, "shakespeare-micro", [START])
    assert resolve_run_dir("shakespeare-micro", tmp_path).name == "shakespeare-micro"
    assert resolve_run_dir(tmp_path / "shakespeare-micro", tmp_path / "elsewhere").name == "shakespeare-micro"
    with pytest.raises(UsageError, match="did you mean shakespeare-micro"):
        resolve_run_dir("shakespeare-mikro", tmp_path)


def test_list_never_mixes_a_stop_step_with_older_figures(tmp_path: Path) -> None:
    """A run (from an older alm) stopped at step 25 with its last step event at 20: the row shows step 20 with
    step 20's tokens and loss, not step 25 with step 20's figures."""
    stop = {"type": "stop", "step": 25, "reason": "interrupted", "resume_command": "alm resume x"}
    _write_run(tmp_path, "x", [START, *_steps(3.0, 2.0), stop])
    summary = list_runs(tmp_path)[0].summary
    assert summary.last_step is not None
    assert (summary.step, summary.tokens, summary.last_step.loss) == (20, 1280, 2.0)
    assert summary.stop is not None and summary.stop.step == 25


def test_runs_list_cli_shows_coherent_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alm.cli.app import app

    stop = {"type": "stop", "step": 25, "reason": "interrupted", "resume_command": "alm resume x"}
    _write_run(tmp_path, "x", [START, *_steps(3.0, 2.0), stop])
    result = CliRunner().invoke(app, ["runs", "list", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "20/100" in result.output and "25/100" not in result.output and "1.28k" in result.output
    assert "2.0000" in result.output and "interrupted" in result.output
