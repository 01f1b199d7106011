"""The run's headline numbers: status, progress bar, ETA, loss, lr, throughput, grad norm, router balance.

Elapsed and ETA move with the clock while the trainer lives (not only when an event arrives), and elapsed
covers every start of the run, so a resume never restarts it at zero.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from alm.dashboard.state import RunState, device_text
from alm.dashboard.widgets.runs_table import status_text
from alm.events import EvalEvent, StepEvent
from alm.format import count, duration, number, scientific

BAR_WIDTH = 30


class RunStats(Static):
    """Renders a RunState as a compact key/value panel; `show()` is cheap enough to call on every poll."""

    def show(
        self,
        state: RunState,
        status: str,
        *,
        now: float | None = None,
        stopping: bool = False,
        exit_note: str | None = None,
    ) -> None:
        self.update(render_stats(state, status, now=now, stopping=stopping, exit_note=exit_note))


def render_stats(
    state: RunState,
    status: str,
    *,
    now: float | None = None,
    stopping: bool = False,
    exit_note: str | None = None,
) -> Group:
    step = state.last_step or StepEvent(time=None)
    total = f" / {state.total_steps:,}" if state.total_steps else ""
    progress = state.progress
    head = Text.assemble(status_text(status, stopping), "  ", (f"step {state.step:,}{total}", "bold"))
    if progress is not None:
        head.append(f"  {progress:.1%}")
    bar = progress_bar(progress or 0.0, BAR_WIDTH)

    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    running = status == "running"
    clock = now if running else None  # a stopped run's times end at its last event
    grid.add_row("ETA", duration(state.eta(clock)) if running else "—")
    grid.add_row("elapsed", duration(state.elapsed(clock)))
    grid.add_row("loss", f"{number(state.loss_ema.last)} EMA  {number(state.loss.last)} raw")
    val = state.last_eval or EvalEvent(time=None)
    grid.add_row("val", f"{number(val.val_loss)}  best {number(state.best_val_loss)}")
    grid.add_row("bpb", f"{number(val.val_bpb, 3)}  best {number(state.best_val_bpb, 3)}")
    grid.add_row("lr", scientific(step.lr))
    grid.add_row("tok/s", count(step.tok_per_s))
    grid.add_row("grad norm", number(step.grad_norm, 3))
    tokens = count(state.tokens) if state.tokens else "—"
    epochs = state.epochs
    grid.add_row("tokens", tokens + (f"  ({epochs:.2f} epochs)" if epochs is not None else ""))
    grid.add_row("model", f"{state.model_name or '—'} · {count(state.params)} params")
    grid.add_row("device", device_text(state.device, state.parallel) if state.device else "—")
    if state.rank_memory:  # under torchrun: every rank's
        grid.add_row("memory", "  ".join(f"{count(m)}B" for m in state.rank_memory))
    else:
        grid.add_row("memory", f"{count(state.memory)}B" if state.memory else "—")
    for name, series in sorted(state.metrics.items()):
        grid.add_row(name.replace("_", " "), number(series.last, 3))
    for label, value in _router_rows(state.router):
        grid.add_row(label, value)
    parts: list[Any] = [head, bar, grid]
    if stopping and running:
        parts.append(Text("stop requested: finishing the step, saving last.pt…", style="yellow"))
    parts += _outcome(state, status, exit_note)
    return Group(*parts)


def _outcome(state: RunState, status: str, exit_note: str | None) -> list[Text]:
    """How the run ended and what to do next, in the dashboard's own keys."""
    if status == "running":
        return []
    lines = []
    stop = state.stop
    if exit_note:
        lines.append(
            Text(exit_note, style="red" if exit_note.startswith(("trainer failed", "killed")) else "yellow")
        )
    elif status == "failed" and stop is None and state.error is None and state.start is not None:
        lines.append(
            Text(
                "the trainer ended without a stop event: it was killed (out of memory, or a kill -9) or crashed. "
                "The Log tab (l) has its output.",
                style="red",
            )
        )
    if state.error:
        lines.append(Text(f"error: {state.error}", style="red"))
    if stop is not None and stop.detail and not exit_note:
        lines.append(Text(stop.detail, style="green" if status == "finished" else "yellow"))
    if status == "interrupted" and stop is not None and stop.resume_command:
        lines.append(Text(f"resume: {stop.resume_command}  (r) · R restarts it with changes", style="dim"))
    elif status in ("failed", "finished"):
        lines.append(Text("R restarts it as a new run with changes (e.g. --set train.lr=…)", style="dim"))
    return lines


def progress_bar(fraction: float, width: int) -> Text:
    """A one-line bar (Rich's ProgressBar animates with the wall clock, which snapshots must not depend on)."""
    done = round(max(0.0, min(1.0, fraction)) * width)
    return Text.assemble(("━" * done, "green"), ("━" * (width - done), "dim"))


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _router_rows(router: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Per-layer router statistics (e.g. frac_large, overflow) as the mean and the range over layers."""
    rows = []
    for key, values in sorted((router or {}).items()):
        listed = values if isinstance(values, list) else [values]
        numbers = [number for v in listed if (number := _f(v)) is not None]
        if numbers:
            mean = sum(numbers) / len(numbers)
            spread = f" [{min(numbers):.2f}–{max(numbers):.2f}]" if len(numbers) > 1 else ""
            rows.append((f"router {key}", f"{mean:.3f}{spread}"))
    return rows
