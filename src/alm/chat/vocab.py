"""Chat tokens for a run whose tokenizer predates them: new tokenizer ids and new model rows.

Tokenizers trained by alm reserve the chat tokens (ids 3-6); older ones get them appended after their vocabulary,
and the model gets embedding (and untied LM head) rows for those ids. A new row starts at the mean of the trained
rows (Hewitt, "Initializing new word embeddings for pretrained language models", 2021): a random row can give the
new token a logit that swamps the model's predictions, while the mean gives it an average logit, so the model's
distribution over the old tokens barely moves and fine-tuning starts the new rows from a neutral place.
What was done is returned as a `VocabResize` for the fine-tuning run to record.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer
from torch import nn

from alm.chat.format import has_chat_tokens
from alm.fileio import atomic_write_json, atomic_write_text
from alm.model import Transformer
from alm.tokenizer import Tokenizer
from alm.tokenizer.special import CHAT_TOKENS
from alm.tokenizer.tokenizer import META_FILE


@dataclass(frozen=True)
class VocabResize:
    """Chat tokens added to a tokenizer and the model rows made for them."""

    added_tokens: tuple[str, ...]
    new_ids: tuple[int, ...]
    old_rows: int  # model vocab_size before
    new_rows: int  # model vocab_size after (unchanged when padded rows already covered the new ids)
    init: str = "mean"  # how the rows of new_ids were set: the mean of the rows of the old tokenizer's tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML data (lists, not tuples) for the run's records."""
        return {
            **dataclasses.asdict(self),
            "added_tokens": list(self.added_tokens),
            "new_ids": list(self.new_ids),
        }


def with_chat_tokens(tokenizer_json: str) -> tuple[str, tuple[str, ...]]:
    """A tokenizer.json (as text) with the missing chat tokens appended as special tokens after the current
    vocabulary, and the tokens added (none if it had them all)."""
    backend = HFTokenizer.from_str(tokenizer_json)
    present = {token.content for token in backend.get_added_tokens_decoder().values()}
    missing = tuple(token for token in CHAT_TOKENS if token not in present)
    if not missing:
        return tokenizer_json, ()
    # normalized=False and no stripping, like the specials alm's trainer reserves: the token is its exact text.
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in missing])
    return backend.to_str(), missing


@torch.no_grad()
def resize_token_rows(
    model: Transformer, vocab_size: int, new_ids: Sequence[int], *, known_rows: int
) -> None:
    """Give `model` at least `vocab_size` token rows (never fewer than it has) and set rows `new_ids` of the
    embedding and of an untied head to the mean of their first `known_rows` rows (the trained tokens)."""
    old = model.tok_emb.weight
    rows = max(vocab_size, old.size(0))
    if rows > old.size(0):
        embedding = nn.Embedding(rows, old.size(1), device=old.device, dtype=old.dtype)
        embedding.weight[: old.size(0)] = old
        model.tok_emb = embedding
        old_head = model.head.weight
        model.head = nn.Linear(old_head.size(1), rows, bias=False, device=old.device, dtype=old.dtype)
        if model.config.tie_embeddings:
            model.head.weight = model.tok_emb.weight
        else:
            model.head.weight[: old_head.size(0)] = old_head
        model.config = dataclasses.replace(model.config, vocab_size=rows)
    ids = torch.as_tensor(list(new_ids), dtype=torch.long, device=old.device)
    weights = [model.tok_emb.weight]
    if not model.config.tie_embeddings:
        weights.append(model.head.weight)
    for weight in weights:
        weight[ids] = weight[:known_rows].mean(dim=0)


def ensure_chat_vocab(
    model: Transformer, tokenizer: Tokenizer, tokenizer_out: str | Path
) -> tuple[Tokenizer, VocabResize | None]:
    """(tokenizer with chat tokens, what was resized or None). When `tokenizer` lacks them, writes the extended
    tokenizer.json to `tokenizer_out` (e.g. the fine-tuning run's) with its tokenizer.meta.json beside it, and
    resizes `model` in place; call it before building the optimizer."""
    if has_chat_tokens(tokenizer):
        return tokenizer, None
    text, added = with_chat_tokens(tokenizer.backend.to_str())
    tokenizer_out = Path(tokenizer_out)
    # The meta goes along (an imported tokenizer's bos/eos/pad roles live there), describing the new file.
    meta = {**(tokenizer.meta or {}), "chat_tokens_added": list(added)}
    fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
    extended = Tokenizer(HFTokenizer.from_str(text), path=tokenizer_out, fingerprint=fingerprint, meta=meta)
    meta.update(fingerprint=fingerprint, vocab_size=extended.vocab_size)
    atomic_write_text(tokenizer_out, text)
    atomic_write_json(tokenizer_out.with_name(META_FILE), meta)
    new_ids = tuple(i for i in (extended.token_id(token) for token in added) if i is not None)
    old_rows = model.tok_emb.weight.size(0)
    resize_token_rows(model, extended.vocab_size, new_ids, known_rows=tokenizer.vocab_size)
    return extended, VocabResize(added, new_ids, old_rows, model.tok_emb.weight.size(0))


__all__ = ["VocabResize", "ensure_chat_vocab", "resize_token_rows", "with_chat_tokens"]
