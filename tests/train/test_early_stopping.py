"""Learning quality: early stopping, the "val loss rising" warning, epochs seen, and what a resume after an early
stop does — on a run that overfits by construction (a few thousand tokens, a high constant learning rate), and
on the validation history's rules alone."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from rich.console import Console

from alm.config import from_dict
from alm.errors import ConfigError
from alm.events import EvalEvent, StartEvent, StepEvent, StopEvent, WarningEvent, read_events
from alm.rundir import RunDir
from alm.runs import run_status
from alm.summary import RunSummary
from alm.train.checkpoint import load_checkpoint
from alm.train.config import TrainConfig
from alm.train.launch import plan_resume
from alm.train.trainer import Trainer
from alm.train.validation import AUTO_PATIENCE, RISING_EVALS, Measurement, Validation, resolve_patience
from testkit.tiny_data import TinyData, build_tiny_data, tiny_plan

MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 32}
OVERFIT = {  # memorises ~1,700 training tokens: val loss bottoms near step 110 and climbs from 150 on
    "steps": 200,
    "batch_size": 8,
    "lr": 1e-2,
    "min_lr": 1e-2,
    "schedule": "constant",
    "warmup_steps": 2,
    "eval_interval": 10,
    "eval_batches": 4,
    "sample_interval": 0,
    "log_interval": 10,
    "ckpt_interval": 0,
    "progress": "none",
}


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    """4,000 characters of Shakespeare, the last 30% held out: a corpus the tiny model memorises in seconds."""
    data = build_tiny_data(tmp_path_factory.mktemp("small-corpus"), chars=4000, val_fraction=0.3)
    return dataclasses.replace(data, model=MODEL, train=OVERFIT)


def _history(events: list) -> tuple[list[EvalEvent], list[WarningEvent], StopEvent]:
    evals = [e for e in events if isinstance(e, EvalEvent)]
    warnings = [e for e in events if isinstance(e, WarningEvent)]
    stop = events[-1]
    assert isinstance(stop, StopEvent)
    return evals, warnings, stop


def test_an_overfitting_run_stops_early_keeps_best_and_says_why(small_corpus, tmp_path: Path) -> None:
    plan = tiny_plan(small_corpus, tmp_path / "runs" / "overfit", early_stop_patience=6)
    result = Trainer(plan).run()
    assert result.reason == "early_stop" and result.step < 200
    events = read_events(plan.run.events_path)
    evals, warnings, stop = _history(events)
    best = min(evals, key=lambda e: e.val_loss or float("inf"))
    assert result.step == best.step + 6 * 10  # six evals without a new best, then the stop
    assert all(not e.is_best for e in evals if e.step > best.step)
    assert stop.reason == "early_stop" and stop.resume_command is None
    assert stop.detail == result.detail and "not improved for 6 evals" in stop.detail
    assert f"best.pt (step {best.step}" in stop.detail
    rising = [w for w in warnings if "val loss rising since step" in w.message]
    assert len(rising) == 1 and "memorising" in rising[0].message and "see best.pt" in rising[0].message
    # best.pt is the best, not the end
    assert load_checkpoint(plan.run.checkpoint("best"))["step"] == best.step
    assert load_checkpoint(plan.run.checkpoint("last"))["step"] == result.step
    assert run_status(plan.run.path) == "finished"  # an early stop ends a run by design
    summary = RunSummary()
    summary.extend(events)
    assert (
        summary.best_val_step == best.step
        and summary.stop is not None
        and summary.stop.reason == "early_stop"
    )


def test_resuming_after_an_early_stop(small_corpus, tmp_path: Path) -> None:
    """Documented behaviour: the patience count is resumed, so an unchanged resume stops again at its next eval
    without a new best; `--set train.early_stop_patience=0` trains on to train.steps."""
    runs = tmp_path / "runs"
    first = Trainer(tiny_plan(small_corpus, runs / "again", early_stop_patience=6)).run()
    assert first.reason == "early_stop"
    again = Trainer(plan_resume("again", runs_root=runs)).run()
    assert again.reason == "early_stop" and again.step == first.step + 10
    on = Trainer(plan_resume("again", ["train.early_stop_patience=0"], runs_root=runs)).run()
    assert on.reason == "finished" and on.step == 200
    start = [e for e in read_events(RunDir(runs / "again").events_path) if isinstance(e, StartEvent)][-1]
    assert start.changes == {"train.early_stop_patience": [6, 0]} and start.early_stop_patience == 0


def test_auto_early_stopping_is_on_for_many_epochs_and_visible(small_corpus, tmp_path: Path) -> None:
    plan = tiny_plan(small_corpus, tmp_path / "runs" / "auto", steps=30)  # early_stop_patience: null (auto)
    out = io.StringIO()
    Trainer(plan, console=Console(file=out, width=200), progress="plain").run()
    lines = out.getvalue().splitlines()
    events = read_events(plan.run.events_path)
    start = events[0]
    assert isinstance(start, StartEvent) and start.train_tokens and start.planned_epochs
    assert start.planned_epochs == pytest.approx(30 * 8 * 32 / start.train_tokens)  # ~4.6 epochs planned
    assert start.early_stop_patience == AUTO_PATIENCE
    assert any(f"early stopping on: patience {AUTO_PATIENCE} evals" in line for line in lines)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and all(e.epochs == pytest.approx(e.tokens / start.train_tokens) for e in steps)
    assert any("epochs)" in line for line in lines)  # the figures show epochs seen
    summary = RunSummary()
    summary.extend(events)
    assert summary.epochs == steps[-1].epochs and summary.early_stop_patience == AUTO_PATIENCE


def test_the_auto_rule() -> None:
    cfg = TrainConfig()
    assert resolve_patience(cfg, planned_epochs=5.0) == AUTO_PATIENCE
    assert resolve_patience(cfg, planned_epochs=1.0) == 0
    assert resolve_patience(cfg, planned_epochs=None) == 0  # unknown size: off
    assert resolve_patience(TrainConfig(eval_interval=0), planned_epochs=50.0) == 0  # nothing to watch
    assert resolve_patience(TrainConfig(early_stop_patience=2), planned_epochs=0.5) == 2
    assert resolve_patience(TrainConfig(early_stop_patience=0), planned_epochs=50.0) == 0


def test_patience_is_validated() -> None:
    with pytest.raises(ConfigError, match="early_stop_patience"):
        from_dict(TrainConfig, {"early_stop_patience": -1})
    with pytest.raises(ConfigError, match="eval_interval"):
        from_dict(TrainConfig, {"early_stop_patience": 3, "eval_interval": 0})


class _Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)


def _validation(losses: list[float], patience: int, steps: int = 1000) -> tuple[Validation, _Recorder]:
    queue = iter(losses)
    recorder = _Recorder()
    cfg = TrainConfig(steps=steps, eval_interval=10)
    return Validation(lambda: Measurement(next(queue)), cfg, recorder, patience=patience), recorder  # type: ignore[arg-type]


def test_the_rising_warning_needs_consecutive_rises_and_is_said_once() -> None:
    losses = [3.0, 2.5, 2.6, 2.55, 2.6, 2.7, 2.8, 2.9, 3.0, 2.4, 2.5]
    validation, recorder = _validation(losses, patience=0)
    for step in range(10, 10 * len(losses) + 1, 10):
        validation.after_step(step)
    warnings = [e for e in recorder.events if isinstance(e, WarningEvent)]
    # 2.6 after 2.5 and 2.55 → 2.6 are broken streaks; 2.55 → 2.6 → 2.7 → 2.8 is the first run of three rises.
    assert len(warnings) == 1 and warnings[0].step == 10 * (4 + RISING_EVALS)
    assert warnings[0].message.startswith("val loss rising since step 40: the model is memorising")
    assert "best.pt (step 20, val loss 2.5000)" in warnings[0].message
    assert validation.early_stop is None  # patience 0: off


def test_patience_counts_evals_without_a_new_best_and_survives_a_checkpoint() -> None:
    validation, _ = _validation([3.0, 2.0, 2.1, 2.05, float("nan")], patience=3)
    for step in (10, 20, 30, 40):
        validation.after_step(step)
    assert validation.early_stop is None and validation.evals_since_best == 2
    restored, _ = _validation([float("nan")], patience=3)
    restored.load_state_dict(validation.state_dict())
    restored.after_step(50)  # a non-finite val loss is no improvement
    assert restored.early_stop is not None and "not improved for 3 evals" in restored.early_stop
    assert restored.best_step == 20 and restored.best_val_loss == 2.0


def test_no_early_stop_at_the_last_step() -> None:
    """A run whose patience runs out at its final eval has finished, not stopped early."""
    validation, _ = _validation([2.0, 2.1], patience=1, steps=20)
    validation.after_step(10)
    validation.after_step(20)
    assert validation.early_stop is None
