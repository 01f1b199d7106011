"""Chart axes for terminal plots: round tick positions, labels that fit a few cells, and a log scale.

Plotext picks ticks itself (12.5 steps, 1.0e+04 tokens); these give steps as integers, tokens as 1.2M, time as
4m05s and a log axis labelled with the values themselves (the plot draws log10 of them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from alm.format import count, number


def nice_ticks(lo: float, hi: float, most: int = 5, *, integer: bool = False) -> list[float]:
    """At most `most` round positions (1, 2 or 5 × 10^k apart) covering [lo, hi]; whole numbers if `integer`."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [round(lo) if integer else lo]
    raw = (hi - lo) / max(1, most)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = [m * magnitude for m in (0.5, 1, 2, 2.5, 5, 10)]
    at = next((i for i, step in enumerate(steps) if step >= raw), len(steps) - 1)
    while True:  # the round step nearest `raw`, smaller if that leaves fewer than two ticks in range
        step = max(1.0, math.ceil(steps[at])) if integer else steps[at]
        first = math.ceil(lo / step - 1e-9) * step
        ticks = []
        value = first
        while value <= hi + 1e-9 * step and len(ticks) <= most:
            ticks.append(float(round(value)) if integer else round(value, 12))
            value += step
        if len(ticks) >= 2 or at == 0 or (integer and step == 1):
            return ticks
        at -= 1


# Round durations for a time axis: seconds, minutes, hours, days.
TIME_STEPS = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
)


def time_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Positions on a time axis (seconds) at round durations: 30s, 1m, 5m, 1h…"""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, most)
    step = next((s for s in TIME_STEPS if s >= raw), 86400 * math.ceil(raw / 86400))
    first = math.ceil(lo / step) * step
    return [float(first + i * step) for i in range(int((hi - first) // step) + 1)][: most + 1]


def log_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Positive values for a log axis over [lo, hi]: 1, 2 and 5 × 10^k when the range is small, powers of ten
    (thinned) when it is large."""
    if lo <= 0 or hi <= 0:
        return []
    exponents = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0**e for e in exponents for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) <= most:
            break
    while len(ticks) > most:
        ticks = ticks[::2]
    return ticks or [lo]


def value_label(value: float) -> str:
    """A y-axis value in at most ~7 cells: 2.5 → 2.5, 2.3457 → 2.346, 3e-4 → 3.0e-04, 12345 → 12.3k."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return count(value)
    if abs(value) < 0.01:
        return f"{value:.1e}"
    return number(value, 3 if abs(value) < 10 else 1).rstrip("0").rstrip(".")


def axis_ticks(
    values: Sequence[float],
    label: Callable[[float], str],
    *,
    most: int = 5,
    integer: bool = False,
    time: bool = False,
) -> tuple[list[float], list[str]]:
    """Tick positions over `values`' range (round durations if `time`) and their labels."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return [], []
    lo, hi = min(finite), max(finite)
    ticks = time_ticks(lo, hi, most) if time else nice_ticks(lo, hi, most, integer=integer)
    return ticks, [label(t) for t in ticks]


def log_axis(values: Sequence[float], *, most: int = 5) -> tuple[list[float], list[str]]:
    """For a log-scaled y axis: tick positions in log10 space and labels in value space."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return [], []
    ticks = log_ticks(min(positive), max(positive), most)
    return [math.log10(t) for t in ticks], [value_label(t) for t in ticks]
