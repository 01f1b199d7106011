"""The table of runs: a mark for comparing, status, progress, best bpb, loss, model, size, speed and time.

Columns grow with their contents (a run going from 50/1,500 to 1,500/1,500 never shows a clipped cell), and rows
are keyed by run name so the cursor stays on its run while rows refresh, reorder or filter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from alm.dashboard.watch import RunWatch
from alm.format import ago, count, duration, number

STATUS_STYLE = {
    "running": "bold green",
    "finished": "blue",
    "interrupted": "yellow",
    "failed": "bold red",
    "unknown": "dim",
}
COLUMNS = (
    "✓",
    "Run",
    "Status",
    "Step",
    "Best bpb",
    "Loss",
    "Model",
    "Params",
    "tok/s",
    "Time",
    "Tokens",
    "Updated",
)
MARK = "●"


def status_text(status: str, stopping: bool = False) -> Text:
    label = "stopping…" if stopping and status == "running" else status
    return Text(f"● {label}", style=STATUS_STYLE.get(status, ""))


def _missing_last(value: float | None, reverse: bool) -> tuple[bool, float]:
    """Sort key putting runs without the figure after the others whichever the direction."""
    if value is None:
        return (not reverse, 0.0)
    return (reverse, value)


# name -> (sort key of a watch, highest first?)
SORTS: dict[str, tuple[Callable[[RunWatch], Any], bool]] = {
    "updated": (lambda w: (w.state.last_time or 0.0, w.name), True),
    "name": (lambda w: w.name, False),
    "status": (lambda w: (w.status, w.name), False),
    "best bpb": (lambda w: _missing_last(w.state.best_val_bpb, False), False),
    "loss": (lambda w: _missing_last(w.state.loss_ema.last or w.state.loss.last, False), False),
    "params": (lambda w: _missing_last(w.state.params, True), True),
    "tok/s": (
        lambda w: _missing_last(w.state.last_step.tok_per_s if w.state.last_step else None, True),
        True,
    ),
    "time": (lambda w: _missing_last(w.state.elapsed(), True), True),
}


def arrange(watches: Sequence[RunWatch], sort: str, query: str) -> list[RunWatch]:
    """The runs a filter `query` keeps (every word in the run's name, model or status), sorted by `sort`."""
    words = query.lower().split()
    kept = [
        w
        for w in watches
        if all(word in f"{w.name} {w.state.model_name or ''} {w.status}".lower() for word in words)
    ]
    key, reverse = SORTS[sort]
    return sorted(kept, key=key, reverse=reverse)


class RunsTable(DataTable):
    """One row per run, keyed by run name so the cursor stays on its run while rows refresh and reorder."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for name in COLUMNS:
            self.add_column(name, key=name)

    @property
    def selected_run(self) -> str | None:
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    def select(self, name: str) -> bool:
        """Put the cursor on run `name` if it is shown."""
        keys = [row.value for row in self.rows]
        if name in keys:
            self.move_cursor(row=keys.index(name))
            return True
        return False

    def show(
        self,
        watches: list[RunWatch],
        now: float,
        stopping: frozenset[str] | set[str] = frozenset(),
        marked: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        selected = self.selected_run
        keys = [w.name for w in watches]
        if keys != [row.value for row in self.rows]:
            self.clear()
            for watch in watches:
                cells = self._cells(watch, now, watch.name in stopping, watch.name in marked)
                self.add_row(*cells, key=watch.name)
            if selected in keys:
                self.move_cursor(row=keys.index(selected))
            return
        for watch in watches:
            cells = self._cells(watch, now, watch.name in stopping, watch.name in marked)
            for column, cell in zip(COLUMNS, cells, strict=True):
                self.update_cell(watch.name, column, cell, update_width=True)

    @staticmethod
    def _cells(watch: RunWatch, now: float, stopping: bool, marked: bool) -> tuple[object, ...]:
        state = watch.state
        total = f"/{state.total_steps:,}" if state.total_steps else ""
        rate = state.last_step.tok_per_s if state.last_step else None
        running = watch.status == "running"
        return (
            Text(MARK if marked else " ", style="bold cyan"),
            Text(watch.name, style="bold"),
            status_text(watch.status, stopping),
            Text(f"{state.step:,}{total}", justify="right"),
            Text(number(state.best_val_bpb, 3), justify="right"),
            Text(number(state.loss_ema.last or state.loss.last), justify="right"),
            Text(state.model_name or "—"),
            Text(count(state.params), justify="right"),
            Text(count(rate), justify="right"),
            Text(duration(state.elapsed(now if running else None)), justify="right"),
            Text(count(state.tokens) if state.tokens else "—", justify="right"),
            Text(ago(state.last_time, now), style="dim"),
        )
