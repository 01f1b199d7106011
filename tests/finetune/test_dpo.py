"""`alm dpo`: ln 2 at the first step, metrics in the events, learning the preferences, exact resume."""

from __future__ import annotations

import math
from pathlib import Path

from finetune_helpers import events_of, step_events, tiny_sets
from typer.testing import CliRunner

from alm.cli.app import app
from alm.events import EvalEvent, StartEvent, read_events
from alm.finetune.launch import plan_finetune, plan_finetune_resume
from alm.summary import RunSummary
from alm.train.checkpoint import load_checkpoint
from alm.train.signals import StopRequest
from alm.train.trainer import Trainer

runner = CliRunner()
METRICS = {
    "reward_margin",
    "reward_accuracy",
    "chosen_reward",
    "rejected_reward",
    "chosen_logps",
    "rejected_logps",
}


def test_the_first_step_is_ln2_with_zero_margin(parent: Path, work: Path) -> None:
    result = runner.invoke(app, ["dpo", "base", "--data", "data/prefs.jsonl", "--beta", "0.5", *tiny_sets()])
    assert result.exit_code == 0, result.output
    run = work / "runs" / "base-dpo"
    assert "reference: the starting checkpoint (beta 0.5)" in result.output
    first = step_events(run)[0]
    assert first.loss is not None and abs(first.loss - math.log(2)) < 1e-6
    assert first.metrics is not None and set(first.metrics) == METRICS
    assert abs(first.metrics["reward_margin"]) < 1e-5 and first.metrics["reward_accuracy"] == 0.0
    assert first.metrics["chosen_logps"] < 0 and first.metrics["rejected_logps"] < 0
    assert events_of(run, StartEvent)[0].config["finetune"]["beta"] == 0.5
    evals = events_of(run, EvalEvent)
    assert evals and all(e.metrics and set(e.metrics) == METRICS and e.val_bpb is None for e in evals)
    summary = RunSummary("base-dpo")  # the fold the dashboard and `alm runs` read
    summary.extend(read_events(run / "events.jsonl"))
    assert summary.mode == "dpo" and summary.last_step is not None and summary.last_step.metrics is not None
    assert summary.last_eval is not None and summary.last_eval.metrics is not None
    reference = load_checkpoint(run / "checkpoints" / "last.pt")["loader"]["reference"]
    assert reference["train"].shape == (14, 2) and reference["val"].shape == (2, 2)  # 16 pairs, 0.1 held out


def test_a_few_steps_raise_reward_accuracy(parent: Path, work: Path) -> None:
    """Measured on the training pairs themselves (--val-data), before any step and after a few."""
    sets = tiny_sets(steps=12, eval_interval=12, lr=1e-2, min_lr=1e-3, batch_size=8, eval_batches=4)
    prefs = "data/prefs.jsonl"
    result = runner.invoke(app, ["dpo", "base", "--data", prefs, "--val-data", prefs, "--beta", "1", *sets])
    assert result.exit_code == 0, result.output
    (last,) = events_of(work / "runs" / "base-dpo", EvalEvent)
    assert last.metrics is not None and last.metrics["reward_accuracy"] > 0.5
    assert last.val_loss is not None and last.val_loss < math.log(2)
    assert last.metrics["reward_margin"] > 0


def _stop_at(objective_loss, stop: StopRequest, call: int):
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        if calls["n"] == call:
            stop.request()
        return objective_loss(model, batch)

    return loss_fn


def test_an_interrupted_dpo_run_resumes_exactly(parent: Path, work: Path) -> None:
    """The reference log-probs travel in the checkpoint: the resumed run matches an uninterrupted one."""
    sets = [s for s in tiny_sets(steps=10, ckpt_interval=0) if s != "--set"]

    def plan(name: str):
        return plan_finetune("dpo", "base", "data/prefs.jsonl", run=name, overrides=sets)

    Trainer(plan("full")).run()
    stopped = plan("stopped")
    stop = StopRequest()
    assert stopped.objective is not None
    trainer = Trainer(stopped, stop=stop)
    trainer.loss_fn = _stop_at(trainer.loss_fn, stop, call=4)
    assert Trainer.run(trainer).reason == "interrupted"
    assert load_checkpoint(work / "runs" / "stopped" / "checkpoints" / "last.pt")["step"] == 4
    Trainer(plan_finetune_resume("stopped")).run()
    full, resumed = step_events(work / "runs" / "full"), step_events(work / "runs" / "stopped")
    assert [e.step for e in resumed] == list(range(1, 11))
    assert [(e.loss, e.metrics) for e in resumed] == [(e.loss, e.metrics) for e in full]
    evals = [events_of(work / "runs" / name, EvalEvent) for name in ("full", "stopped")]
    assert [(e.step, e.val_loss, e.metrics) for e in evals[0]] == [
        (e.step, e.val_loss, e.metrics) for e in evals[1]
    ]


def test_resume_may_change_how_much_is_validated(parent: Path, work: Path) -> None:
    """eval_batches may change on resume: the reference covers every held-out pair, not just those scored."""
    sets = tiny_sets(steps=4, batch_size=2, eval_batches=1)
    first = runner.invoke(app, ["dpo", "base", "--data", "data/prefs.jsonl", "--val-fraction", "0.25", *sets])
    assert first.exit_code == 0, first.output
    more = runner.invoke(
        app, ["resume", "base-dpo", "--set", "train.steps=8", "--set", "train.eval_batches=3"]
    )
    assert more.exit_code == 0, more.output
    reference = load_checkpoint(work / "runs" / "base-dpo" / "checkpoints" / "last.pt")["loader"]["reference"]
    assert reference["val"].shape == (4, 2)
    assert [e.step for e in events_of(work / "runs" / "base-dpo", EvalEvent)] == [4, 8]
