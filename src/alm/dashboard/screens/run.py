"""One run: live (tailing events.jsonl) or replayed — stats, curves, event feed, samples, sampling, chat, log.

Keys never leak between tabs: the Sample and Chat tabs do not put the cursor in their text boxes until asked
(p), so single-letter keys keep switching tabs; esc steps back one level at a time (cancel a generation, leave
a text box, go to the Monitor tab, go to the runs list), and ctrl+c there cancels a generation, never training.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane

from alm.dashboard.keys import HELP_BINDING, STOP_BINDING
from alm.dashboard.sampling import SamplerSession, chat_capable
from alm.dashboard.watch import RunWatch
from alm.dashboard.widgets.charts import (
    LINE_COLORS,
    SMOOTHING,
    Line,
    MetricChart,
    next_smoothing,
    smoothed,
    smoothing_text,
)
from alm.dashboard.widgets.chat_pane import ChatPane
from alm.dashboard.widgets.feed import EventFeed, TrainingSamples
from alm.dashboard.widgets.log_view import LogView
from alm.dashboard.widgets.sample_pane import SamplePane
from alm.dashboard.widgets.stats import RunStats

if TYPE_CHECKING:
    from alm.dashboard.app import DashboardApp
    from alm.dashboard.state import RunState, Series

# Curves are redrawn at most this often: plotting is the costly part of a refresh.
CHART_INTERVAL_S = 0.5
CHARTS = ("loss", "lr", "tok/s", "grad norm", "objective")
GENERATION_TABS = ("sample", "chat")


def series_line(label: str, series: Series, color: str, *, scatter: bool = False) -> Line:
    return Line(label, series.steps, series.values, color, scatter)


class RunScreen(Screen):
    app: DashboardApp

    BINDINGS: ClassVar[list[BindingType]] = [
        STOP_BINDING,
        Binding("ctrl+c", "cancel_generation", "Cancel", priority=True),
        HELP_BINDING,
        Binding("escape", "back", "Back"),
        Binding("m", "tab('monitor')", "Monitor"),
        Binding("s", "tab('sample')", "Sample"),
        Binding("c", "tab('chat')", "Chat"),
        Binding("l", "tab('log')", "Log"),
        Binding("p", "prompt", "Prompt"),
        Binding("y", "copy", "Copy"),
        Binding("w", "save", "Save"),
        Binding("x", "next_chart", "Chart"),
        Binding("g", "log_scale", "Log y"),
        Binding("z", "smoothing", "Smooth"),
        Binding("r", "app.resume_run", "Resume"),
        Binding("R", "app.restart_run", "Restart…", key_display="R"),
        Binding("v", "app.view_config", "Config"),
        Binding("d", "app.delete_run", "Delete…", show=False),
    ]

    def __init__(self, watch: RunWatch):
        super().__init__()
        self.run_watch = watch
        self.session = SamplerSession(watch.path)  # one model cache for the Sample and Chat tabs
        self.has_chat = chat_capable(watch.path)
        self.main_chart = "loss"
        self.log_y = False
        self.smoothing: float | None = SMOOTHING[0]
        self._charted_version = -1
        self._charted_at = 0.0
        self._shown: tuple = ()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="monitor", id="run-tabs"):
            with TabPane("Monitor", id="monitor"):
                with Horizontal(id="monitor-top"):
                    with VerticalScroll(id="run-stats-box"):
                        yield RunStats(id="run-stats")
                    with Vertical(id="charts"):
                        yield MetricChart("loss", id="chart-main")
                        with Horizontal(id="charts-small"):
                            yield MetricChart("learning rate", id="chart-lr")
                            yield MetricChart("tok/s", id="chart-tps")
                            yield MetricChart("grad norm", id="chart-grad")
                            yield MetricChart("objective", id="chart-objective")
                with TabbedContent(initial="feed", id="monitor-bottom"):
                    with TabPane("Events", id="feed"):
                        yield EventFeed(id="event-feed")
                    with TabPane("Samples", id="samples"):
                        yield TrainingSamples(id="training-samples")
            with TabPane("Sample", id="sample"):
                yield SamplePane(self.run_watch.path, self.session, id="sample-pane")
            if self.has_chat:
                with TabPane("Chat", id="chat"):
                    fine_tuned = self.run_watch.state.mode != "pretrain"
                    yield ChatPane(self.run_watch.path, self.session, fine_tuned=fine_tuned, id="chat-pane")
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

    @property
    def active_tab(self) -> str:
        return self.query_one("#run-tabs", TabbedContent).active

    @property
    def generation_tab_active(self) -> bool:
        return self.is_mounted and self.active_tab in GENERATION_TABS

    def _generator(self) -> SamplePane | ChatPane | None:
        if self.active_tab == "sample":
            return self.query_one(SamplePane)
        if self.active_tab == "chat":
            return self.query_one(ChatPane)
        return None

    # --- refreshing -------------------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        """Called by the app after it polled this run; redraws what changed (curves at most a few times a second)."""
        if not self.is_mounted:  # the app polls on a timer; this screen may still be composing
            return
        watch, state = self.run_watch, self.run_watch.state
        status = watch.status
        stopping = watch.name in self.app.stopping
        exit_note = self.app.exit_notes.get(watch.name)
        now = self.app.clock()
        pane = self.query_one(SamplePane)
        # A live run's elapsed and ETA move with the clock: redraw every second even without new events.
        shown = (state.version, status, stopping, exit_note, int(now) if status == "running" else None)
        if shown != self._shown:
            self._shown = shown
            self.query_one(RunStats).show(state, status, now=now, stopping=stopping, exit_note=exit_note)
            self.query_one(EventFeed).sync(state)
            self.query_one(TrainingSamples).sync(state)
            pane.set_training_device(state.device_type if status == "running" else None)
        tick = time.monotonic()
        if state.version != self._charted_version and tick - self._charted_at >= CHART_INTERVAL_S:
            self.draw_charts()
            self._charted_version, self._charted_at = state.version, tick
        tab = self.active_tab
        if tab == "log":
            self._show_log()
        elif tab == "sample":
            pane.refresh_checkpoints()
        elif tab == "chat":
            self.query_one(ChatPane).refresh_checkpoints()

    def _lines(self, chart: str, state: RunState) -> list[Line]:
        if chart == "loss":
            raw = (state.loss.steps, state.loss.values)
            smooth = smoothed(
                "EMA", raw, (state.loss_ema.steps, state.loss_ema.values), self.smoothing, "cyan"
            )
            lines = [series_line("raw", state.loss, "gray"), *([smooth] if smooth else [])]
            return [*lines, series_line("val", state.val_loss, "red", scatter=True)]
        if chart == "lr":
            return [series_line("lr", state.lr, "yellow")]
        if chart == "tok/s":
            return [series_line("tok/s", state.tok_per_s, "green")]
        if chart == "grad norm":
            return [series_line("grad norm", state.grad_norm, "magenta")]
        return [
            series_line(name.replace("_", " "), series, LINE_COLORS[i % len(LINE_COLORS)])
            for i, (name, series) in enumerate(sorted(state.metrics.items()))
        ]

    def draw_charts(self) -> None:
        state = self.run_watch.state
        title = self.main_chart
        if self.main_chart == "loss":
            title = f"loss · {smoothing_text(self.smoothing)}"
        if self.log_y:
            title += " · log y"
        self.query_one("#chart-main", MetricChart).draw(
            self._lines(self.main_chart, state), log_y=self.log_y, title=title
        )
        for chart_id, chart in (("chart-lr", "lr"), ("chart-tps", "tok/s"), ("chart-grad", "grad norm")):
            self.query_one(f"#{chart_id}", MetricChart).draw(self._lines(chart, state))
        objective = self.query_one("#chart-objective", MetricChart)
        objective.display = bool(state.metrics)  # DPO's reward margin/accuracy, when the run has them
        if state.metrics:
            objective.draw(self._lines("objective", state))

    def _show_log(self) -> None:
        trainer = self.app.trainers.get(self.run_watch.name)
        path = trainer.log_path if trainer else self.run_watch.run.log_path
        self.query_one(LogView).follow(path)

    def on_screen_resume(self) -> None:
        self.refresh_data()

    # --- tabs and keys ----------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show (and allow) each key only where it does something: chart keys on the Monitor tab, prompt keys
        in the Sample/Chat tabs, a tab key everywhere but on its own tab (False hides a key)."""
        if not self.is_mounted:
            return True
        tab = self.active_tab
        if action == "tab":
            target = parameters[0] if parameters else None
            return not (target == tab or (target == "chat" and not self.has_chat))
        if action in ("prompt", "cancel_generation"):
            return tab in GENERATION_TABS
        if action in ("copy", "save"):
            return tab == "sample" or (action == "save" and tab == "chat")
        if action in ("next_chart", "log_scale", "smoothing"):
            return tab == "monitor"
        return True

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.tabbed_content.id != "run-tabs":
            return
        self.refresh_bindings()
        if event.pane.id in ("log", "sample", "chat"):
            self.refresh_data()
        if event.pane.id in GENERATION_TABS:
            # The output, not the text box: letters stay keys until p (or a click) puts the cursor there.
            self.query_one(f"#{event.pane.id}-pane").query_one(".output-box").focus()

    def action_tab(self, tab: str) -> None:
        if tab == "chat" and not self.has_chat:
            return
        # Focus left inside the old tab would pull TabbedContent straight back to it.
        self.set_focus(None)
        self.query_one("#run-tabs", TabbedContent).active = tab

    def action_prompt(self) -> None:
        generator = self._generator()
        if generator is not None:
            generator.prompt.focus()

    def cancel_generation(self) -> bool:
        """Cancel the sample or reply being generated in the active tab; whether one was."""
        generator = self._generator()
        return generator is not None and generator.cancel()

    def action_cancel_generation(self) -> None:
        if self.cancel_generation():
            self.notify("Cancelling the generation…")
        else:
            self.notify(
                "Nothing is being generated. Training is stopped from the Monitor tab (m, then ctrl+c).",
                severity="warning",
            )

    def action_copy(self) -> None:
        self.query_one(SamplePane).copy_output()

    def action_save(self) -> None:
        generator = self._generator()
        if isinstance(generator, SamplePane):
            generator.save_output()
        elif isinstance(generator, ChatPane):
            generator.save()

    def action_next_chart(self) -> None:
        charts = [c for c in CHARTS if c != "objective" or self.run_watch.state.metrics]
        self.main_chart = (
            charts[(charts.index(self.main_chart) + 1) % len(charts)] if self.main_chart in charts else "loss"
        )
        self.draw_charts()

    def action_log_scale(self) -> None:
        self.log_y = not self.log_y
        self.draw_charts()

    def action_smoothing(self) -> None:
        self.smoothing = next_smoothing(self.smoothing)
        self.main_chart = "loss"
        self.draw_charts()

    def action_back(self) -> None:
        """One level back: cancel a generation, leave a text box, go to the Monitor tab, go to the runs."""
        generator = self._generator()
        if generator is not None and generator.cancel():
            self.notify("Cancelling the generation…")
            return
        if generator is not None and isinstance(self.focused, Input):
            generator.query_one(".output-box").focus()
            return
        if self.active_tab != "monitor":
            self.action_tab("monitor")
            return
        self.app.pop_screen()
