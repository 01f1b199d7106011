"""Training progress for people: a live Rich panel on a terminal, plain lines in logs, or nothing.

The trainer calls `advance(step, tokens)` every optimizer step (host-side numbers only, no device sync) and
`update(metrics)` at log intervals, when it has synced the loss anyway. `note(text)` prints an eval, sample or
checkpoint line above the live panel (or as a plain line).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

PLAIN_MIN_SECONDS = 30.0  # a plain line at least this often even when log steps are far apart
RATE_WINDOW = 50  # recent steps used for the ETA


def format_duration(seconds: float | None) -> str:
    """3725 -> '1h02m', 185 -> '3m05s', 9.4 -> '9s'; None/negative -> '--'."""
    if seconds is None or seconds < 0 or seconds != seconds:
        return "--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_count(value: float | None) -> str:
    """1234 -> '1.2k', 5_600_000 -> '5.6M'; small numbers stay whole."""
    if value is None:
        return "--"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


def format_float(value: float | None, spec: str = ".4f") -> str:
    return "--" if value is None else format(value, spec)


class RateMeter:
    """Steps per second over the most recent steps, for an ETA that follows speed changes."""

    def __init__(self, window: int = RATE_WINDOW):
        self.points: deque[tuple[float, int]] = deque(maxlen=window)

    def add(self, step: int, now: float | None = None) -> None:
        self.points.append((time.perf_counter() if now is None else now, step))

    def steps_per_second(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def eta(self, remaining_steps: int) -> float | None:
        rate = self.steps_per_second()
        return remaining_steps / rate if rate else None


@dataclass
class ProgressState:
    total_steps: int
    step: int = 0
    tokens: int = 0
    start_step: int = 0
    started: float = field(default_factory=time.perf_counter)
    metrics: dict[str, Any] = field(default_factory=dict)
    rate: RateMeter = field(default_factory=RateMeter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def eta(self) -> float | None:
        return self.rate.eta(self.total_steps - self.step)

    def metrics_parts(self) -> tuple[str, str]:
        """(optimisation figures, throughput and progress figures)."""
        m = self.metrics
        optimisation = (
            f"loss {format_float(m.get('loss'))} (ema {format_float(m.get('loss_ema'))})  "
            f"lr {format_float(m.get('lr'), '.2e')}  grad norm {format_float(m.get('grad_norm'), '.3f')}"
        )
        throughput = (
            f"tok/s {format_count(m.get('tok_per_s'))}  tokens {format_count(self.tokens)}  "
            f"best val {format_float(m.get('best_val_loss'))}"
        )
        return optimisation, throughput

    def metrics_line(self) -> str:
        return "  ".join(self.metrics_parts())

    def position_line(self) -> str:
        pct = 100.0 * self.step / self.total_steps if self.total_steps else 0.0
        return (
            f"{pct:5.1f}%  step {self.step}/{self.total_steps}  "
            f"elapsed {format_duration(self.elapsed)}  ETA {format_duration(self.eta)}"
        )


class NullProgress:
    """Progress that shows nothing (`--progress none`, non-zero ranks); notes still reach the console."""

    def __init__(
        self, total_steps: int, *, console: Console | None = None, title: str = "", quiet: bool = True
    ):
        self.state = ProgressState(total_steps)
        self.console = console or Console(highlight=False)
        self.title = title
        self.quiet = quiet

    def start(self, step: int, tokens: int) -> None:
        self.state.step = self.state.start_step = step
        self.state.tokens = tokens
        self.state.started = time.perf_counter()
        self.state.rate.add(step)

    def advance(self, step: int, tokens: int) -> None:
        self.state.step, self.state.tokens = step, tokens
        self.state.rate.add(step)

    def update(self, metrics: dict[str, Any]) -> None:
        """New figures at a log step (plain progress prints a line)."""
        self.state.metrics.update(metrics)
        if "step" in metrics:
            self.state.step = metrics["step"]
            self.state.tokens = metrics.get("tokens", self.state.tokens)

    def set(self, **metrics: Any) -> None:
        """Update figures shown with the next refresh or line, printing nothing (e.g. a new best val loss)."""
        self.state.metrics.update(metrics)

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

    def close(self) -> None:
        pass

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainProgress(NullProgress):
    """One line per log interval (and at least every 30 s), for logs and pipes."""

    def __init__(
        self, total_steps: int, *, console: Console | None = None, title: str = "", quiet: bool = False
    ):
        super().__init__(total_steps, console=console, title=title, quiet=quiet)
        self._last_print = time.perf_counter()

    def _print(self) -> None:
        self._last_print = time.perf_counter()
        line = f"{self.state.position_line()}  {self.state.metrics_line()}"
        self.console.print(line, highlight=False, soft_wrap=True)

    def advance(self, step: int, tokens: int) -> None:
        super().advance(step, tokens)
        if time.perf_counter() - self._last_print >= PLAIN_MIN_SECONDS:
            self._print()

    def update(self, metrics: dict[str, Any]) -> None:
        super().update(metrics)
        self._print()


class RichProgress(NullProgress):
    """A live panel: bar, position, timing, and the latest metrics; notes scroll above it."""

    def __init__(
        self, total_steps: int, *, console: Console | None = None, title: str = "", quiet: bool = False
    ):
        from rich.live import Live

        super().__init__(total_steps, console=console, title=title, quiet=quiet)
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> RenderableType:
        state = self.state
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_row(ProgressBar(total=max(1, state.total_steps), completed=state.step))
        grid.add_row(Text(state.position_line(), style="bold"))
        for part in state.metrics_parts():
            grid.add_row(Text(part))
        return Panel(Group(grid), title=self.title or "training", title_align="left", border_style="cyan")

    def start(self, step: int, tokens: int) -> None:
        super().start(step, tokens)
        self.live.start()

    def note(self, text: str) -> None:
        self.live.console.print(text, highlight=False)

    def close(self) -> None:
        if self.live.is_started:
            self.live.refresh()
            self.live.stop()


def make_progress(
    mode: str, total_steps: int, *, console: Console | None = None, title: str = "", enabled: bool = True
) -> NullProgress:
    """`auto` is a live panel on a terminal and plain lines otherwise; a disabled (non-zero rank) one is silent."""
    console = console or Console(highlight=False)
    if not enabled:
        return NullProgress(total_steps, console=console, title=title, quiet=True)
    if mode == "auto":
        mode = "rich" if console.is_terminal and sys.stdout.isatty() else "plain"
    cls = {"rich": RichProgress, "plain": PlainProgress, "none": NullProgress}[mode]
    return cls(total_steps, console=console, title=title, quiet=mode == "none")
