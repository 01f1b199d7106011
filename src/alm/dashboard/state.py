"""A run's state folded from its events (schema 1 in docs/CONTRACTS.md); pure data, no Textual, no I/O."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from alm.events import (
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    SampleEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    WarningEvent,
)
from alm.format import number
from alm.summary import RunSummary

FEED_LIMIT = 500
SAMPLE_LIMIT = 50


@dataclass
class Series:
    """One metric over steps; appends are O(1); plots read a downsampled view."""

    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, step: float, value: Any) -> None:
        if isinstance(value, int | float) and math.isfinite(value):
            self.steps.append(step)
            self.values.append(float(value))

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def view(self, max_points: int) -> tuple[list[float], list[float]]:
        return downsample(self.steps, self.values, max_points)


def downsample(xs: list[float], ys: list[float], max_points: int) -> tuple[list[float], list[float]]:
    """At most `max_points` points: the mean of equal-width buckets of x (so noise averages out but the shape
    of a long history survives), always ending on the latest point."""
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    buckets = max_points - 1
    for b in range(buckets):
        lo, hi = b * (n - 1) // buckets, (b + 1) * (n - 1) // buckets
        if hi <= lo:
            continue
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(ys[lo:hi]) / (hi - lo))
    out_x.append(xs[-1])
    out_y.append(ys[-1])
    return out_x, out_y


@dataclass
class FeedItem:
    time: float
    kind: str  # start / eval / checkpoint / warning / stop / error
    step: int | None
    text: str
    style: str | None = (
        None  # overrides the kind's colour (a finished stop is good news, an interrupt is not)
    )


# How a stop reads in the feed: ended as planned (green), paused and resumable (yellow), or went wrong (red).
STOP_STYLES = {"finished": "green", "early_stop": "green", "interrupted": "yellow"}


@dataclass
class RunState(RunSummary):
    """Everything the dashboard shows about a run: its summary (the fold `alm runs` uses too) plus curves, an
    event feed, the training samples and the checkpoints, updated one event at a time (live or replayed)."""

    loss: Series = field(default_factory=Series)
    loss_ema: Series = field(default_factory=Series)
    val_loss: Series = field(default_factory=Series)
    val_bpb: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    tok_per_s: Series = field(default_factory=Series)
    grad_norm: Series = field(default_factory=Series)
    metrics: dict[str, Series] = field(default_factory=dict)  # the objective's own figures (DPO), by name
    feed: deque[FeedItem] = field(default_factory=lambda: deque(maxlen=FEED_LIMIT))
    samples: deque[SampleEvent] = field(default_factory=lambda: deque(maxlen=SAMPLE_LIMIT))
    checkpoints: dict[str, int] = field(default_factory=dict)  # kind or "step-N" -> step
    feed_total: int = 0  # items ever added to `feed` (a bounded deque), so views can append only the new ones
    samples_total: int = 0
    events_seen: int = 0
    version: int = 0  # bumped on every change so views redraw only when something changed

    def apply(self, event: Event) -> None:
        super().apply(event)
        t = event.time or 0.0
        if isinstance(event, StartEvent):
            resumed = event.resumed_from
            what = f"resumed from step {resumed}" if resumed is not None else "started"
            self._feed(t, "start", resumed, f"{what} on {device_text(event.device, self.parallel)}")
        elif isinstance(event, StepEvent) and event.step is not None:
            for series, value in (
                (self.loss, event.loss),
                (self.loss_ema, event.loss_ema),
                (self.lr, event.lr),
                (self.tok_per_s, event.tok_per_s),
                (self.grad_norm, event.grad_norm),
            ):
                series.add(event.step, value)
            for name, value in (event.metrics or {}).items():
                self.metrics.setdefault(name, Series()).add(event.step, value)
        elif isinstance(event, EvalEvent):
            step = event.step if event.step is not None else self.step
            self.val_loss.add(step, event.val_loss)
            self.val_bpb.add(step, event.val_bpb)
            text = f"val loss {number(event.val_loss)}  ppl {number(event.val_ppl, 2)}"
            if (
                event.val_loss is not None
                and self.best_val_loss is not None
                and event.val_loss <= self.best_val_loss
            ):
                text += "  (best)"
            self._feed(t, "eval", step, text)
        elif isinstance(event, SampleEvent):
            self.samples.append(event)
            self.samples_total += 1
        elif isinstance(event, CheckpointEvent):
            key = f"step-{event.step}" if event.kind == "step" else event.kind
            if event.step is not None:
                self.checkpoints[key] = event.step
            self._feed(t, "checkpoint", event.step, f"{event.kind}  {event.path}")
        elif isinstance(event, WarningEvent):
            self._feed(t, "warning", event.step, event.message)
        elif isinstance(event, StopEvent):
            text = f"stopped: {(event.reason or '?').replace('_', ' ')}"
            if event.detail:
                text += f" — {event.detail}"
            if event.resume_command:
                text += "  (r resumes)"
            self._feed(t, "stop", event.step, text, STOP_STYLES.get(event.reason, "bold red"))
        elif isinstance(event, ErrorEvent):
            self._feed(t, "error", None, self.error or "unknown error")
        self.events_seen += 1
        self.version += 1

    def _feed(self, t: float, kind: str, step: int | None, text: str, style: str | None = None) -> None:
        self.feed.append(FeedItem(t, kind, step, text, style))
        self.feed_total += 1

    @property
    def device_type(self) -> str | None:
        return self.device.get("type")

    @property
    def router(self) -> dict[str, Any] | None:
        router = self.last_step.router if self.last_step else None
        return router if router else None


def device_text(device: dict[str, Any], parallel: str | None = None) -> str:
    """`cpu · fp32`, `cuda:0 (NVIDIA H200) · bf16`: the device a run trains on and its precision (a CPU's "name"
    is its architecture, which says nothing useful here)."""
    where = str(device.get("device") or device.get("type") or "?")
    name = device.get("name")
    if name and device.get("type") not in (None, "cpu") and name != where:
        where += f" ({name})"
    precision = device.get("precision") or device.get("dtype")
    return " · ".join(str(part) for part in (where, precision, parallel) if part)
