"""What the dashboard remembers between sessions (the chosen theme), in $XDG_CONFIG_HOME/alm/dashboard.json.

A missing, unreadable or hand-broken file means "no preferences": the dashboard must always start.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from alm.fileio import atomic_write_json

SETTINGS_FILE = "dashboard.json"


def settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "alm" / SETTINGS_FILE


def load_settings() -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(settings_path().read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def save_setting(key: str, value: Any) -> Path | None:
    """Remember `key`; returns the file, or None when it cannot be written (a read-only home is no error)."""
    settings = {**load_settings(), key: value}
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, settings)
    except OSError:
        return None


def saved_theme(known: set[str] | frozenset[str] | dict[str, Any]) -> str | None:
    """The theme chosen in an earlier session, if it is still one of `known`."""
    theme = load_settings().get("theme")
    return theme if isinstance(theme, str) and theme in known else None
