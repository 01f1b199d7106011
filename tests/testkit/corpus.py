"""The corpus shipped with alm (tinyshakespeare), as text."""

from __future__ import annotations

import functools
import lzma
from importlib.resources import files


@functools.cache
def shipped_text(chars: int | None = None) -> str:
    """The first `chars` characters of the shipped corpus (all of it when None)."""
    path = files("alm") / "resources" / "corpora" / "tinyshakespeare.txt.xz"
    with lzma.open(str(path), "rt", encoding="utf-8") as fh:
        return fh.read(-1 if chars is None else chars)
