"""Cutting long text into pieces at pre-token boundaries, so no encode or training call sees a huge string.

The ByteLevel pre-tokenizer (GPT-2's regex, which tiles the text left to right with no lookbehind) always ends a
pre-token just before a space, tab or newline that follows a non-space character, and starts the next one there.
Cutting at such points therefore changes no id: encoding the pieces gives exactly the ids of encoding the whole,
while a batch of pieces spreads over every core and the encoder's memory stays bounded (one 4 MB document costs
~0.5 GB otherwise; a 50 MB line costs gigabytes in both packing and tokenizer training).

That holds for GPT-2's pre-tokenization only — what every tokenizer alm trains uses (`gpt2_pre_tokenization`).
Other tokenizers' cuts change ids: SentencePiece-style ones (Llama 2: a normalizer that prepends "▁" to the
text) start every piece with a new word marker, and GPT-4-style regexes (Llama 3) keep "!\n" together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

MAX_PIECE_CHARS = 1 << 16

_CUT_AT_NEWLINE = re.compile(r"(?<=\S)\n")
_CUT_AT_SPACE = re.compile(r"(?<=\S)[ \t]")
_CUT_ANY = re.compile(r"(?<=\S)[ \t\n]")


def split_long_document(doc: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Cut a long document into pieces of at most about `max_chars`, each cut at a pre-token boundary.

    Cuts prefer newlines; text with no cut point (one enormous word) stays whole, so the ids never change.
    """
    if len(doc) <= max_chars:
        return [doc]
    pieces, start = [], 0
    while len(doc) - start > max_chars:
        lo, hi = start + max_chars // 2, start + max_chars
        cut = _last_match(_CUT_AT_NEWLINE, doc, lo, hi) or _last_match(_CUT_AT_SPACE, doc, lo, hi)
        if cut is None:
            found = _CUT_ANY.search(doc, hi)
            if found is None:
                break
            cut = found.start()
        pieces.append(doc[start:cut])
        start = cut
    pieces.append(doc[start:])
    return pieces


def bounded_pieces(doc: str, max_chars: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Pieces of at most `max_chars` each: `split_long_document`, then a hard cut inside any enormous word.

    For tokenizer training, where a bounded sample matters more than keeping one giant word whole.
    """
    for piece in split_long_document(doc, max_chars):
        for start in range(0, len(piece), max_chars):
            yield piece[start : start + max_chars]


# GPT-2's pre-tokenization as tokenizer.json spells it (tokenizers' ByteLevel with GPT-2's regex, no normalizer).
GPT2_PRE_TOKENIZATION = {
    "normalizer": None,
    "pre_tokenizer.type": "ByteLevel",
    "pre_tokenizer.use_regex": True,
    "pre_tokenizer.add_prefix_space": False,
}


def json_setting(data: dict[str, Any], dotted: str) -> Any:
    """`data["a"]["b"]` for "a.b" in a tokenizer.json; None where a level is missing."""
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def gpt2_pre_tokenization(backend: Any) -> str | None:
    """None when `backend` (a `tokenizers.Tokenizer`) pre-tokenizes as GPT-2 does, so the cuts above keep its
    ids; else the first setting that differs, as `key=value`."""
    data = json.loads(backend.to_str())
    for key, expected in GPT2_PRE_TOKENIZATION.items():
        value = json_setting(data, key)
        if value != expected:
            return (
                f"{key}={value.get('type') if isinstance(value, dict) else value!r}"  # a section by its type
            )
    return None


def _last_match(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    last = None
    for match in pattern.finditer(text, lo, hi):
        last = match.start()
    return last


__all__ = [
    "GPT2_PRE_TOKENIZATION",
    "MAX_PIECE_CHARS",
    "bounded_pieces",
    "gpt2_pre_tokenization",
    "json_setting",
    "split_long_document",
]
