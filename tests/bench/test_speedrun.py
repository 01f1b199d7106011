"""`alm bench speedrun` end to end on a tiny corpus and recipe: a real `alm train` subprocess, the curve it
reports, the target and budget rules, and the JSON. Nothing here is timed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alm.bench.speedrun import SpeedrunSettings, ValText, curve
from alm.cli.app import app
from alm.errors import UsageError
from alm.events import StopEvent, read_events
from testkit.corpus import shipped_text

runner = CliRunner()
RECIPE = {"batch_size": 4, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "eval_interval": 10}
QUIET = {"sample_interval": 0, "log_interval": 5, "ckpt_interval": 0}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus file (20,000 characters of Shakespeare, val = its last 10%) and a tiny model preset."""
    root = tmp_path_factory.mktemp("speedrun")
    (root / "corpus.txt").write_text(shipped_text(20_000), encoding="utf-8")
    data = {"sources": [{"type": "local", "paths": [str(root / "corpus.txt")]}], "root": str(root / "data")}
    (root / "corpus.yaml").write_text(yaml.safe_dump({**data, "tokenizer": {"vocab_size": 320}}))
    (root / "model.yaml").write_text(
        yaml.safe_dump({"d_model": 32, "n_layers": 2, "n_heads": 4, "max_seq_len": 32})
    )
    return root


def _speedrun(project: Path, steps: int, *extra: str):
    (project / "train.yaml").write_text(yaml.safe_dump({**RECIPE, **QUIET, "steps": steps}))
    args = ["bench", "speedrun", "-m", str(project / "model.yaml"), "-t", str(project / "train.yaml")]
    args += ["-d", str(project / "corpus.yaml"), *extra]
    return runner.invoke(app, args)


@pytest.mark.slow
def test_a_finished_recipe_reports_its_curve_target_and_best(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = _speedrun(
        project, 40, "--target-bpb", "4.9", "--runs-dir", str(tmp_path / "runs"), "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["format"] == "alm-speedrun" and data["stop"] == "finished" and data["steps"] == 40
    assert [p["step"] for p in data["curve"]] == [10, 20, 30, 40]
    assert (
        data["command"][:2] == ["alm", "train"]
        and f"train.eval_batches={data['eval_batches']}" in data["command"]
    )
    val = data["val"]
    clean = (project / "data" / "clean" / "val.txt").read_text(encoding="utf-8")
    assert val["chars"] == len(clean) and val["bytes"] == len(clean.encode()) and val["documents"] > 1
    windows = (val["tokens"] - 1) // 32
    assert data["eval_batches"] == math.ceil(windows / 4)  # every eval scores the whole val split
    for point in data["curve"]:
        expected = point["val_loss"] * val["tokens"] / (math.log(2) * val["chars"])
        assert point["bpc"] == pytest.approx(expected)
        assert point["val_bpb"] > point["bpb"]  # the trainer's figure leaves the separators' bytes out
        assert 0 < point["train_s"] <= point["wall_s"]
    reached, best = data["reached_target"], data["best"]
    assert data["curve"][0]["bpb"] > 4.9 and reached is not None and reached["step"] > 10  # inside the curve
    assert reached == next(p for p in data["curve"] if p["bpb"] <= 4.9)
    assert best["bpb"] == min(p["bpb"] for p in data["curve"])
    assert "target 4.9 bits/byte reached" in result.output and "bits/char" in result.output
    assert (tmp_path / "runs" / "speedrun" / "events.jsonl").is_file()  # --runs-dir keeps the run


@pytest.mark.slow
def test_the_budget_stops_the_trainer_with_ctrl_c(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "budget.json"
    runs = tmp_path / "runs"
    result = _speedrun(project, 100_000, "--budget-minutes", "0.05", "--runs-dir", str(runs), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["stop"] == "budget" and 0 < data["steps"] < 100_000 and data["total_steps"] == 100_000
    assert data["curve"] and all(p["wall_s"] <= 3.0 for p in data["curve"])
    assert data["reached_target"] is None  # 2.5 bits/byte is far off for this model
    assert "not reached" in result.output
    stop = read_events(runs / "speedrun" / "events.jsonl")[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "interrupted"  # stopped cleanly, last.pt saved
    assert (runs / "speedrun" / "checkpoints" / "last.pt").is_file()


def test_the_figures_from_a_run_s_events(project: Path, tmp_path: Path) -> None:
    """`curve` on a real event stream: the clock starts at the latest start and stops at the budget."""
    from alm.events import EvalEvent, StartEvent, StepEvent

    val = ValText(tokens=1000, bytes=3000, chars=2900, documents=10)
    events = [
        StartEvent(time=100.0),
        StepEvent(step=10, tokens=640, epochs=0.5, loss_ema=4.0, step_time=0.1, time=101.0),
        EvalEvent(step=10, val_loss=3.0, val_bpb=1.5, time=102.0),
        StepEvent(step=20, tokens=1280, epochs=1.0, loss_ema=3.5, step_time=0.2, time=104.0),
        EvalEvent(step=20, val_loss=2.0, time=106.0),
    ]
    early, late = curve(events, val, deadline_s=5.0), curve(events, val, deadline_s=10.0)
    assert [p.step for p in early] == [10] and [p.step for p in late] == [10, 20]
    point = late[1]
    assert point.wall_s == 6.0 and point.train_s == pytest.approx(0.1 * 10 + 0.2 * 10)
    assert point.tokens == 1280 and point.epochs == 1.0 and point.train_loss == 3.5
    assert point.bpb == pytest.approx(2.0 * 1000 / (math.log(2) * 3000))
    assert point.bpc == pytest.approx(2.0 * 1000 / (math.log(2) * 2900))


def test_bad_settings_exit_2(project: Path) -> None:
    result = _speedrun(project, 10, "--budget-minutes", "0")
    assert result.exit_code == 2 and "--budget-minutes must be positive" in result.output
    with pytest.raises(UsageError, match="--target-bpb"):
        SpeedrunSettings(target_bpb=-1).check()
