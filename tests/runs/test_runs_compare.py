"""`alm.runs.comparison` (the one source of `alm runs compare` and the dashboard's compare view), its PNG, a run's
config, restarting from it, and deleting runs; with the CLI commands over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alm.cli.app import app
from alm.config import to_dict
from alm.errors import UsageError
from alm.runs import (
    COMPARE_COLUMNS,
    compare_cells,
    compare_figure,
    comparison,
    delete_run,
    plot_runs,
    write_restart_configs,
)


def _run(root: Path, name: str, records: list[dict], *, pid: int | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "events.jsonl").write_text("".join(json.dumps({"schema": 1, **r}) + "\n" for r in records))
    (run / "config.yaml").write_text("model: {}\ntrain: {}\ndata: {}\n")
    if pid is not None:
        (run / "train.pid").write_text(str(pid))
    return run


def _start(t: float, resumed_from: int | None = None) -> dict:
    return {
        "type": "start",
        "time": t,
        "total_steps": 100,
        "params": {"total": 5_000},
        "command": ["alm", "train", "--model", "pico"],
        "config": {"model": {"d_model": 32, "n_layers": 2}},
        "resumed_from": resumed_from,
    }


def _step(step: int, t: float, loss: float, ema: float) -> dict:
    return {
        "type": "step",
        "time": t,
        "step": step,
        "tokens": step * 1000,
        "loss": loss,
        "loss_ema": ema,
        "lr": 1e-3,
        "grad_norm": 0.5,
        "tok_per_s": 500.0 * step,
    }


def test_comparison_uses_the_trainers_own_ema_and_bits_per_byte(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "a",
        [
            _start(0.0),
            _step(10, 10.0, 4.0, 5.0),
            _step(20, 20.0, 3.0, 4.5),
            {"type": "eval", "time": 21.0, "step": 20, "val_loss": 3.1, "val_bpb": 1.4, "best_val_loss": 3.1},
            {"type": "stop", "time": 22.0, "step": 20, "reason": "interrupted"},
            _start(1000.0, resumed_from=15),  # resumed from an older checkpoint after a pause
            _step(20, 1005.0, 2.9, 4.4),
            _step(30, 1010.0, 2.5, 4.0),
        ],
    )
    [compared] = comparison([run]).runs
    assert compared.loss_ema.values == [5.0, 4.4, 4.0]  # the trainer's EMA, step 20 from the resumed pass
    assert compared.loss.step == [10.0, 20.0, 30.0] and compared.loss.tokens == [10_000.0, 20_000.0, 30_000.0]
    assert compared.loss.seconds == [
        10.0,
        27.0,
        32.0,
    ]  # training time: the pause between the starts is left out
    assert compared.val_bpb.values == [1.4] and compared.val_bpb.step == [20.0]  # bits per byte, not nats
    row = compared.row
    assert row.tok_per_s == 10_000.0  # the median throughput
    cells = dict(zip(COMPARE_COLUMNS, compare_cells(row), strict=True))
    assert cells == {
        "run": "a",
        "model": "pico",
        "params": "5k",
        "tokens": "30k",
        "best val": "3.1000",
        "bpb": "1.400",
        "tok/s": "10k",
        "duration": "32s",
        "status": "failed",
    }


def test_the_png_shows_a_lone_eval_readable_axes_and_every_run(tmp_path: Path) -> None:
    records = [_start(0.0), _step(10, 10.0, 4.0, 5.0), _step(20, 20.0, 3.0, 4.5)]
    one_eval = {
        "type": "eval",
        "time": 21.0,
        "step": 20,
        "val_loss": 3.1,
        "val_bpb": 1.4,
        "best_val_loss": 3.1,
    }
    a = _run(tmp_path, "a", [*records, one_eval])
    b = _run(tmp_path, "b", records)  # the same curve: it must not hide a behind it
    fig = compare_figure(comparison([a, b]), x="tokens")
    ax_loss, ax_val, _lr, _norm = fig.axes
    [val_line] = [line for line in ax_val.lines if line.get_label() == "a"]
    assert len(val_line.get_xdata()) == 1 and val_line.get_marker() == "o"  # a single eval is drawn
    styles = {line.get_label(): line.get_linestyle() for line in ax_loss.lines if line.get_label() in "ab"}
    assert styles["a"] != styles["b"]  # overlapping runs stay visible
    assert [line.get_ydata().tolist() for line in ax_loss.lines if line.get_label() == "a"] == [[5.0, 4.5]]
    fig.canvas.draw()
    labels = [tick.get_text() for tick in ax_loss.get_xticklabels() if tick.get_text()]
    assert labels and all("e" not in label for label in labels) and any("k" in label for label in labels)
    assert ax_val.get_title() == "val bits per byte"
    png = plot_runs([a, b], tmp_path / "out" / "cmp.png", x="time", log_y=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_delete_refuses_a_live_run_and_foreign_files(tmp_path: Path) -> None:
    live = _run(tmp_path, "live", [_start(0.0)], pid=os.getpid())
    with pytest.raises(UsageError, match="is training"):
        delete_run(live)
    assert live.is_dir()
    mine = _run(tmp_path, "mine", [_start(0.0)])
    (mine / "notes.md").write_text("mine")
    with pytest.raises(UsageError, match="did not write"):
        delete_run(mine)
    done = _run(tmp_path, "done", [_start(0.0)])
    (done / "checkpoints").mkdir()
    (done / "checkpoints" / "last.pt").write_bytes(b"x")
    (done / "train.log").write_text("log")
    assert delete_run(done) == done and not done.exists()
    with pytest.raises(UsageError, match="no run directory"):
        delete_run(done)


def test_a_restart_starts_from_the_runs_resolved_config(tmp_path: Path) -> None:
    from alm.train.run_config import load_run_config

    corpus = tmp_path / "corpus.yaml"
    corpus.write_text(
        yaml.safe_dump({"sources": [{"type": "local", "paths": ["x.txt"]}], "root": str(tmp_path)})
    )
    original = load_run_config("pico", "micro", str(corpus), ["train.lr=1e-3", "model.dropout=0.1"])
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(original), sort_keys=False))
    files = write_restart_configs(run, tmp_path / "runs" / "new")
    assert files["model"] == tmp_path / "runs" / "new" / "restart" / "model.yaml"
    again = load_run_config(files["model"], files["train"], files["data"])  # what `alm train` will do
    assert to_dict(again) == to_dict(original)
    (run / "config.yaml").write_text("model: {}\ntrain: {}\ndata: {}\nfinetune: {mode: sft}\n")
    with pytest.raises(UsageError, match="fine-tuning run"):
        write_restart_configs(run, tmp_path / "runs" / "other")


def test_runs_cli_config_delete_and_compare(tmp_path: Path) -> None:
    runner = CliRunner()
    a = _run(tmp_path, "a", [_start(0.0), _step(10, 10.0, 4.0, 5.0)])
    _run(tmp_path, "b", [_start(0.0), _step(10, 10.0, 4.0, 5.0)])
    _run(tmp_path, "live", [_start(0.0)], pid=os.getpid())
    result = runner.invoke(app, ["runs", "config", "a", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0 and result.output == "model: {}\ntrain: {}\ndata: {}\n"
    result = runner.invoke(
        app,
        [
            "runs",
            "compare",
            "a",
            "b",
            "--x",
            "time",
            "-o",
            str(tmp_path / "c.png"),
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").is_file()
    result = runner.invoke(app, ["runs", "compare", "a", "--x", "epochs", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown axis" in result.output
    result = runner.invoke(app, ["runs", "delete", "a", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--yes" in result.output and a.is_dir()  # no terminal to ask on
    result = runner.invoke(app, ["runs", "delete", "live", "--yes", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "is training" in result.output
    result = runner.invoke(app, ["runs", "delete", "a", "b", "--yes", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0 and not a.exists() and not (tmp_path / "b").exists()
