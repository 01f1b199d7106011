"""Runs side by side: the table `alm runs compare` prints and the curves its PNG draws, from the same library
function (`alm.runs.comparison`), overlaid train loss and val bits per byte against step, tokens or time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from alm.dashboard.keys import HELP_BINDING, STOP_BINDING
from alm.dashboard.widgets.charts import (
    LINE_COLORS,
    SMOOTHING,
    Line,
    MetricChart,
    next_smoothing,
    smoothed,
    smoothing_text,
)
from alm.runs import (
    AXES,
    AXIS_TITLES,
    COMPARE_COLUMNS,
    Axis,
    Comparison,
    RunCurves,
    compare_cells,
    comparison,
)

if TYPE_CHECKING:
    from alm.dashboard.app import DashboardApp

TEXT_COLUMNS = ("run", "model", "status")


class CompareScreen(Screen):
    app: DashboardApp

    BINDINGS: ClassVar[list[BindingType]] = [
        STOP_BINDING,
        HELP_BINDING,
        Binding("escape", "app.pop_screen", "Back"),
        Binding("enter", "open_run", "Open run"),
        Binding("x", "axis", "Axis"),
        Binding("g", "log_scale", "Log y"),
        Binding("z", "smoothing", "Smooth"),
    ]

    def __init__(self, runs: list[Path]):
        super().__init__()
        self.runs = runs
        self.axis: Axis = AXES[0]
        self.log_y = False
        self.smoothing: float | None = SMOOTHING[0]
        self.compared = Comparison([])
        self._stamps: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="compare-status")
        with Horizontal(id="compare-charts"):
            yield MetricChart("train loss", id="compare-train")
            yield MetricChart("val bits per byte", id="compare-val")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "alm · compare"
        self.sub_title = ", ".join(path.name for path in self.runs)
        table = self.query_one("#compare-table", DataTable)
        for column in COMPARE_COLUMNS:
            table.add_column(column, key=column)
        table.focus()
        self.call_after_refresh(self.refresh_data)  # once mounted and sized: charts need their size

    def refresh_data(self) -> None:
        """Re-read the runs when one of their event files changed (a compared run may still be training)."""
        if not self.is_mounted:
            return
        stamps = tuple(_stamp(path / "events.jsonl") for path in self.runs)
        if stamps == self._stamps:
            return
        self._stamps = stamps
        self.compared = comparison(self.runs)
        self._show_table()
        self.draw_charts()

    def _show_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        selected = table.cursor_row
        table.clear()
        for index, run in enumerate(self.compared.runs):
            cells: list[object] = [
                Text(cell, justify="left" if column in TEXT_COLUMNS else "right")
                for column, cell in zip(COMPARE_COLUMNS, compare_cells(run.row), strict=True)
            ]
            cells[0] = Text(run.name, style=f"bold {_rich_color(index)}")  # the table is the charts' legend
            table.add_row(*cells, key=run.name)
        if 0 <= selected < table.row_count:
            table.move_cursor(row=selected)

    def _train_line(self, index: int, run: RunCurves) -> Line | None:
        raw = (run.loss.x(self.axis), run.loss.values)
        trainer = (run.loss_ema.x(self.axis), run.loss_ema.values)
        return smoothed(run.name, raw, trainer, self.smoothing, LINE_COLORS[index % len(LINE_COLORS)])

    def draw_charts(self) -> None:
        smoothing = smoothing_text(self.smoothing)
        raw = self.smoothing == 0  # smoothing off: the raw loss itself
        train = [
            Line(run.name, run.loss.x(self.axis), run.loss.values, LINE_COLORS[i % len(LINE_COLORS)])
            if raw
            else self._train_line(i, run)
            for i, run in enumerate(self.compared.runs)
        ]
        val = [
            Line(
                run.name,
                run.val_bpb.x(self.axis),
                run.val_bpb.values,
                LINE_COLORS[i % len(LINE_COLORS)],
                len(run.val_bpb) == 1,
            )
            for i, run in enumerate(self.compared.runs)
        ]
        log = " · log y" if self.log_y else ""
        self.query_one("#compare-train", MetricChart).draw(
            [line for line in train if line is not None],
            x_axis=self.axis,
            log_y=self.log_y,
            title=f"train loss ({smoothing}){log}",
        )
        self.query_one("#compare-val", MetricChart).draw(
            val, x_axis=self.axis, log_y=self.log_y, title=f"val bits per byte{log}"
        )
        self.query_one("#compare-status", Static).update(
            Text(
                f"x: {AXIS_TITLES[self.axis]} · log y: {'on' if self.log_y else 'off'} · smoothing: {smoothing}",
                style="dim",
            )
        )

    def action_axis(self) -> None:
        self.axis = AXES[(AXES.index(self.axis) + 1) % len(AXES)]
        self.draw_charts()

    def action_log_scale(self) -> None:
        self.log_y = not self.log_y
        self.draw_charts()

    def action_smoothing(self) -> None:
        self.smoothing = next_smoothing(self.smoothing)
        self.draw_charts()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(str(event.row_key.value))

    def action_open_run(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        if table.row_count:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
            self.app.open_run(str(row_key.value))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _rich_color(index: int) -> str:
    """The Rich name of the plotext colour LINE_COLORS[index] (`cyan+` is plotext's bright cyan)."""
    name = LINE_COLORS[index % len(LINE_COLORS)]
    return f"bright_{name[:-1]}" if name.endswith("+") else name
