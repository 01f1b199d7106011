"""One run: live (tailing events.jsonl) or replayed — stats, curves, event feed, samples, sampling and the log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, TabbedContent, TabPane

from alm.dashboard.watch import LOG_FILE, RunWatch
from alm.dashboard.widgets.charts import Line, MetricChart
from alm.dashboard.widgets.feed import EventFeed, TrainingSamples
from alm.dashboard.widgets.log_view import LogView
from alm.dashboard.widgets.sample_pane import SamplePane
from alm.dashboard.widgets.stats import RunStats

if TYPE_CHECKING:
    from alm.dashboard.app import DashboardApp

# Curves are redrawn at most this often: plotting is the costly part of a refresh.
CHART_INTERVAL_S = 0.5


class RunScreen(Screen):
    app: DashboardApp

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Runs"),
        Binding("r", "app.resume_run", "Resume"),
        Binding("m", "tab('monitor')", "Monitor", show=False),
        Binding("s", "tab('sample')", "Sample"),
        Binding("l", "tab('log')", "Log", show=False),
    ]

    def __init__(self, watch: RunWatch):
        super().__init__()
        self.run_watch = watch
        self._charted_version = -1
        self._charted_at = 0.0
        self._shown: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="monitor", id="run-tabs"):
            with TabPane("Monitor", id="monitor"):
                with Horizontal(id="monitor-top"):
                    yield RunStats(id="run-stats")
                    with Vertical(id="charts"):
                        yield MetricChart("loss: raw · EMA · val", id="chart-loss")
                        with Horizontal(id="charts-small"):
                            yield MetricChart("learning rate", id="chart-lr")
                            yield MetricChart("tok/s", id="chart-tps")
                            yield MetricChart("grad norm", id="chart-grad")
                with TabbedContent(initial="feed", id="monitor-bottom"):
                    with TabPane("Events", id="feed"):
                        yield EventFeed(id="event-feed")
                    with TabPane("Samples", id="samples"):
                        yield TrainingSamples(id="training-samples")
            with TabPane("Sample", id="sample"):
                yield SamplePane(self.run_watch.path, id="sample-pane")
            with TabPane("Log", id="log"):
                yield LogView(id="train-log")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"alm · {self.run_watch.name}"
        self.sub_title = str(self.run_watch.path)
        self.refresh_data()

    @property
    def run_name(self) -> str:
        return self.run_watch.name

    def refresh_data(self) -> None:
        """Called by the app after it polled this run; redraws what changed (curves at most a few times a second)."""
        if not self.is_mounted:  # the app polls on a timer; this screen may still be composing
            return
        watch, state = self.run_watch, self.run_watch.state
        status = watch.status
        stopping = watch.name in self.app.stopping
        exit_note = self.app.exit_notes.get(watch.name)
        pane = self.query_one(SamplePane)
        shown = (state.version, status, stopping, exit_note)
        if shown != self._shown:
            self._shown = shown
            self.query_one(RunStats).show(state, status, stopping=stopping, exit_note=exit_note)
            self.query_one(EventFeed).sync(state)
            self.query_one(TrainingSamples).sync(state)
            pane.set_training_device(state.device_type if status == "running" else None)
        now = time.monotonic()
        if state.version != self._charted_version and now - self._charted_at >= CHART_INTERVAL_S:
            self._draw_charts()
            self._charted_version, self._charted_at = state.version, now
        tabs = self.query_one("#run-tabs", TabbedContent)
        if tabs.active == "log":
            self._show_log()
        elif tabs.active == "sample":
            pane.refresh_checkpoints()

    def _draw_charts(self) -> None:
        state = self.run_watch.state
        self.query_one("#chart-loss", MetricChart).draw(
            [
                Line("raw", state.loss, "gray"),
                Line("EMA", state.loss_ema, "cyan"),
                Line("val", state.val_loss, "red", scatter=True),
            ]
        )
        self.query_one("#chart-lr", MetricChart).draw([Line("lr", state.lr, "yellow")])
        self.query_one("#chart-tps", MetricChart).draw([Line("tok/s", state.tok_per_s, "green")])
        self.query_one("#chart-grad", MetricChart).draw([Line("grad norm", state.grad_norm, "magenta")])

    def _show_log(self) -> None:
        trainer = self.app.trainers.get(self.run_watch.name)
        path = trainer.log_path if trainer else self.run_watch.path / LOG_FILE
        self.query_one(LogView).follow(path)

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id in ("log", "sample"):
            self.refresh_data()
        if event.pane.id == "sample":
            self.query_one("#sample-prompt").focus()

    def action_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab

    def action_back(self) -> None:
        if self.query_one(SamplePane).cancel():
            self.notify("Cancelling the sample…")
            return
        self.app.pop_screen()
