"""Commands that use a trained model default to the run's best checkpoint: `alm sample`, `alm eval` and `alm export`
take best.pt when the run has one, else last.pt, through the one resolver — and say which."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alm.cli.app import app
from alm.train.checkpoint import load_checkpoint, resolve_checkpoint
from alm.train.launch import plan_resume
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`best`: best.pt at step 6, last.pt at step 8 (no eval after 6); `fresh`: last.pt only (never evaluated)."""
    root = tmp_path_factory.mktemp("runs")
    Trainer(tiny_plan(tiny_data, root / "best", steps=6, eval_interval=6, ckpt_interval=0)).run()
    Trainer(plan_resume("best", ["train.steps=8", "train.eval_interval=0"], runs_root=root)).run()
    Trainer(tiny_plan(tiny_data, root / "fresh", steps=2, eval_interval=0, ckpt_interval=0)).run()
    return root


def test_the_resolver_prefers_best(runs: Path) -> None:
    assert resolve_checkpoint("best", root=runs).name == "best.pt"
    assert load_checkpoint(resolve_checkpoint("best", root=runs))["step"] == 6
    assert resolve_checkpoint("best", "last", root=runs).name == "last.pt"  # asked for: given
    assert resolve_checkpoint("fresh", root=runs).name == "last.pt"  # no best.pt: the latest


def test_eval_and_sample_use_best_and_say_so(runs: Path) -> None:
    result = runner.invoke(app, ["eval", str(runs / "best"), "--json", "--max-batches", "1"])
    assert result.exit_code == 0, result.output
    assert "checkpoint best.pt: its lowest val loss; --checkpoint last for the latest" in result.stderr
    record = json.loads(result.stdout)
    assert record["step"] == 6 and record["checkpoint"].endswith("best.pt")

    result = runner.invoke(app, ["sample", str(runs / "best"), "--prompt", "RO", "--greedy", "-n", "4"])
    assert result.exit_code == 0, result.output
    assert "checkpoint best.pt" in result.stderr and "(step 6)" in result.stderr

    explicit = runner.invoke(app, ["eval", str(runs / "best"), "--json", "--max-batches", "1", "-c", "last"])
    assert json.loads(explicit.stdout)["step"] == 8 and "checkpoint best.pt" not in explicit.stderr

    fresh = runner.invoke(app, ["eval", str(runs / "fresh"), "--json", "--max-batches", "1"])
    assert fresh.exit_code == 0, fresh.output
    assert "checkpoint last.pt: the run has no best.pt yet" in fresh.stderr
