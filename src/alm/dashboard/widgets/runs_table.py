"""The table of runs: status, progress, tokens, losses and when each last wrote an event."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from alm.dashboard import format as fmt
from alm.dashboard.watch import RunWatch

STATUS_STYLE = {
    "running": "bold green",
    "finished": "blue",
    "interrupted": "yellow",
    "failed": "bold red",
    "unknown": "dim",
}
COLUMNS = ("Run", "Status", "Step", "Done", "Tokens", "Loss", "Best val", "Updated")


def status_text(status: str, stopping: bool = False) -> Text:
    label = "stopping…" if stopping and status == "running" else status
    return Text(f"● {label}", style=STATUS_STYLE.get(status, ""))


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

    def show(self, watches: list[RunWatch], now: float, stopping: frozenset[str] = frozenset()) -> None:
        selected = self.selected_run
        keys = [w.name for w in watches]
        if keys != [row.value for row in self.rows]:
            self.clear()
            for watch in watches:
                self.add_row(*self._cells(watch, now, watch.name in stopping), key=watch.name)
            if selected in keys:
                self.move_cursor(row=keys.index(selected))
            return
        for watch in watches:
            for column, cell in zip(COLUMNS, self._cells(watch, now, watch.name in stopping), strict=True):
                self.update_cell(watch.name, column, cell)

    @staticmethod
    def _cells(watch: RunWatch, now: float, stopping: bool) -> tuple[object, ...]:
        state = watch.state
        total = f"/{state.total_steps:,}" if state.total_steps else ""
        progress = state.progress
        return (
            Text(watch.name, style="bold"),
            status_text(watch.status, stopping),
            Text(f"{state.step:,}{total}", justify="right"),
            Text("—" if progress is None else f"{progress:.0%}", justify="right"),
            Text(fmt.si(state.tokens) if state.tokens else "—", justify="right"),
            Text(fmt.number(state.loss_ema.last or state.loss.last), justify="right"),
            Text(fmt.number(state.best_val_loss), justify="right"),
            Text(fmt.ago(state.last_time, now), style="dim"),
        )
