"""Snapshots of the main screens: fixed terminal size, fixed theme, fixed clock, events with fixed times.

Update after an intended visual change with `pytest tests/dashboard/test_dashboard_snapshots.py --snapshot-update` and
look at the SVGs under __snapshots__/ before committing them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from dashboard_helpers import fixed_clock
from textual.widgets import Input

from alm.dashboard.app import DashboardApp

SIZE = (130, 42)


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
        await pilot.press(*keys)
        for widget in pilot.app.screen.query(Input):
            widget.cursor_blink = False
        await pilot.pause()

    return run_before


def make_app(runs: Path, run: str | None = None) -> DashboardApp:
    # A long tick: no refresh can land between setup and the screenshot and change it.
    return DashboardApp(runs, run=run, clock=fixed_clock, theme="ansi-dark", tick=60.0)


def test_runs_screen(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs), run_before=settle(), terminal_size=SIZE)


def test_run_screen_live(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs, "live-run"), run_before=settle(), terminal_size=SIZE)


def test_run_screen_replayed(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs, "stopped-run"), run_before=settle(), terminal_size=SIZE)


def test_sample_pane(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs, "finished-run"), run_before=settle("s"), terminal_size=SIZE)


def test_start_dialog(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs), run_before=settle("n"), terminal_size=SIZE)


def test_help_screen(snap_compare, snapshot_runs: Path) -> None:
    assert snap_compare(make_app(snapshot_runs), run_before=settle("question_mark"), terminal_size=SIZE)
