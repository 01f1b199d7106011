"""The run's headline numbers: status, progress bar, ETA, loss, lr, throughput, grad norm, router balance."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from alm.dashboard import format as fmt
from alm.dashboard.state import RunState
from alm.dashboard.widgets.runs_table import status_text

BAR_WIDTH = 40


class RunStats(Static):
    """Renders a RunState as a compact key/value panel; `show()` is cheap enough to call on every poll."""

    def show(
        self, state: RunState, status: str, *, stopping: bool = False, exit_note: str | None = None
    ) -> None:
        self.update(render_stats(state, status, stopping=stopping, exit_note=exit_note))


def render_stats(
    state: RunState, status: str, *, stopping: bool = False, exit_note: str | None = None
) -> Group:
    step = state.last_step or {}
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
    grid.add_row("ETA", fmt.duration(state.eta_seconds) if running else "—")
    grid.add_row("elapsed", fmt.duration(_elapsed(state)))
    grid.add_row("loss", f"{fmt.number(state.loss_ema.last)} EMA  {fmt.number(state.loss.last)} raw")
    val = state.last_eval or {}
    grid.add_row(
        "val",
        f"{fmt.number(_f(val.get('val_loss')))}  best {fmt.number(state.best_val_loss)}  "
        f"bpb {fmt.number(_f(val.get('val_bpb')), 3)}",
    )
    lr = _f(step.get("lr"))
    grid.add_row("lr", "—" if lr is None else f"{lr:.2e}")
    grid.add_row("tok/s", fmt.si(_f(step.get("tok_per_s"))))
    grid.add_row("grad norm", fmt.number(_f(step.get("grad_norm")), 3))
    grid.add_row("tokens", fmt.si(state.tokens) if state.tokens else "—")
    grid.add_row("device", _device(state))
    params = ((state.start or {}).get("params") or {}).get("total")
    grid.add_row("params", fmt.si(_f(params)))
    memory = step.get("memory") or {}
    if isinstance(memory, dict) and memory:
        peak = memory.get("peak") or memory.get("allocated")
        grid.add_row("memory", f"{fmt.si(_f(peak))}B")
    for label, value in _router_rows(state.router):
        grid.add_row(label, value)
    parts: list[Any] = [head, bar, grid]
    if stopping and running:
        parts.append(Text("stop requested: finishing the step, saving last.pt…", style="yellow"))
    if state.stop and state.stop.get("resume_command") and not running:
        parts.append(Text(f"resume: {state.stop['resume_command']}  (r)", style="dim"))
    if state.error:
        parts.append(Text(f"error: {state.error}", style="red"))
    if exit_note:
        parts.append(Text(exit_note, style="red" if "failed" in exit_note else "yellow"))
    return Group(*parts)


def progress_bar(fraction: float, width: int) -> Text:
    """A one-line bar (Rich's ProgressBar animates with the wall clock, which snapshots must not depend on)."""
    done = round(max(0.0, min(1.0, fraction)) * width)
    return Text.assemble(("━" * done, "green"), ("━" * (width - done), "dim"))


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _elapsed(state: RunState) -> float | None:
    started = _f((state.start or {}).get("time"))
    if started is None or state.last_time is None:
        return None
    return state.last_time - started


def _device(state: RunState) -> str:
    device = (state.start or {}).get("device") or {}
    name = device.get("device") or device.get("type") or "—"
    precision = device.get("precision") or device.get("dtype")
    return f"{name} · {precision}" if precision else str(name)


def _router_rows(router: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Per-layer router statistics (e.g. frac_large, overflow) as the mean and the range over layers."""
    rows = []
    for key, values in sorted((router or {}).items()):
        numbers = [float(v) for v in values if _f(v) is not None] if isinstance(values, list) else []
        if not numbers and _f(values) is not None:
            numbers = [float(values)]
        if numbers:
            mean = sum(numbers) / len(numbers)
            spread = f" [{min(numbers):.2f}–{max(numbers):.2f}]" if len(numbers) > 1 else ""
            rows.append((f"router {key}", f"{mean:.3f}{spread}"))
    return rows
