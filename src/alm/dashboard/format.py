"""Short human-readable numbers for a terminal: 1.23M tokens, 4m05s, 12s ago."""

from __future__ import annotations


def si(value: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M'; None -> '—'."""
    if value is None:
        return "—"
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{unit}"
    return f"{value:.{digits}g}"


def duration(seconds: float | None) -> str:
    """3725 -> '1h02m'; 65 -> '1m05s'; 4.2 -> '4s'."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def ago(then: float | None, now: float) -> str:
    return "—" if then is None else f"{duration(now - then)} ago"


def number(value: float | None, digits: int = 4) -> str:
    """Fixed decimals for losses; scientific for small values like learning rates."""
    if value is None:
        return "—"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"
