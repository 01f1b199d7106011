"""`Tokenizer`: a thin, typed wrapper over a HF `tokenizers` tokenizer.json with the ids the rest of alm needs.

Encoding never adds special tokens, and text that happens to contain "<|eos|>" is encoded as ordinary text
(`encode_special_tokens = True`), so a document can never inject a control token into the packed stream.
Decoding keeps special tokens, so `decode(encode(s)) == s` for every string (the byte-level alphabet covers
all bytes). Note: transformers' `PreTrainedTokenizerFast` loading the same file does split "<|eos|>" in text
into the special token (its default); ids for text without those literal strings are identical.

Which tokens play bos/eos/pad: alm's own `<|bos|>`/`<|eos|>`/`<|pad|>` (ids 0-2 in tokenizers alm trains), unless
tokenizer.meta.json maps the roles to other tokens under `"roles"` — as `alm import hf` writes for a Hugging Face
tokenizer, whose ids are whatever that tokenizer says (e.g. `<s>` = 1, `</s>` = 2, no pad: eos stands in).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alm.errors import DataError
from alm.tokenizer.special import BOS, EOS, PAD

TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer.meta.json"
META_ROLES = "roles"  # tokenizer.meta.json key: {"bos": token, "eos": token, "pad": token}
DEFAULT_ROLES = {"bos": BOS, "eos": EOS, "pad": PAD}


def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte -> printable character table, inverted: how ByteLevel tokens spell raw bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


_BYTE_OF_CHAR = _byte_level_decoder()


def special_roles(meta: dict[str, Any] | None) -> dict[str, str]:
    """role -> token text for bos/eos/pad: alm's own tokens, unless the meta maps a role to another token."""
    mapped = (meta or {}).get(META_ROLES) or {}
    return {role: str(mapped.get(role) or default) for role, default in DEFAULT_ROLES.items()}


def resolve_tokenizer_path(path: str | Path) -> Path:
    """A tokenizer.json given itself or the directory holding it."""
    path = Path(path)
    return path / TOKENIZER_FILE if path.is_dir() else path


class Tokenizer:
    """Encode/decode with a trained tokenizer; `fingerprint` (sha256 of tokenizer.json) identifies it."""

    def __init__(
        self, backend: Any, *, path: Path | None, fingerprint: str, meta: dict[str, Any] | None = None
    ):
        self.backend = backend  # the `tokenizers.Tokenizer`, for bulk work such as packing
        self.path = path
        self.fingerprint = fingerprint
        self.meta = meta
        backend.encode_special_tokens = True
        backend.no_truncation()  # an imported tokenizer.json may carry either; alm encodes whole documents
        backend.no_padding()
        roles = special_roles(meta)
        ids = {role: backend.token_to_id(token) for role, token in roles.items()}
        missing = [f"{roles[role]} ({role})" for role, i in ids.items() if i is None]
        if missing:
            raise DataError(
                f"tokenizer {path or ''} lacks the special tokens {', '.join(missing)}",
                hint="train one with `alm tokenizer train`, or bring a Hugging Face model with `alm import hf`",
            )
        self.bos_token, self.eos_token, self.pad_token = roles["bos"], roles["eos"], roles["pad"]
        self.bos_id, self.eos_id, self.pad_id = (int(i) for i in ids.values() if i is not None)
        self.vocab_size = int(backend.get_vocab_size(with_added_tokens=True))
        self._special_ids = {i for i, t in backend.get_added_tokens_decoder().items() if t.special}

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a tokenizer.json (or a directory holding one); reads tokenizer.meta.json beside it if present."""
        from tokenizers import Tokenizer as HFTokenizer

        file = resolve_tokenizer_path(path)
        if not file.is_file():
            raise DataError(f"tokenizer not found: {file}", hint="train one with `alm tokenizer train`")
        data = file.read_bytes()
        try:
            backend = HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise DataError(
                f"{file} is not a tokenizers tokenizer.json ({exc})",
                hint="train one with `alm tokenizer train --force`",
            ) from None
        meta_path = file.with_name(META_FILE)
        meta = None
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = None  # the meta file is informative; the fingerprint below is authoritative
        return cls(backend, path=file, fingerprint=hashlib.sha256(data).hexdigest(), meta=meta)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes a token stands for (a token may hold part of a UTF-8 character); specials as text."""
        token = self.backend.id_to_token(token_id)
        if token is None:
            raise IndexError(f"token id {token_id} is outside the vocabulary (0..{self.vocab_size - 1})")
        if token_id in self._special_ids or any(c not in _BYTE_OF_CHAR for c in token):
            return token.encode("utf-8")
        return bytes(_BYTE_OF_CHAR[c] for c in token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def token_id(self, text: str) -> int | None:
        """The id of the special token spelled `text` (e.g. `alm.tokenizer.special.USER`), or None when this
        tokenizer lacks it: tokenizers trained before the chat tokens were reserved have only bos/eos/pad."""
        added = self.backend.get_added_tokens_decoder()
        return next((i for i, token in added.items() if token.content == text), None)

    @property
    def backend_type(self) -> str:
        """ "bpe" or "unigram" (from the model inside tokenizer.json)."""
        return type(self.backend.model).__name__.lower()

    def __repr__(self) -> str:
        return f"Tokenizer({self.backend_type}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


__all__ = [
    "BOS",
    "DEFAULT_ROLES",
    "EOS",
    "META_FILE",
    "META_ROLES",
    "PAD",
    "TOKENIZER_FILE",
    "Tokenizer",
    "resolve_tokenizer_path",
    "special_roles",
]
