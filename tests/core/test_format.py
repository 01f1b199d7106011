"""`alm.format`: the one set of number formatters behind the progress panel, `alm runs`, `alm model info` and
the dashboard."""

from __future__ import annotations

from alm.format import MISSING, ago, count, duration, number, scientific

T0 = 1_700_000_000.0


def test_counts() -> None:
    assert count(999) == "999" and count(512) == "512"
    assert count(1234) == "1.23k" and count(1234, digits=2) == "1.2k"
    assert count(5_600_000) == "5.6M" and count(1_234_567) == "1.23M"
    assert count(999_700) == "1000k"  # never scientific notation
    assert count(None) == MISSING and count(float("nan")) == MISSING


def test_durations() -> None:
    assert duration(9.4) == "9s" and duration(4.2) == "4s"
    assert duration(185) == "3m05s" and duration(65) == "1m05s"
    assert duration(3725) == "1h02m" and duration(90_000) == "1d01h"
    assert duration(None) == MISSING
    assert ago(T0, T0 + 90) == "1m30s ago" and ago(None, T0) == MISSING


def test_numbers() -> None:
    assert number(2.345678) == "2.3457" and number(1.86, 3) == "1.860"
    assert number(3e-5) == "3.00e-05" and number(0.0) == "0.0000"
    assert scientific(3e-4) == "3.00e-04" and scientific(None) == MISSING
