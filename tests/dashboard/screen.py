"""Read what a running app shows, as plain text lines, through Textual's public screenshot export."""

from __future__ import annotations

import html
import re
from collections import defaultdict

from textual.app import App

_TEXT = re.compile(r'<text class="[^"]*" [^>]*?x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', re.S)


def screen_lines(app: App) -> list[str]:
    rows: dict[float, list[tuple[float, str]]] = defaultdict(list)
    svg = app.export_screenshot()
    body = svg[svg.index("clip-path=") :]  # skip the window title
    for x, y, content in _TEXT.findall(body):
        rows[float(y)].append((float(x), html.unescape(content).replace("\xa0", " ")))
    return ["".join(text for _, text in sorted(spans)) for _, spans in sorted(rows.items())]


def screen_text(app: App) -> str:
    return "\n".join(screen_lines(app))
