"""The one fold from a run's events to its summary, and the one rule for its status; torch-free, no I/O.

`alm runs list/compare`, the dashboard (whose `RunState` extends `RunSummary` with curves and a feed) and the
terminal progress of `alm train` all read a run through `RunSummary.apply`, so they cannot disagree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alm.events import ErrorEvent, EvalEvent, Event, StartEvent, StepEvent, StopEvent

RunStatus = Literal["running", "finished", "interrupted", "failed", "unknown"]
# An early stop ended the run by design (best.pt holds the best): a finished run. Other reasons: failed.
STOP_STATUS: dict[str, RunStatus] = {
    "finished": "finished",
    "early_stop": "finished",
    "interrupted": "interrupted",
}
RECENT_STEPS = 20  # step records the ETA averages over


@dataclass
class RunSummary:
    """A run as its events tell it, updated one event at a time (live or replayed)."""

    name: str = ""
    start: StartEvent | None = None  # the latest start (a resume appends one)
    stop: StopEvent | None = None  # the stop that ended the latest start; None while it has not stopped
    error: str | None = None
    total_steps: int | None = None
    # Step, tokens and loss always come from one step event together, never mixed with a later stop's step.
    last_step: StepEvent | None = None
    last_eval: EvalEvent | None = None
    best_val_loss: float | None = None
    best_val_bpb: float | None = None  # bits per byte at the best val loss
    best_val_step: int | None = None  # the step of the best val loss (what best.pt holds)
    first_time: float | None = None
    last_time: float | None = None
    recent_step_times: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_STEPS))
    # Training time of the starts before the latest one (a resume after a pause must not count the pause).
    earlier_seconds: float = 0.0

    def apply(self, event: Event) -> None:
        if isinstance(event, StartEvent) and self.start is not None:
            self.earlier_seconds = self.elapsed() or self.earlier_seconds
        if event.time is not None:
            self.first_time = event.time if self.first_time is None else self.first_time
            self.last_time = event.time
        if isinstance(event, StartEvent):
            self.start, self.stop, self.error = event, None, None  # a resumed run is live again
            self.total_steps = event.total_steps or self.total_steps
            self.recent_step_times.clear()
        elif isinstance(event, StepEvent) and event.step is not None:
            self.last_step = event
            if event.step_time is not None and event.step_time > 0:
                self.recent_step_times.append(event.step_time)
        elif isinstance(event, EvalEvent):
            self.last_eval = event
            if event.best_val_loss is not None:
                self.best_val_loss = event.best_val_loss
            if event.is_best:
                self.best_val_bpb, self.best_val_step = event.val_bpb, event.step
        elif isinstance(event, StopEvent):
            self.stop = event
        elif isinstance(event, ErrorEvent):
            self.error = event.message

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    def status(self, alive: bool) -> RunStatus:
        """A live trainer is `running`; otherwise the stop after the latest start decides, and a trainer that
        vanished without one (killed, out of memory) has `failed`."""
        if alive:
            return "running"
        if self.stop is not None:
            return STOP_STATUS.get(self.stop.reason, "failed")
        return "unknown" if self.start is None else "failed"

    @property
    def step(self) -> int:
        return (self.last_step.step or 0) if self.last_step else 0

    @property
    def tokens(self) -> int:
        return (self.last_step.tokens or 0) if self.last_step else 0

    @property
    def epochs(self) -> float | None:
        """Epochs of the training split seen at the latest step event."""
        return self.last_step.epochs if self.last_step else None

    @property
    def early_stop_patience(self) -> int:
        """Evals without a new best before the latest start stops (0: early stopping is off)."""
        return self.start.early_stop_patience if self.start else 0

    @property
    def progress(self) -> float | None:
        return min(1.0, self.step / self.total_steps) if self.total_steps else None

    @property
    def seconds_per_step(self) -> float | None:
        times = self.recent_step_times
        return sum(times) / len(times) if times else None

    @property
    def eta_seconds(self) -> float | None:
        per_step = self.seconds_per_step
        if per_step is None or not self.total_steps:
            return None
        return max(0, self.total_steps - self.step) * per_step

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds of training over every start of the run (pauses between a stop and its resume left out), up
        to `now` while the trainer lives, else up to its latest event."""
        started = self.start.time if self.start else None
        end = now if now is not None else self.last_time
        if started is None or end is None:
            return None
        return self.earlier_seconds + max(0.0, end - started)

    def eta(self, now: float | None = None) -> float | None:
        """`eta_seconds`, counted down from the latest step event to `now` (a live view between log steps)."""
        eta, logged = self.eta_seconds, self.last_step.time if self.last_step else None
        if eta is None or now is None or logged is None:
            return eta
        return max(0.0, eta - max(0.0, now - logged))

    @property
    def memory(self) -> float | None:
        """Bytes in use at the latest step (peak, else allocated, else the process's RSS on a CPU)."""
        return _memory_bytes(self.last_step.memory) if self.last_step else None

    @property
    def model_name(self) -> str | None:
        """What the run trains, for tables: its `--model` preset, else the shape of its resolved config (a file
        may have changed since)."""
        start = self.start
        if start is None:
            return None
        command = [str(word) for word in start.command]
        for flag in ("--model", "-m"):
            if flag in command[:-1]:
                chosen = command[command.index(flag) + 1]
                if "/" not in chosen and Path(chosen).suffix not in (".yaml", ".yml"):
                    return chosen
        model = start.config.get("model")
        if isinstance(model, dict) and model.get("n_layers") and model.get("d_model"):
            return f"{model['n_layers']}L·d{model['d_model']}"
        return None

    @property
    def params(self) -> int | None:
        total = (self.start.params if self.start else {}).get("total")
        return int(total) if isinstance(total, int | float) and not isinstance(total, bool) else None

    @property
    def device(self) -> dict[str, Any]:
        return self.start.device if self.start else {}

    @property
    def parallel(self) -> str | None:
        """How the latest start runs on several processes, e.g. `ddp × 2 (gloo)`; None for one process."""
        start = self.start
        if start is None or start.world_size <= 1:
            return None
        return f"{start.parallel} × {start.world_size}" + (f" ({start.backend})" if start.backend else "")

    @property
    def rank_memory(self) -> list[float | None]:
        """Bytes in use per rank at the latest step under torchrun (peak, else allocated, else RSS); [] otherwise."""
        ranks = (self.last_step.rank_memory if self.last_step else None) or []
        return [_memory_bytes(stats) for stats in ranks]

    @property
    def mode(self) -> str:
        """What the run trains: "pretrain", or the fine-tuning mode its config records ("sft", "dpo")."""
        section = (self.start.config if self.start else {}).get("finetune")
        return str(section.get("mode")) if isinstance(section, dict) else "pretrain"


def _memory_bytes(stats: Any) -> float | None:
    if not isinstance(stats, dict):
        return None
    value = stats.get("peak") or stats.get("allocated") or stats.get("rss")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


__all__ = ["RECENT_STEPS", "STOP_STATUS", "RunStatus", "RunSummary"]
