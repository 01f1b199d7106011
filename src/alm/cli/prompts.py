"""The prompt to suggest for a run: its own `train.sample_prompt`, else the opening words of its corpus.

Used by the hint after training (`alm sample RUN --prompt …`) and by `alm sample`'s interactive loop (Enter on
an empty line), so a model trained on the King James Bible is never prompted with a Shakespeare character name.
Torch-free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

OPENING_CHARS = 40  # a prompt, not a paragraph: the opening line, cut at a word boundary


def suggested_prompt(sample_prompt: str, data: Any) -> str | None:
    """`sample_prompt` unless it is blank, else the first line of the corpus's training text; None when neither
    says anything (the data root moved, or the text is empty). `data` is a DataConfig or its dict form."""
    if sample_prompt.strip():
        return sample_prompt
    with contextlib.suppress(Exception):  # only a suggestion: an unreadable corpus means none
        return corpus_opening(data)
    return None


def corpus_opening(data: Any) -> str | None:
    from alm.config import from_dict
    from alm.data.config import DataConfig
    from alm.data.docfile import iter_documents
    from alm.data.layout import data_paths

    cfg = from_dict(DataConfig, data) if isinstance(data, Mapping) else data
    train_text = data_paths(cfg).clean_dir / "train.txt"
    if not train_text.is_file():
        return None
    for document in iter_documents(train_text):
        line = next((ln.strip() for ln in document.splitlines() if ln.strip()), "")
        if line:
            return _shorten(line)
    return None


def _shorten(line: str) -> str:
    if len(line) <= OPENING_CHARS:
        return line
    cut = line.rfind(" ", 0, OPENING_CHARS)
    return line[: cut if cut > 0 else OPENING_CHARS]


__all__ = ["corpus_opening", "suggested_prompt"]
