"""Live metric curves with textual-plotext; long histories are downsampled to what the widget can show."""

from __future__ import annotations

from dataclasses import dataclass

from textual_plotext import PlotextPlot

from alm.dashboard.state import Series


@dataclass(frozen=True)
class Line:
    label: str
    series: Series
    color: str
    scatter: bool = False


class MetricChart(PlotextPlot):
    """A titled plot of one or more Series; `draw()` replots from scratch (cheap after downsampling)."""

    def __init__(self, title: str, *, id: str | None = None, log_y: bool = False):
        super().__init__(id=id)
        self.title = title
        self.log_y = log_y

    def draw(self, lines: list[Line]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.title)
        # Braille markers give two points per cell horizontally; more points than that are invisible.
        max_points = max(16, 2 * max(self.size.width, 40))
        drawn = False
        for line in lines:
            if not len(line.series):
                continue
            xs, ys = line.series.view(max_points)
            if line.scatter:
                plt.scatter(xs, ys, label=line.label, color=line.color, marker="dot")
            else:
                plt.plot(xs, ys, label=line.label, color=line.color, marker="braille")
            drawn = True
        if self.log_y and drawn:
            plt.yscale("log")
        if not drawn:
            plt.text("no data yet", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        self.refresh()
