"""Charts: readable in every built-in theme, round ticks (integer steps, 1.2M tokens, durations), log scale,
smoothing; and the chosen theme is remembered across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dashboard_helpers import fixed_clock
from rich.color import Color
from textual.app import App, ComposeResult
from textual.theme import BUILTIN_THEMES

from alm.dashboard.app import DashboardApp
from alm.dashboard.axes import log_axis, nice_ticks, value_label
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.widgets.charts import Line, MetricChart


class ChartApp(App):
    def __init__(self, theme: str):
        super().__init__()
        self.start_theme = theme

    def compose(self) -> ComposeResult:
        yield MetricChart("loss", id="chart")

    def on_mount(self) -> None:
        self.theme = self.start_theme


def _luminance(color: Color) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = color.get_truecolor()
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(fg: Color, bg: Color) -> float:
    lighter, darker = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("theme", sorted(BUILTIN_THEMES))
async def test_chart_axes_and_labels_differ_from_their_background_in_every_theme(theme: str) -> None:
    """The axes, ticks, title and legend of a chart are never drawn in the colour of what is behind them (the
    default theme drew them black on black: `38;2;0;0;0` on `48;2;0;0;0`)."""
    app = ChartApp(theme)
    async with app.run_test(size=(60, 16)) as pilot:
        await pilot.pause()
        chart = app.query_one(MetricChart)
        chart.draw([Line("loss", [1, 2, 3, 4], [3.0, 2.5, 2.2, 2.0], "cyan")], title="loss · trainer EMA")
        await pilot.pause()
        drawn = ""
        pairs = set()
        for y in range(chart.size.height):
            for segment in chart.render_line(y):
                if segment.text.strip() and segment.style is not None:
                    drawn += segment.text
                    pairs.add((segment.style.color, segment.style.bgcolor))
    assert "loss · trainer EMA" in drawn and "└" in drawn and "┤" in drawn  # title, axes and ticks drawn
    for fg, bg in pairs:
        if fg is None or bg is None or fg.is_default or bg.is_default:
            # The terminal's own foreground on its own background (ANSI themes): readable by definition.
            assert fg is None or fg.is_default or fg != bg
            continue
        assert fg != bg, f"{theme}: text drawn in its background colour {fg}"
        if fg.type == bg.type and fg.triplet is not None:  # the theme's text colour on its background
            assert contrast(fg, bg) >= 3, f"{theme}: {fg} on {bg} is hard to read"


def test_ticks_are_round_and_steps_are_whole_numbers() -> None:
    assert nice_ticks(1, 80, 4, integer=True) == [20.0, 40.0, 60.0, 80.0]
    assert all(t == int(t) for t in nice_ticks(1, 7, 10, integer=True))  # never 12.5 or 2.5 steps
    assert nice_ticks(1, 80, 3, integer=True) == [25.0, 50.0, 75.0]  # at least two ticks in range
    assert nice_ticks(2.1, 2.9, 4) == [2.2, 2.4, 2.6, 2.8]
    assert nice_ticks(5, 5, 3, integer=True) == [5]
    ticks, labels = log_axis([3e-4, 1e-3, 2e-3])
    assert labels == ["5.0e-04", "1.0e-03", "2.0e-03"] and ticks[0] < ticks[-1]
    assert value_label(2.5) == "2.5" and value_label(12_345) == "12.3k" and value_label(0) == "0"


async def test_tokens_and_time_axes_read_like_people_write_them() -> None:
    app = ChartApp("ansi-dark")
    async with app.run_test(size=(70, 14)) as pilot:
        chart = app.query_one(MetricChart)
        chart.draw(
            [Line("a", [0, 500_000, 1_000_000, 1_500_000], [3, 2.5, 2.2, 2.0], "cyan")], x_axis="tokens"
        )
        await pilot.pause()
        text = "".join(s.text for y in range(chart.size.height) for s in chart.render_line(y))
        assert "1M" in text or "1.0M" in text
        assert "e+" not in text  # never scientific notation for tokens
        chart.draw([Line("a", [0, 60, 120, 180], [3, 2.5, 2.2, 2.0], "cyan")], x_axis="time")
        await pilot.pause()
        text = "".join(s.text for y in range(chart.size.height) for s in chart.render_line(y))
        assert "1m00s" in text or "2m00s" in text


async def test_log_scale_and_smoothing_keys_redraw_the_loss_chart(runs_dir: Path) -> None:
    app = DashboardApp(runs_dir, run="finished-run", clock=fixed_clock, tick=60.0)
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, RunScreen)
        chart = screen.query_one("#chart-main", MetricChart)
        assert [line.label for line in chart.lines] == ["raw", "EMA", "val"]  # the trainer's own EMA first
        await pilot.press("z")  # smoothing off: the raw loss only
        assert [line.label for line in chart.lines] == ["raw", "val"]
        await pilot.press("z")
        ema_line = chart.lines[1]
        assert ema_line.label == "EMA" and list(ema_line.ys) != list(screen.run_watch.state.loss_ema.values)
        await pilot.press("g")
        assert screen.log_y and "log y" in "".join(
            s.text for y in range(chart.size.height) for s in chart.render_line(y)
        )
        await pilot.press("x")
        assert screen.main_chart == "lr"


async def test_a_chosen_theme_is_remembered_across_restarts(runs_dir: Path, dashboard_settings: Path) -> None:
    app = DashboardApp(runs_dir, clock=fixed_clock, tick=60.0)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "ansi-dark"  # the default, on a first start
        app.theme = "nord"  # what the palette's "Theme" command does
        await pilot.pause()
    assert json.loads(dashboard_settings.read_text())["theme"] == "nord"
    app = DashboardApp(runs_dir, clock=fixed_clock, tick=60.0)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "nord"
    app = DashboardApp(runs_dir, clock=fixed_clock, tick=60.0, theme="gruvbox")  # --theme wins for a session
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "gruvbox"
    dashboard_settings.write_text("{not json")  # a broken settings file never stops the dashboard
    app = DashboardApp(runs_dir, clock=fixed_clock, tick=60.0)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.theme == "ansi-dark"
