"""Fine-tuning runs hold their run's lock as `alm train` does: from planning until training ends, so no second
`alm sft`/`alm dpo`/`alm resume`/`alm train` writes the same run, and `alm runs` and the dashboard see it live.
The lock is tried against a real other process (a lock is only worth what a second process sees of it)."""

from __future__ import annotations

import os
from pathlib import Path

from finetune_helpers import tiny_sets
from typer.testing import CliRunner

from alm.cli.app import app
from alm.finetune.launch import plan_finetune, plan_finetune_resume
from alm.rundir import RunDir
from testkit.locks import hold

runner = CliRunner()


def test_a_planned_fine_tuning_run_holds_its_lock(parent: Path, work: Path) -> None:
    plan = plan_finetune("sft", "base", "data/sft.jsonl", overrides=["train.device=cpu"])
    writer = RunDir(plan.run.path).writer()
    assert plan.lock is not None and writer is not None and writer.pid == os.getpid()
    plan.release()
    assert RunDir(plan.run.path).writer() is None


def test_a_run_another_process_writes_is_refused_naming_it(parent: Path, work: Path) -> None:
    other = hold(work / "runs" / "base-dpo" / "run.lock")
    try:
        result = runner.invoke(app, ["dpo", "base", "--data", "data/prefs.jsonl", *tiny_sets()])
        assert result.exit_code == 2 and f"in use by pid {other.pid}" in result.stderr, result.output
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in (work / "runs" / "base-dpo").iterdir()) == ["run.lock"]  # the other's


def test_resuming_a_fine_tuning_run_holds_its_lock(parent: Path, work: Path) -> None:
    assert runner.invoke(app, ["sft", "base", "--data", "data/sft.jsonl", *tiny_sets()]).exit_code == 0
    plan = plan_finetune_resume("base-sft", ["train.steps=12"])
    writer = RunDir(plan.run.path).writer()
    assert writer is not None and writer.pid == os.getpid()
    plan.release()
