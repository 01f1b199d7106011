"""Short human-readable numbers for terminals, shared by the progress panel, `alm runs`, `alm model info` and the
dashboard: 1.23M tokens, 4m05s, 12s ago, 2.3457. Missing values (None, NaN) print as `MISSING`."""

from __future__ import annotations

import math

MISSING = "—"
_SCALES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3))


def count(value: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M', 1234 -> '1.23k' (digits=2: '1.2k'), 512 -> '512'; never scientific notation."""
    if value is None or math.isnan(value):
        return MISSING
    suffix = ""
    for unit, scale in _SCALES:
        if abs(value) >= scale:
            value, suffix = value / scale, unit
            break
    # `g` would switch to an exponent once the integer part has `digits` digits; whole numbers read better.
    text = f"{value:.0f}" if abs(value) >= 10 ** (digits - 1) else f"{value:.{digits}g}"
    return text + suffix


def duration(seconds: float | None) -> str:
    """3725 -> '1h02m'; 65 -> '1m05s'; 4.2 -> '4s'; 90000 -> '1d01h'."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    s = max(0, round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def ago(then: float | None, now: float) -> str:
    """How long before `now` (unix seconds) `then` was: '1m30s ago'."""
    return MISSING if then is None else f"{duration(now - then)} ago"


def number(value: float | None, digits: int = 4) -> str:
    """Fixed decimals for losses (2.3457); scientific for values too small to show that way (3.00e-05)."""
    if value is None or math.isnan(value):
        return MISSING
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def scientific(value: float | None) -> str:
    """Learning rates: 3.00e-04."""
    return MISSING if value is None or math.isnan(value) else f"{value:.2e}"


__all__ = ["MISSING", "ago", "count", "duration", "number", "scientific"]
