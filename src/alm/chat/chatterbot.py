"""The chatterbot-corpus conversations (BSD-3-Clause, ~2k short English exchanges in a PyPI package) as chat data.

Each corpus conversation is a list of alternating turns, the first a user's. Long ones are cut into pieces of at
most `max_messages` messages that start with a user turn, and pieces over `max_chars` characters are dropped, so
every example fits a small model's context (the micro preset's 256 tokens). Pieces ending with a user turn drop
it (there is no answer to learn), and exact duplicates are kept once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alm.errors import AlmError, UsageError

INSTALL_HINT = "install it with `pip install 'alm[chat]'` (or `pip install chatterbot-corpus`)"


def corpus_dir(language: str = "english") -> Path:
    try:
        from chatterbot_corpus.corpus import DATA_DIRECTORY
    except ModuleNotFoundError:
        raise AlmError(
            "the chat example data needs the chatterbot-corpus package", hint=INSTALL_HINT
        ) from None
    path = Path(DATA_DIRECTORY) / language
    if not path.is_dir():
        available = sorted(p.name for p in Path(DATA_DIRECTORY).iterdir() if p.is_dir())
        raise UsageError(
            f"chatterbot-corpus has no language {language!r}", hint=f"one of: {', '.join(available)}"
        )
    return path


def chatterbot_conversations(
    language: str = "english", *, max_messages: int = 6, max_chars: int = 400
) -> list[dict[str, Any]]:
    """Every usable exchange of the corpus as `{"messages": [...]}` records, in a stable order."""
    import yaml

    if max_messages < 2 or max_messages % 2:  # pieces must start on a user turn: an even stride keeps them so
        raise UsageError(f"max_messages must be an even number >= 2, got {max_messages}")
    seen: set[tuple[str, ...]] = set()
    records = []
    for file in sorted(corpus_dir(language).glob("*.yml")):
        # BaseLoader keeps every scalar a string: YAML 1.1 would turn an answer "Yes" into True.
        loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # libyaml's when PyYAML was built with it
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=loader) or {}
        for turns in data.get("conversations", []):
            turns = [t.strip() for t in turns if isinstance(t, str) and t.strip()]
            for start in range(0, len(turns), max_messages):
                piece = turns[start : start + max_messages]
                piece = piece[: len(piece) // 2 * 2]  # end with the assistant's answer
                key = tuple(piece)
                if not piece or sum(map(len, piece)) > max_chars or key in seen:
                    continue
                seen.add(key)
                roles = ("user", "assistant") * (len(piece) // 2)
                records.append(
                    {"messages": [{"role": r, "content": t} for r, t in zip(roles, piece, strict=True)]}
                )
    return records


__all__ = ["INSTALL_HINT", "chatterbot_conversations", "corpus_dir"]
