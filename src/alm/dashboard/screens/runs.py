"""The home screen: every run under the runs directory, refreshed while the dashboard is open."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from alm.dashboard.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from alm.dashboard.app import DashboardApp


class RunsScreen(Screen):
    app: DashboardApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open_run", "Open", show=True),
        Binding("r", "app.resume_run", "Resume"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.app.runs_dir)
        self.refresh_data()
        self.query_one(RunsTable).focus()

    @property
    def selected_run(self) -> str | None:
        return self.query_one(RunsTable).selected_run

    def refresh_data(self) -> None:
        if not self.is_mounted:  # the app polls on a timer; this screen may still be composing
            return
        watches = self.app.book.ordered()
        self.query_one(RunsTable).show(watches, self.app.clock(), self.app.stopping)
        empty = self.query_one("#runs-empty", Static)
        empty.display = not watches
        if not watches:
            where = self.app.runs_dir
            exists = "" if where.is_dir() else " (it does not exist yet)"
            empty.update(Text(f"No runs under {where}/{exists}.\nPress n to start one, or ? for help."))

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(str(event.row_key.value))

    def action_open_run(self) -> None:
        if self.selected_run:
            self.app.open_run(self.selected_run)
