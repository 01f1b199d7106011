"""Scrolling logs fed from a RunState: the event feed (evals, checkpoints, warnings) and in-training samples."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from alm.dashboard.state import FeedItem, RunState

KIND_STYLE = {
    "start": "cyan",
    "eval": "green",
    "checkpoint": "blue",
    "warning": "yellow",
    "stop": "yellow",
    "error": "bold red",
}


def _new_items(items, seen: int, total: int) -> list:
    """The items of a bounded deque added since `seen` of `total` were shown."""
    fresh = total - seen
    if fresh <= 0:
        return []
    return list(items)[-min(fresh, len(items)) :]


class EventFeed(RichLog):
    """Appends only feed items it has not shown yet (the state keeps a running total)."""

    def __init__(self, **kwargs):
        super().__init__(wrap=True, max_lines=1000, **kwargs)
        self.shown = 0

    def sync(self, state: RunState) -> None:
        if state.feed_total < self.shown:  # the state was rebuilt (events file replaced)
            self.clear()
            self.shown = 0
        for item in _new_items(state.feed, self.shown, state.feed_total):
            self.write(format_item(item))
        self.shown = state.feed_total


def format_item(item: FeedItem) -> Text:
    step = f"{item.step:>7,}" if item.step is not None else " " * 7
    style = item.style or KIND_STYLE.get(item.kind, "")
    return Text.assemble((step, "dim"), " ", (f"{item.kind:<11}", style), item.text)


class TrainingSamples(RichLog):
    """The samples the trainer writes every `sample_interval` steps."""

    def __init__(self, **kwargs):
        super().__init__(wrap=True, max_lines=2000, **kwargs)
        self.shown = 0

    def sync(self, state: RunState) -> None:
        if state.samples_total < self.shown:
            self.clear()
            self.shown = 0
        for sample in _new_items(state.samples, self.shown, state.samples_total):
            heading = (f"step {sample.step}", "bold cyan")
            self.write(Text.assemble(heading, "  ", (sample.prompt, "bold"), sample.text, "\n"))
        self.shown = state.samples_total
