"""Train a lossless tokenizer with HF `tokenizers`: byte-level BPE or byte-level Unigram.

Both backends run over the ByteLevel alphabet (every byte is one of 256 printable symbols, all forced into the
vocabulary), with the ByteLevel decoder, so any Unicode string — accents, emoji, CJK, \\t, \\r, control
characters — round-trips exactly and nothing is ever <unk>; byte fallback is built in. We use byte-level
Unigram instead of SentencePiece's Metaspace + byte-fallback scheme because Metaspace maps U+2581 in the text
to a space on decode, which is not lossless. The reserved special tokens (`alm.tokenizer.special`) get ids 0-6:
<|bos|> <|eos|> <|pad|>, then the chat tokens, so chat fine-tuning never has to resize the embeddings.

Training reads a bounded sample (`max_bytes`, `max_lines`) as a stream, and long documents reach the trainer as
bounded pieces (`alm.tokenizer.pieces`): its memory is bounded by the distinct pre-tokens of the sample, not by
the longest line. Whether a tokenizer is up to date is the data pipeline's business (`alm.data`), not this one's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm.errors import DataError
from alm.fileio import atomic_write_json, atomic_write_text
from alm.tokenizer.config import TokenizerConfig
from alm.tokenizer.pieces import bounded_pieces
from alm.tokenizer.special import RESERVED_TOKENS
from alm.tokenizer.tokenizer import META_FILE, TOKENIZER_FILE, Tokenizer


@dataclass
class Sample:
    documents: int = 0
    bytes: int = 0
    lines: int = 0


def train_tokenizer(
    documents: Iterable[str],
    out_dir: Path,
    cfg: TokenizerConfig,
    *,
    corpus_sha256: str | None = None,
    progress: Callable[[int], None] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Tokenizer:
    """Train on a bounded sample of `documents`; write tokenizer.json + tokenizer.meta.json into `out_dir`.

    `corpus_sha256` names the text the documents come from (recorded in the meta file); `progress(n)` is called
    with the UTF-8 bytes of each document taken; `extra_meta` is merged into the meta file (the data pipeline
    records its stage inputs there).
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if cfg.type == "bpe":
        backend = HFTokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=list(RESERVED_TOKENS),
            initial_alphabet=alphabet,
            show_progress=False,
        )
    else:
        backend = HFTokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=list(RESERVED_TOKENS),
            initial_alphabet=alphabet,
            unk_token=None,
            show_progress=False,
        )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()

    sample = Sample()
    started = time.perf_counter()
    backend.train_from_iterator(_bounded_sample(documents, cfg, sample, progress), trainer=trainer)
    if sample.documents == 0:
        raise DataError(
            "no text to train the tokenizer on", hint="run `alm data prepare` and check its stats"
        )
    for expected_id, token in enumerate(RESERVED_TOKENS):
        if backend.token_to_id(token) != expected_id:  # guards the contract that the reserved ids are 0..6
            raise DataError(
                f"trained tokenizer put {token} at id {backend.token_to_id(token)}, not {expected_id}"
            )

    text = backend.to_str(pretty=True)
    atomic_write_text(Path(out_dir) / TOKENIZER_FILE, text)
    meta = {
        "format": "alm-tokenizer",
        "version": 1,
        "fingerprint": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "backend": cfg.type,
        "vocab_size": backend.get_vocab_size(with_added_tokens=True),
        "requested_vocab_size": cfg.vocab_size,
        "special_tokens": {tok: i for i, tok in enumerate(RESERVED_TOKENS)},
        "corpus_sha256": corpus_sha256,
        "sample": {"documents": sample.documents, "bytes": sample.bytes, "lines": sample.lines},
        "seconds": round(time.perf_counter() - started, 3),
        **(extra_meta or {}),
    }
    atomic_write_json(Path(out_dir) / META_FILE, meta)
    return Tokenizer.load(Path(out_dir) / TOKENIZER_FILE)


def _bounded_sample(
    documents: Iterable[str], cfg: TokenizerConfig, sample: Sample, progress: Callable[[int], None] | None
) -> Iterator[str]:
    """Documents until `max_bytes` / `max_lines` would be exceeded (the first document is cut to fit), each
    handed to the trainer as bounded pieces."""
    for doc in documents:
        size = len(doc.encode("utf-8"))
        lines = doc.count("\n") + 1
        over_bytes = cfg.max_bytes is not None and sample.bytes + size > cfg.max_bytes
        over_lines = cfg.max_lines is not None and sample.lines + lines > cfg.max_lines
        if over_bytes or over_lines:
            if sample.documents:
                return
            if cfg.max_lines is not None:
                doc = "\n".join(doc.split("\n")[: cfg.max_lines])
            if cfg.max_bytes is not None:
                doc = doc.encode("utf-8")[: cfg.max_bytes].decode("utf-8", errors="ignore")
            size, lines = len(doc.encode("utf-8")), doc.count("\n") + 1
        sample.documents += 1
        sample.bytes += size
        sample.lines += lines
        if progress is not None:
            progress(size)
        yield from bounded_pieces(doc)


__all__ = ["Sample", "train_tokenizer"]
