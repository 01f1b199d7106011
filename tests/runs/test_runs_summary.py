"""The one fold from events to a run summary (`alm.summary`) and the typed events it reads (`alm.events`)."""

from __future__ import annotations

import json

from alm.events import (
    EVENT_CLASSES,
    ErrorEvent,
    EvalEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    UnknownEvent,
    decode,
    encode,
)
from alm.summary import RunSummary


def test_every_event_type_round_trips_through_json() -> None:
    for cls in EVENT_CLASSES.values():
        event = cls(time=1.5)
        record = json.loads(json.dumps(encode(event)))
        assert record["schema"] == 1 and record["type"] == cls.TYPE
        assert decode(record) == event


def test_readers_are_lenient_with_other_versions() -> None:
    event = decode({"type": "step", "time": 3, "step": 7.0, "loss": "oops", "new_field": [1], "tokens": True})
    assert event == StepEvent(time=3.0, step=7)  # unknown fields ignored, mistyped ones take their default
    future = decode({"type": "future_kind", "time": 4.0, "x": 1})
    assert isinstance(future, UnknownEvent) and future.type == "future_kind"
    summary = RunSummary()
    summary.extend([future, decode({"type": "step"})])  # a step without a step number is ignored too
    assert summary.last_step is None and summary.last_time == 4.0


def test_the_fold_and_the_status_rule() -> None:
    summary = RunSummary("r")
    assert summary.status(alive=False) == "unknown"
    summary.extend(
        [
            StartEvent(time=0.0, total_steps=100, params={"total": 1234}, device={"type": "cpu"}),
            StepEvent(time=1.0, step=10, tokens=640, loss=3.0, step_time=0.5),
            StepEvent(time=2.0, step=20, tokens=1280, loss=2.0, step_time=0.5),
            EvalEvent(time=2.0, step=20, val_loss=2.5, val_bpb=3.0, best_val_loss=2.5),
            EvalEvent(time=3.0, step=30, val_loss=2.7, val_bpb=3.2, best_val_loss=2.5),
        ]
    )
    assert (summary.step, summary.tokens, summary.total_steps, summary.progress) == (20, 1280, 100, 0.2)
    assert (summary.best_val_loss, summary.best_val_bpb, summary.params) == (2.5, 3.0, 1234)
    assert summary.seconds_per_step == 0.5 and summary.eta_seconds == 40.0  # 80 steps at 2 steps/s
    assert summary.status(alive=True) == "running" and summary.status(alive=False) == "failed"
    for reason, status in (("finished", "finished"), ("interrupted", "interrupted"), ("nan", "failed")):
        summary.apply(StopEvent(step=20, reason=reason))
        assert summary.status(alive=False) == status
    summary.apply(ErrorEvent(message="boom"))
    assert summary.error == "boom"
    summary.apply(StartEvent(resumed_from=20, total_steps=200))  # a resume: live again, the stop is history
    assert summary.stop is None and summary.error is None and summary.total_steps == 200
    assert summary.status(alive=False) == "failed" and summary.eta_seconds is None


def test_rate_eta_from_recent_step_times() -> None:
    summary = RunSummary()
    summary.extend([StartEvent(total_steps=110), StepEvent(step=10, step_time=0.5)])
    assert summary.seconds_per_step == 0.5  # 2 steps per second
    assert summary.eta_seconds == 50.0  # 100 steps left


def test_elapsed_covers_every_start_and_the_eta_counts_down_between_events() -> None:
    summary = RunSummary("x")
    summary.extend(
        [
            StartEvent(time=0.0, total_steps=100),
            StepEvent(time=10.0, step=10, step_time=1.0),
            StopEvent(time=11.0, step=10, reason="interrupted"),
            StartEvent(time=500.0, total_steps=100, resumed_from=10),
            StepEvent(time=520.0, step=30, step_time=1.0),
        ]
    )
    assert summary.elapsed() == 11.0 + 20.0  # the pause between the stop and the resume is not training
    assert summary.elapsed(now=530.0) == 11.0 + 30.0  # a live run's elapsed moves with the clock
    assert summary.eta() == 70.0 and summary.eta(now=530.0) == 60.0 and summary.eta(now=9999.0) == 0.0


def test_memory_and_model_name_for_tables() -> None:
    summary = RunSummary("x")
    summary.apply(StartEvent(time=0.0, command=["alm", "train", "-m", "nano"]))
    summary.apply(StepEvent(time=1.0, step=1, memory={"rss": 2_000_000}))
    assert summary.memory == 2_000_000.0 and summary.model_name == "nano"
    summary.apply(
        StartEvent(
            time=2.0,
            command=["alm", "train", "--model", "cfg/m.yaml"],
            config={"model": {"n_layers": 4, "d_model": 96}},
        )
    )
    assert summary.model_name == "4L·d96"  # a file may have changed since: the shape it trained
