"""Train a lossless tokenizer with HF `tokenizers`: byte-level BPE or byte-level Unigram.

Both backends run over the ByteLevel alphabet (every byte is one of 256 printable symbols, all forced into the
vocabulary), with the ByteLevel decoder, so any Unicode string — accents, emoji, CJK, \\t, \\r, control
characters — round-trips exactly and nothing is ever <unk>; byte fallback is built in. We use byte-level
Unigram instead of SentencePiece's Metaspace + byte-fallback scheme because Metaspace maps U+2581 in the text
to a space on decode, which is not lossless. Special tokens <|bos|> <|eos|> <|pad|> get ids 0, 1, 2.

Training reads a bounded sample (`max_bytes`, `max_lines`) as a stream; the trainer's memory is bounded by
the distinct pre-tokens of that sample.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm.config import to_dict
from alm.data.config import SPECIAL_TOKENS, TokenizerConfig
from alm.data.stage import announce, check_output, progress_task, signature, write_json_atomic
from alm.errors import DataError
from alm.tokenizer.tokenizer import META_FILE, TOKENIZER_FILE, Tokenizer


@dataclass
class Sample:
    documents: int = 0
    bytes: int = 0
    lines: int = 0


def tokenizer_inputs(cfg: TokenizerConfig, corpus_sha256: str) -> dict[str, Any]:
    return {"tokenizer": to_dict(cfg), "corpus_sha256": corpus_sha256}


def train_tokenizer(
    documents: Iterable[str],
    out_dir: Path,
    cfg: TokenizerConfig,
    *,
    corpus_sha256: str,
    force: bool = False,
    rebuild: bool = False,
    console: Any = None,
) -> Tokenizer:
    """Train on a bounded sample of `documents` and save tokenizer.json + tokenizer.meta.json in `out_dir`.

    `corpus_sha256` names the text the documents come from (the clean train split's sha256): with the config
    it decides whether `out_dir` already holds this tokenizer (then it is loaded, not retrained).
    """
    out_dir = Path(out_dir)
    inputs = tokenizer_inputs(cfg, corpus_sha256)
    if check_output(out_dir, META_FILE, inputs, force=force, rebuild=rebuild, what="a tokenizer"):
        announce(console, f"tokenizer in {out_dir} is up to date")
        return Tokenizer.load(out_dir / TOKENIZER_FILE)
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if cfg.type == "bpe":
        backend = HFTokenizer(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=cfg.vocab_size,
            min_frequency=cfg.min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=alphabet,
            show_progress=False,
        )
    else:
        backend = HFTokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=cfg.vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=alphabet,
            unk_token=None,
            show_progress=False,
        )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()

    sample = Sample()
    started = time.perf_counter()
    with progress_task(console, f"training {cfg.type} tokenizer", total=cfg.max_bytes) as advance:
        backend.train_from_iterator(_bounded_sample(documents, cfg, sample, advance), trainer=trainer)
    if sample.documents == 0:
        raise DataError(
            "no text to train the tokenizer on", hint="run `alm data prepare` and check its stats"
        )
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if backend.token_to_id(token) != expected_id:  # guards the contract that bos/eos/pad are 0/1/2
            raise DataError(
                f"trained tokenizer put {token} at id {backend.token_to_id(token)}, not {expected_id}"
            )

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{TOKENIZER_FILE}.tmp"
    backend.save(str(tmp))
    data = tmp.read_bytes()
    os.replace(tmp, out_dir / TOKENIZER_FILE)
    actual_vocab = backend.get_vocab_size(with_added_tokens=True)
    meta = {
        "format": "alm-tokenizer",
        "version": 1,
        "fingerprint": hashlib.sha256(data).hexdigest(),
        "backend": cfg.type,
        "vocab_size": actual_vocab,
        "requested_vocab_size": cfg.vocab_size,
        "special_tokens": {tok: i for i, tok in enumerate(SPECIAL_TOKENS)},
        "corpus_sha256": corpus_sha256,
        "sample": {"documents": sample.documents, "bytes": sample.bytes, "lines": sample.lines},
        "seconds": round(time.perf_counter() - started, 3),
        "signature": signature(inputs),
        "inputs": inputs,
    }
    write_json_atomic(out_dir / META_FILE, meta)
    if actual_vocab < cfg.vocab_size and console is not None:
        console.print(
            f"[yellow]warning:[/] the sample only supports {actual_vocab} tokens "
            f"(asked for {cfg.vocab_size}); a larger corpus gives the full vocabulary"
        )
    announce(
        console,
        f"trained a {cfg.type} tokenizer ({actual_vocab:,} tokens) on {sample.bytes / 1e6:.1f} MB "
        f"in {meta['seconds']:.1f} s -> {out_dir / TOKENIZER_FILE}",
    )
    return Tokenizer.load(out_dir / TOKENIZER_FILE)


def _bounded_sample(
    documents: Iterable[str], cfg: TokenizerConfig, sample: Sample, advance: Any
) -> Iterator[str]:
    """Documents until `max_bytes` / `max_lines` would be exceeded (the first document is cut to fit)."""
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
        advance(size)
        yield doc


__all__ = ["Sample", "tokenizer_inputs", "train_tokenizer"]
