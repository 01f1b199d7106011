"""Document cleaning and exact deduplication.

`clean_document` is the whole normalisation policy in one place: line endings to \\n, Unicode NFC, control
characters removed except \\n and \\t (this is also what keeps the clean-file separator out of documents, see
`alm.data.docfile`), leading blank lines and trailing whitespace trimmed. Newlines inside a document are kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# C0 controls except \t (09) and \n (0A), DEL, and C1 controls. \r is gone by the time this runs.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def clean_document(text: str) -> str:
    """Normalise one document; the result may be empty (the caller drops it)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = _CONTROL_CHARS.sub("", text)
    text = _LEADING_BLANK_LINES.sub("", text)
    return text.rstrip()


def document_hash(data: bytes, seed: int) -> int:
    """A 64-bit keyed hash of a document's UTF-8 bytes: the dedup key and, scaled to [0, 1), its split draw."""
    key = seed.to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")


def split_draw(doc_hash: int) -> float:
    """Map a document hash to [0, 1): a document goes to val when this is below `val_fraction`."""
    return doc_hash / 2.0**64


class Deduplicator:
    """Remembers the 64-bit hashes of documents seen so far (about 60 bytes of RAM per unique document)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def is_new(self, doc_hash: int) -> bool:
        if doc_hash in self._seen:
            return False
        self._seen.add(doc_hash)
        return True


__all__ = ["Deduplicator", "clean_document", "document_hash", "split_draw"]
