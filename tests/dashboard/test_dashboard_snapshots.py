"""Snapshots of the main screens in the default theme at 80×24 and 160×48: fixed clock, events with fixed
times, a long tick (no refresh lands between setup and the screenshot).

Update after an intended visual change with `pytest tests/dashboard/test_dashboard_snapshots.py --snapshot-update`
and look at the SVGs under __snapshots__/ before committing them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dashboard_helpers import fixed_clock
from textual.widgets import Input

from alm.dashboard import DEFAULT_THEME
from alm.dashboard.app import DashboardApp

SIZES = {"80x24": (80, 24), "160x48": (160, 48)}
# (the run opened at start, the keys pressed before the screenshot)
SCREENS = {
    "runs": (None, ()),
    "run-live": ("live-run", ()),
    "run-replayed": ("stopped-run", ()),
    "sample": ("finished-run", ("s",)),
    "start": (None, ("n",)),
    "compare": (None, ("o", "space", "space", "c")),
    "help": (None, ("question_mark",)),
}


@pytest.fixture
def snapshot_runs(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runs fixture seen through a relative path (no tmp path on screen) in UTC (the suggested run name)."""
    monkeypatch.chdir(runs_dir.parent)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield Path("runs")
    monkeypatch.undo()
    time.tzset()


def settle(*keys: str):
    """Press `keys`, then stop every text cursor blinking (a blink timer would make the screenshot random)."""

    async def run_before(pilot) -> None:
        await pilot.pause(0.3)  # the footer shows its keys once the screen's bindings are ready
        await pilot.press(*keys)
        await pilot.pause(0.3)
        for widget in pilot.app.screen.query(Input):
            widget.cursor_blink = False
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
def test_main_screens(snap_compare, snapshot_runs: Path, screen: str, size: str) -> None:
    run, keys = SCREENS[screen]
    app = DashboardApp(snapshot_runs, run=run, clock=fixed_clock, theme=DEFAULT_THEME, tick=60.0)
    assert snap_compare(app, run_before=settle(*keys), terminal_size=SIZES[size])
