"""Training progress for people: a live Rich panel on a terminal, plain lines in logs, or nothing.

A renderer is a sink of the trainer's events, exactly like events.jsonl: it reads the run through the same fold
(`alm.summary.RunSummary`) as `alm runs` and the dashboard. Step events move the figures (plain progress prints a
line for each); evals, samples, checkpoints (one line per save) and warnings print a line above the live panel.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from alm.events import (
    CheckpointEvent,
    EvalEvent,
    Event,
    SampleEvent,
    StartEvent,
    StepEvent,
    StopEvent,
    WarningEvent,
)
from alm.format import count, duration, number, scientific
from alm.summary import RunSummary


class Progress:
    """Shows nothing (`--progress none`); the base of the renderers, which keep the run's summary."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.summary = RunSummary()
        self.saved: list[CheckpointEvent] = []  # the files of one save (an event each), shown as one line

    def write(self, event: Event) -> None:
        self.summary.apply(event)
        if isinstance(event, CheckpointEvent) and all(e.step == event.step for e in self.saved):
            self.saved.append(event)
            return
        self.flush_saved()
        if isinstance(event, CheckpointEvent):
            self.saved.append(event)
        elif isinstance(event, StepEvent):
            self.on_step()
        elif (line := self.line_for(event)) is not None:
            self.note(line)

    def flush_saved(self) -> None:
        if self.saved:
            names = ", ".join(Path(e.path).name for e in self.saved)
            self.note(f"[dim]checkpoint step {self.saved[0].step}: {names}[/]")
            self.saved.clear()

    def line_for(self, event: Event) -> str | None:
        """The line an event prints above the figures (None: it only updates them)."""
        if isinstance(event, StartEvent):
            return start_lines(event)
        if isinstance(event, EvalEvent):
            ppl = f"  ppl {number(event.val_ppl, 2)}" if event.val_ppl is not None else ""
            bpb = f"  bpb {event.val_bpb:.3f}" if event.val_bpb is not None else ""
            best = "  [green](best)[/]" if event.is_best else ""
            return (
                f"[cyan]eval[/] step {event.step}: val loss {number(event.val_loss)}"
                f"{ppl}{bpb}{shown_metrics(event.metrics)}{best}"
            )
        if isinstance(event, SampleEvent):
            return f"[magenta]sample[/] step {event.step}:\n{escape((event.prompt + event.text).strip())}"
        if isinstance(event, WarningEvent):
            return f"[yellow]warning:[/] {escape(event.message)}"
        if isinstance(event, StopEvent) and event.reason == "early_stop":
            return f"[yellow]early stop[/] at step {event.step}: {escape(event.detail)}"
        return None

    def on_step(self) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        self.flush_saved()

    # -- what the figures say ----------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        start = self.summary.start
        if start is None:
            return "training"
        device = start.device
        parts = (start.run, device.get("device"), device.get("precision"), self.summary.parallel)
        return " · ".join(str(part) for part in parts if part)

    def position_line(self) -> str:
        s, start = self.summary, self.summary.start
        step = s.step
        if s.last_step is None and start is not None:  # resumed, nothing logged yet
            step = start.resumed_from or 0
        total = s.total_steps or 0
        pct = 100.0 * step / total if total else 0.0
        elapsed = time.time() - start.time if start and start.time is not None else None
        return f"{pct:5.1f}%  step {step}/{total}  elapsed {duration(elapsed)}  ETA {duration(s.eta_seconds)}"

    def metrics_parts(self) -> tuple[str, str]:
        """(optimisation figures, throughput and progress figures)."""
        s = self.summary
        e = s.last_step or StepEvent(time=None)
        optimisation = (
            f"loss {number(e.loss)} (ema {number(e.loss_ema)})  lr {scientific(e.lr)}  "
            f"grad norm {number(e.grad_norm, 3)}{shown_metrics(e.metrics)}"
        )
        tokens = count(s.tokens) + (f" ({s.epochs:.2f} epochs)" if s.epochs is not None else "")
        throughput = f"tok/s {count(e.tok_per_s)}  tokens {tokens}  best val {number(s.best_val_loss)}"
        return optimisation, throughput


# An objective's figures worth a place on the one-line panel (DPO's), by their label there.
SHOWN_METRICS = {"reward_accuracy": "reward acc", "reward_margin": "margin"}


def shown_metrics(metrics: dict[str, Any] | None) -> str:
    found = metrics or {}
    return "".join(
        f"  {label} {number(found[key], 3)}" for key, label in SHOWN_METRICS.items() if key in found
    )


def start_lines(event: StartEvent) -> str | None:
    """What a start says above the figures: a resume and its changes, and whether early stopping is on."""
    lines = []
    if event.resumed_from is not None:
        changed = ", ".join(f"{k}={v[-1]}" for k, v in event.changes.items() if isinstance(v, list) and v)
        lines.append(f"resuming from step {event.resumed_from}" + (f" with {changed}" if changed else ""))
    if event.early_stop_patience:
        planned = f" ({event.planned_epochs:.1f} epochs planned)" if event.planned_epochs is not None else ""
        lines.append(f"early stopping on: patience {event.early_stop_patience} evals{planned}")
    return "\n".join(lines) or None


class PlainProgress(Progress):
    """A line per logged step, for logs and pipes."""

    def on_step(self) -> None:
        self.note(f"{self.position_line()}  {'  '.join(self.metrics_parts())}")

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


class RichProgress(Progress):
    """A live panel: bar, position, timing and the latest figures; other lines scroll above it."""

    def __init__(self, console: Console | None = None):
        from rich.live import Live

        super().__init__(console)
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> RenderableType:
        s = self.summary
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_row(ProgressBar(total=max(1, s.total_steps or 0), completed=s.step))
        grid.add_row(Text(self.position_line(), style="bold"))
        for part in self.metrics_parts():
            grid.add_row(Text(part))
        if s.rank_memory:  # under torchrun: is any rank short of memory?
            grid.add_row(Text("memory per rank  " + "  ".join(f"{count(m)}B" for m in s.rank_memory)))
        return Panel(Group(grid), title=self.title, title_align="left", border_style="cyan")

    def write(self, event: Event) -> None:
        if not self.live.is_started:
            self.live.start()
        super().write(event)

    def note(self, text: str) -> None:
        self.live.console.print(text, highlight=False)

    def close(self) -> None:
        super().close()
        if self.live.is_started:
            self.live.refresh()
            self.live.stop()


def make_progress(mode: str, console: Console | None = None) -> Progress:
    """`auto` is a live panel on a terminal and plain lines otherwise; `none` shows nothing."""
    console = console or Console(highlight=False)
    if mode == "auto":
        mode = "rich" if console.is_terminal and sys.stdout.isatty() else "plain"
    cls = {"rich": RichProgress, "plain": PlainProgress, "none": Progress}[mode]
    return cls(console)


__all__ = ["PlainProgress", "Progress", "RichProgress", "make_progress"]
