"""Metric curves with textual-plotext: readable in every theme, round ticks, optional log scale.

textual-plotext's "auto" theme paints axes and labels in the theme's foreground on its surface; in the ANSI
themes both are the terminal's *default* colour, which it resolves to black on black. Here an ANSI theme draws
with the terminal's own default colours (no colour codes at all) and any other theme with its foreground on its
background, so axes, ticks, titles and legends are always readable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from plotext._dict import themes as plotext_themes
from textual.app import App
from textual.color import Color
from textual_plotext import PlotextPlot

from alm.dashboard.axes import axis_ticks, log_axis, value_label
from alm.dashboard.state import downsample
from alm.runs import Axis, axis_label, ema

# Colours for data lines, in plotext's names (the 16 terminal colours): vivid on dark and light backgrounds.
LINE_COLORS = ("cyan", "red", "green", "magenta", "yellow", "blue", "cyan+", "red+", "green+", "magenta+")


@dataclass(frozen=True)
class Line:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    scatter: bool = False  # points (evals), not a line


# Loss smoothing choices (z cycles): None is the trainer's own EMA (what its progress showed), 0 the raw loss,
# otherwise an EMA of the raw loss with that weight, as TensorBoard's slider.
SMOOTHING: tuple[float | None, ...] = (None, 0.0, 0.6, 0.9, 0.97)


def smoothing_text(weight: float | None) -> str:
    return "trainer EMA" if weight is None else "off" if weight == 0 else f"EMA {weight:g}"


def next_smoothing(weight: float | None) -> float | None:
    return SMOOTHING[(SMOOTHING.index(weight) + 1) % len(SMOOTHING)]


def smoothed(
    label: str,
    raw: tuple[Sequence[float], Sequence[float]],
    trainer_ema: tuple[Sequence[float], Sequence[float]],
    weight: float | None,
    color: str,
) -> Line | None:
    """The smoothed loss line for `weight` from (steps, values) of the raw loss and of the trainer's EMA;
    None when smoothing is off."""
    if weight is None:
        return Line(label, trainer_ema[0], trainer_ema[1], color)
    if weight == 0:
        return None
    values = [v for v in ema(list(raw[1]), 1 - weight) if v is not None]
    return Line(label, raw[0], values, color)


def chart_theme(app: App) -> str:
    """Register (once) and name the plotext theme that draws charts readably in the app's current theme."""
    name = f"alm-{app.theme}"
    if name not in plotext_themes:
        if app.current_theme.ansi:
            canvas = axes = ticks = "default"  # the terminal's own background and foreground
        else:
            variables = app.theme_variables
            canvas = axes = Color.parse(variables["background"]).rgb
            ticks = Color.parse(variables["foreground"]).rgb
        plotext_themes[name] = [canvas, axes, ticks, "default", list(LINE_COLORS)]
    return name


class MetricChart(PlotextPlot):
    """A titled plot of one or more lines; `draw()` replots from scratch (cheap after downsampling)."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.title = title
        self.lines: list[Line] = []

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._use_theme())
        self._use_theme()

    def _use_theme(self) -> None:
        self.theme = chart_theme(self.app)  # type: ignore[assignment]  # a theme registered above
        self.refresh()

    def draw(
        self, lines: Sequence[Line], *, x_axis: Axis = "step", log_y: bool = False, title: str | None = None
    ) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width, height = max(self.size.width, 20), max(self.size.height, 5)
        text = title or self.title
        # plotext drops a title wider than the plot altogether: shorten it instead.
        plt.title(text if len(text) <= width - 2 else text[: width - 3] + "…")
        # Braille markers give two points per cell horizontally; more points than that are invisible.
        max_points = 2 * width
        xs_all: list[float] = []
        ys_all: list[float] = []
        self.lines = [line for line in lines if len(line.xs)]
        for line in self.lines:
            xs, ys = downsample(list(line.xs), list(line.ys), max_points)
            if log_y:  # drawn as log10 of the values; the ticks are labelled with the values themselves
                kept = [(x, math.log10(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
                xs, ys = [x for x, _ in kept], [y for _, y in kept]
            if not xs:
                continue
            if line.scatter:
                plt.scatter(xs, ys, label=line.label, color=line.color, marker="dot")
            else:
                plt.plot(xs, ys, label=line.label, color=line.color, marker="braille")
            xs_all += xs
            ys_all += ys
        if not xs_all:
            plt.text("no data yet", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            plt.xticks([], [])
            plt.yticks([], [])
        else:
            xticks, xlabels = axis_ticks(
                xs_all,
                axis_label(x_axis),
                most=max(3, width // 10),
                integer=x_axis != "time",
                time=x_axis == "time",
            )
            plt.xticks(xticks, xlabels)
            most_y = max(2, height // 4)
            if log_y:
                yticks, ylabels = log_axis([10**y for y in ys_all], most=most_y)
            else:
                yticks, ylabels = axis_ticks(ys_all, value_label, most=most_y)
            plt.yticks(yticks, ylabels)
            if len(set(xs_all)) == 1:  # one point: give it room so it is drawn inside the frame
                plt.xlim(xs_all[0] - 1, xs_all[0] + 1)
        self.refresh()
