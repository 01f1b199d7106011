"""A run's state folded from its events (schema 1 in docs/CONTRACTS.md); pure data, no Textual, no I/O."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from alm.runs import RunStatus

# How many step records the ETA and tok/s averages look back over.
RECENT_STEPS = 20
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


@dataclass
class RunState:
    """Everything the dashboard shows about a run, updated one event at a time (live or replayed)."""

    name: str
    start: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    error: str | None = None
    total_steps: int | None = None
    step: int = 0
    tokens: int = 0
    last_step: dict[str, Any] | None = None
    best_val_loss: float | None = None
    last_eval: dict[str, Any] | None = None
    first_time: float | None = None
    last_time: float | None = None
    loss: Series = field(default_factory=Series)
    loss_ema: Series = field(default_factory=Series)
    val_loss: Series = field(default_factory=Series)
    lr: Series = field(default_factory=Series)
    tok_per_s: Series = field(default_factory=Series)
    grad_norm: Series = field(default_factory=Series)
    recent_step_times: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))
    feed: deque[FeedItem] = field(default_factory=lambda: deque(maxlen=FEED_LIMIT))
    samples: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SAMPLE_LIMIT))
    checkpoints: dict[str, int] = field(default_factory=dict)  # kind or "step-N" -> step
    feed_total: int = 0  # items ever added to `feed` (a bounded deque), so views can append only the new ones
    samples_total: int = 0
    events_seen: int = 0
    version: int = 0  # bumped on every change so views redraw only when something changed

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        t = _num(event.get("time"))
        if t is not None:
            self.first_time = t if self.first_time is None else self.first_time
            self.last_time = t
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event, t or 0.0)
        self.events_seen += 1
        self.version += 1

    def extend(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    # --- one handler per event type -------------------------------------------------------------------------
    def _on_start(self, e: dict[str, Any], t: float) -> None:
        self.start, self.stop, self.error = (
            e,
            None,
            None,
        )  # a resume appends a new start: the run is live again
        self.total_steps = _int(e.get("total_steps")) or self.total_steps
        self.recent_step_times.clear()
        resumed = e.get("resumed_from")
        device = (e.get("device") or {}).get("name") or (e.get("device") or {}).get("type") or "?"
        what = f"resumed from step {resumed}" if resumed is not None else "started"
        self._feed(t, "start", _int(resumed), f"{what} on {device}")

    def _on_step(self, e: dict[str, Any], t: float) -> None:
        step = _int(e.get("step"))
        if step is None:
            return
        self.step, self.last_step = step, e
        self.tokens = _int(e.get("tokens")) or self.tokens
        self.loss.add(step, e.get("loss"))
        self.loss_ema.add(step, e.get("loss_ema"))
        self.lr.add(step, e.get("lr"))
        self.tok_per_s.add(step, e.get("tok_per_s"))
        self.grad_norm.add(step, e.get("grad_norm"))
        step_time = _num(e.get("step_time"))
        if step_time is not None and step_time > 0:
            self.recent_step_times.append(step_time)

    def _on_eval(self, e: dict[str, Any], t: float) -> None:
        step = _int(e.get("step")) or self.step
        self.last_eval = e
        self.val_loss.add(step, e.get("val_loss"))
        best = _num(e.get("best_val_loss"))
        if best is not None:
            self.best_val_loss = best
        val = _num(e.get("val_loss"))
        ppl = _num(e.get("val_ppl"))
        text = f"val loss {_fmt(val)}  ppl {_fmt(ppl, 2)}"
        if val is not None and best is not None and val <= best:
            text += "  (best)"
        self._feed(t, "eval", step, text)

    def _on_sample(self, e: dict[str, Any], t: float) -> None:
        self.samples.append(e)
        self.samples_total += 1

    def _on_checkpoint(self, e: dict[str, Any], t: float) -> None:
        step = _int(e.get("step"))
        kind = str(e.get("kind") or "step")
        key = f"step-{step}" if kind == "step" else kind
        if step is not None:
            self.checkpoints[key] = step
        self._feed(t, "checkpoint", step, f"{kind}  {e.get('path', '')}")

    def _on_warning(self, e: dict[str, Any], t: float) -> None:
        self._feed(t, "warning", _int(e.get("step")), str(e.get("message", "")))

    def _on_stop(self, e: dict[str, Any], t: float) -> None:
        self.stop = e
        self.step = max(self.step, _int(e.get("step")) or 0)  # steps are logged every N; the stop is exact
        reason = e.get("reason", "?")
        text = f"stopped: {reason}"
        if e.get("resume_command"):
            text += f"  — resume with: {e['resume_command']}"
        self._feed(t, "stop", _int(e.get("step")), text)

    def _on_error(self, e: dict[str, Any], t: float) -> None:
        self.error = str(e.get("message", "unknown error"))
        self._feed(t, "error", None, self.error)

    def _feed(self, t: float, kind: str, step: int | None, text: str) -> None:
        self.feed.append(FeedItem(t, kind, step, text))
        self.feed_total += 1

    # --- derived values -------------------------------------------------------------------------------------
    def status(self, trainer_alive: bool) -> RunStatus:
        """The same rule as `alm.runs.run_status`, kept incrementally: a live trainer is running; otherwise the
        last start/stop decides, and a trainer that vanished without a stop event (killed, OOM) has failed."""
        if trainer_alive:
            return "running"
        if self.stop is not None:
            reason = self.stop.get("reason")
            if reason == "finished":
                return "finished"
            return "interrupted" if reason == "interrupted" else "failed"
        return "unknown" if self.start is None else "failed"

    @property
    def progress(self) -> float | None:
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)

    @property
    def seconds_per_step(self) -> float | None:
        if not self.recent_step_times:
            return None
        return sum(self.recent_step_times) / len(self.recent_step_times)

    @property
    def eta_seconds(self) -> float | None:
        per_step = self.seconds_per_step
        if per_step is None or not self.total_steps:
            return None
        return max(0, self.total_steps - self.step) * per_step

    @property
    def device_type(self) -> str | None:
        device = (self.start or {}).get("device") or {}
        return device.get("type")

    @property
    def router(self) -> dict[str, Any] | None:
        router = (self.last_step or {}).get("router")
        return router if isinstance(router, dict) and router else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
