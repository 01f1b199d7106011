"""Pack: clean text -> token ids -> uint32 shards + manifest.json (see `alm.data.shards` for the format).

Documents stream from the clean files in batches of about 256 KB of text; each batch is encoded with the Rust
tokenizer's `encode_batch_fast` (which spreads a batch over every core by itself) and <|eos|> follows every
document. Memory is bounded by one batch and one write, whatever the corpus size. `workers > 1` encodes
batches in that many single-threaded processes instead (in order, a bounded number in flight); on our 2-core
machine that is no faster than the in-process path (docs/BENCHMARKS.md, "Packing"), so auto picks in-process.

The shards are written into a staging directory beside the output and swapped in at the end, so an
interrupted pack leaves the previous shards untouched.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from alm.data.config import PackingConfig
from alm.data.docfile import iter_documents
from alm.data.prepare import SPLITS, STATS_FILE
from alm.data.shards import FORMAT_VERSION, HEADER_BYTES, TOKEN_DTYPE, ShardWriter
from alm.data.stage import announce, check_output, progress_task, read_json, signature, write_json_atomic
from alm.errors import DataError
from alm.tokenizer.tokenizer import Tokenizer

MANIFEST_FILE = "manifest.json"
BATCH_CHARS = 1 << 18  # ~256 KB of text per encode call: enough documents for both cores, small peak memory
MAX_PIECE_CHARS = 1 << 16


def pack_inputs(clean_stats: dict[str, Any], tokenizer: Tokenizer, cfg: PackingConfig) -> dict[str, Any]:
    """What the shards depend on (workers does not change the output, so it is not an input)."""
    return {
        "clean_sha256": {split: clean_stats["splits"][split]["sha256"] for split in SPLITS},
        "tokenizer_fingerprint": tokenizer.fingerprint,
        "shard_tokens": cfg.shard_tokens,
    }


def read_clean_stats(clean_dir: Path) -> dict[str, Any]:
    stats = read_json(Path(clean_dir) / STATS_FILE)
    if stats is None or stats.get("format") != "alm-clean":
        raise DataError(
            f"no prepared text in {clean_dir} (stats.json missing)", hint="run `alm data prepare` first"
        )
    return stats


def pack_dataset(
    clean_dir: Path,
    tokenizer_path: Path,
    out_dir: Path,
    cfg: PackingConfig,
    *,
    console: Any = None,
    force: bool = False,
    rebuild: bool = False,
) -> dict[str, Any]:
    """Tokenise both clean splits into shards under `out_dir` unless already up to date; returns the manifest."""
    clean_dir, out_dir = Path(clean_dir), Path(out_dir)
    stats = read_clean_stats(clean_dir)
    tokenizer = Tokenizer.load(tokenizer_path)
    inputs = pack_inputs(stats, tokenizer, cfg)
    if check_output(out_dir, MANIFEST_FILE, inputs, force=force, rebuild=rebuild, what="packed shards"):
        announce(console, f"shards in {out_dir} are up to date")
        manifest = read_json(out_dir / MANIFEST_FILE)
        assert manifest is not None
        return manifest
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    try:
        splits = {}
        with make_encoder(tokenizer, cfg.workers) as encoder:
            for split in SPLITS:
                expected = stats["splits"][split]
                splits[split] = _pack_split(
                    clean_dir / f"{split}.txt", expected, split, staging, tokenizer, encoder, cfg, console
                )
        manifest = {
            "format": "alm-packed",
            "version": FORMAT_VERSION,
            "dtype": "uint32",
            "header_bytes": HEADER_BYTES,
            "vocab_size": tokenizer.vocab_size,
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "bos_id": tokenizer.bos_id,
            "eos_id": tokenizer.eos_id,
            "shard_tokens": cfg.shard_tokens,
            "total_tokens": sum(s["tokens"] for s in splits.values()),
            "splits": splits,
            "seconds": round(time.perf_counter() - started, 3),
            "signature": signature(inputs),
            "inputs": inputs,
        }
        write_json_atomic(staging / MANIFEST_FILE, manifest)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    announce(
        console,
        f"packed {splits['train']['tokens']:,} train + {splits['val']['tokens']:,} val tokens in "
        f"{manifest['seconds']:.1f} s -> {out_dir}",
    )
    return manifest


def _pack_split(
    path: Path,
    expected: dict[str, Any],
    split: str,
    staging: Path,
    tokenizer: Tokenizer,
    encoder: Encoder,
    cfg: PackingConfig,
    console: Any,
) -> dict[str, Any]:
    writer = ShardWriter(staging, split, cfg.shard_tokens, tokenizer.vocab_size)
    text_sha = hashlib.sha256()
    counts = {"documents": 0, "bytes": 0}

    def batches(advance: Callable[[float], None]) -> Iterator[list[str]]:
        for batch in batch_documents(iter_documents(path)):
            size = 0
            for doc in batch:
                data = doc.encode("utf-8")
                text_sha.update(data)
                text_sha.update(b"\x1e\n")
                size += len(data)
            counts["bytes"] += size
            counts["documents"] += len(batch)
            advance(size)
            yield batch

    try:
        with progress_task(console, f"packing {split}", total=expected.get("bytes")) as advance:
            for tokens in encoder.map(batches(advance)):
                writer.write(tokens)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    if text_sha.hexdigest() != expected["sha256"]:
        raise DataError(
            f"{path} changed since `alm data prepare` wrote it (sha256 differs from stats.json)",
            hint="run `alm data prepare --force` to rebuild the clean text",
        )
    return {
        "tokens": writer.total_tokens,
        "documents": counts["documents"],
        "source_bytes": counts["bytes"],
        "shards": shards,
    }


def batch_documents(documents: Iterable[str], batch_chars: int = BATCH_CHARS) -> Iterator[list[str]]:
    """Group documents into lists of about `batch_chars` characters (one long document is its own batch)."""
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def split_long_document(doc: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Cut a long document into pieces of at most about `max_chars`, each cut just before a space, tab or
    newline that follows a non-space character.

    The ByteLevel pre-tokenizer (GPT-2's regex, which tiles the text left to right with no lookbehind) always
    ends a pre-token at such a point and starts the next one there, so encoding the pieces gives exactly the
    ids of encoding the whole — while a batch of pieces spreads over every core and the encoder's memory stays
    bounded (one 4 MB document costs ~0.5 GB otherwise). Cuts prefer newlines; text with no cut point
    (one enormous word) stays whole.
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


_CUT_AT_NEWLINE = re.compile(r"(?<=\S)\n")
_CUT_AT_SPACE = re.compile(r"(?<=\S)[ \t]")
_CUT_ANY = re.compile(r"(?<=\S)[ \t\n]")


def _last_match(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> int | None:
    last = None
    for match in pattern.finditer(text, lo, hi):
        last = match.start()
    return last


def encode_pieces(backend: Any, documents: list[str]) -> tuple[list[Any], list[int]]:
    """Encode `documents` (long ones cut into pieces) in one batch; ends[i] is the last piece of document i.

    This is the Rust part: it releases the GIL and spreads the batch over every core.
    """
    pieces: list[str] = []
    ends: list[int] = []
    for doc in documents:
        pieces.extend(split_long_document(doc))
        ends.append(len(pieces) - 1)
    return backend.encode_batch_fast(pieces, add_special_tokens=False), ends


def flatten_ids(encodings: list[Any], ends: list[int], eos_id: int) -> np.ndarray:
    """One uint32 array: every document's ids followed by `eos_id`."""
    ids = [e.ids for e in encodings]
    is_end = set(ends)
    total = sum(map(len, ids)) + len(ends)
    flat = itertools.chain.from_iterable(
        itertools.chain(x, (eos_id,)) if i in is_end else x for i, x in enumerate(ids)
    )
    return np.fromiter(flat, dtype=TOKEN_DTYPE, count=total)


def encode_documents(backend: Any, documents: list[str], eos_id: int) -> np.ndarray:
    """Token ids of `documents`, each followed by `eos_id`, as one uint32 array."""
    return flatten_ids(*encode_pieces(backend, documents), eos_id)


class Encoder:
    """Encodes batches in this process; the Rust tokenizer parallelises each batch across cores.

    A helper thread encodes the next batch while this thread turns the previous one into an array, reads
    and hashes text and writes shards, so the Python work hides behind the Rust work.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.backend = tokenizer.backend
        self.eos_id = tokenizer.eos_id

    def map(self, batches: Iterable[list[str]]) -> Iterator[np.ndarray]:
        """Token arrays of `batches`, in order (at most two batches in flight)."""
        with ThreadPoolExecutor(1) as helper:
            pending: collections.deque[Future[tuple[list[Any], list[int]]]] = collections.deque()
            for batch in batches:
                pending.append(helper.submit(encode_pieces, self.backend, batch))
                if len(pending) >= 2:
                    yield flatten_ids(*pending.popleft().result(), self.eos_id)
            while pending:
                yield flatten_ids(*pending.popleft().result(), self.eos_id)

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class PoolEncoder(Encoder):
    """Encodes batches in `workers` single-threaded processes, in order, with a bounded number in flight."""

    def __init__(self, tokenizer: Tokenizer, workers: int):
        super().__init__(tokenizer)
        import multiprocessing

        # spawn, not fork: forking after the Rust thread pool has started can deadlock it.
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(str(tokenizer.path),),
        )
        self.in_flight = 2 * workers

    def map(self, batches: Iterable[list[str]]) -> Iterator[np.ndarray]:
        pending: collections.deque[Future[bytes]] = collections.deque()
        for batch in batches:
            pending.append(self.pool.submit(_worker_encode, batch, self.eos_id))
            if len(pending) >= self.in_flight:
                yield np.frombuffer(pending.popleft().result(), dtype=TOKEN_DTYPE)
        while pending:
            yield np.frombuffer(pending.popleft().result(), dtype=TOKEN_DTYPE)

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_encoder(tokenizer: Tokenizer, workers: int) -> Encoder:
    """workers: 0 = auto (in-process, see the module docstring), 1 = in-process, N > 1 = N processes."""
    return PoolEncoder(tokenizer, workers) if workers > 1 else Encoder(tokenizer)


_worker_backend: Any = None


def _worker_init(tokenizer_path: str) -> None:
    global _worker_backend
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker; the pool provides the parallelism
    _worker_backend = Tokenizer.load(tokenizer_path).backend


def _worker_encode(batch: list[str], eos_id: int) -> bytes:
    return encode_documents(_worker_backend, batch, eos_id).tobytes()


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `staging` (two renames; the old directory is removed after)."""
    old = out_dir.parent / f".{out_dir.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "MANIFEST_FILE",
    "Encoder",
    "PoolEncoder",
    "batch_documents",
    "encode_documents",
    "encode_pieces",
    "flatten_ids",
    "make_encoder",
    "pack_dataset",
    "pack_inputs",
    "read_clean_stats",
    "split_long_document",
]
