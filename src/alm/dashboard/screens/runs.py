"""The home screen: every run under the runs directory, refreshed while the dashboard is open. Runs can be
sorted, filtered, marked for a comparison, opened, resumed, restarted with changes and deleted from here."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from alm.dashboard.keys import HELP_BINDING, STOP_BINDING
from alm.dashboard.widgets.runs_table import SORTS, RunsTable, arrange

if TYPE_CHECKING:
    from alm.dashboard.app import DashboardApp


class RunsScreen(Screen):
    app: DashboardApp

    BINDINGS: ClassVar[list[BindingType]] = [
        STOP_BINDING,
        HELP_BINDING,
        Binding("enter", "open_run", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("c", "app.compare", "Compare"),
        Binding("r", "app.resume_run", "Resume"),
        Binding("R", "app.restart_run", "Restart…", key_display="R"),
        Binding("v", "app.view_config", "Config"),
        Binding("d,delete", "app.delete_run", "Delete…"),
        Binding("o", "sort", "Sort"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.marked: set[str] = set()  # runs chosen for a comparison (or a delete)
        self.sort = "updated"
        self._known: set[str] | None = None  # runs seen so far: a new one takes the cursor
        self._follow: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-status")
        yield Static("", id="runs-empty")
        yield RunsTable(id="runs-table")
        yield Input(placeholder="filter: words in the run's name, model or status", id="runs-filter")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.app.runs_dir)
        self.query_one("#runs-filter", Input).display = False
        self.refresh_data()
        self.query_one(RunsTable).focus()

    @property
    def selected_run(self) -> str | None:
        return self.query_one(RunsTable).selected_run

    @property
    def query_text(self) -> str:
        return self.query_one("#runs-filter", Input).value

    def follow(self, name: str) -> None:
        """Put the cursor on `name` as soon as it is listed (a run just started)."""
        self._follow = name
        self.refresh_data()

    def refresh_data(self) -> None:
        if not self.is_mounted:  # the app polls on a timer; this screen may still be composing
            return
        everything = self.app.book.ordered()
        names = {w.name for w in everything}
        self.marked &= names
        if self._known is not None and self._follow is None:
            fresh = sorted(names - self._known)
            self._follow = fresh[-1] if fresh else None
        self._known = names
        watches = arrange(everything, self.sort, self.query_text)
        table = self.query_one(RunsTable)
        table.show(watches, self.app.clock(), self.app.stopping, self.marked)
        if self._follow is not None and table.select(self._follow):
            self._follow = None
        table.display = bool(watches)
        self._show_status(len(everything), len(watches))
        empty = self.query_one("#runs-empty", Static)
        empty.display = not watches
        if not everything:
            where = self.app.runs_dir
            exists = "" if where.is_dir() else " (it does not exist yet)"
            empty.update(Text(f"No runs under {where}/{exists}.\nPress n to start one, or ? for help."))
        elif not watches:
            empty.update(Text(f"No run matches the filter {self.query_text!r}. Press esc to clear it."))

    def _show_status(self, total: int, shown: int) -> None:
        parts = [f"{total} run{'s' * (total != 1)}", f"sorted by {self.sort} (o)"]
        if self.query_text:
            parts.append(f"filter {self.query_text!r}: {shown} shown (esc clears)")
        if self.marked:
            parts.append(f"{len(self.marked)} marked — c compares, d deletes")
        else:
            parts.append("space marks runs to compare")
        self.query_one("#runs-status", Static).update(Text(" · ".join(parts), style="dim"))

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.app.open_run(str(event.row_key.value))

    def action_open_run(self) -> None:
        if self.selected_run:
            self.app.open_run(self.selected_run)

    def action_mark(self) -> None:
        name = self.selected_run
        if name is None:
            return
        self.marked ^= {name}
        table = self.query_one(RunsTable)
        self.refresh_data()
        table.action_cursor_down()

    def action_sort(self) -> None:
        order = list(SORTS)
        self.sort = order[(order.index(self.sort) + 1) % len(order)]
        self.refresh_data()

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if box.value or box.display:
            box.value = ""
            box.display = False
            self.query_one(RunsTable).focus()
            self.refresh_data()

    @on(Input.Changed, "#runs-filter")
    def _filtered(self) -> None:
        self.refresh_data()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = bool(box.value)
        self.query_one(RunsTable).focus()
