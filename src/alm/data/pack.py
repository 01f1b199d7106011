"""Pack: clean text -> token ids -> uint32 shards + manifest.json (see `alm.data.shards` for the format).

Documents stream from the clean files; long ones are cut into pieces at pre-token boundaries (which changes no
id, see `alm.tokenizer.pieces`; tokenizers for which it would, such as an imported Llama's, encode documents
whole) and the pieces are grouped into batches of about 256 KB of text, so a batch —
and the encoder's memory — stays bounded even for one 50 MB line. Each batch is encoded with the Rust
tokenizer's `encode_batch_fast` (which spreads a batch over every core by itself) and <|eos|> follows the last
piece of every document. `workers > 1` encodes batches in that many single-threaded processes instead (in
order, a bounded number in flight); on our 2-core machine that is no faster than the in-process path
(docs/BENCHMARKS.md, "Packing"), so auto picks in-process.

The shards are written into a staging directory beside the output and swapped in at the end, so an
interrupted pack leaves the previous shards untouched. Up-to-date shards are checked cheaply (headers and file
sizes against the manifest) and re-packed when damaged; `alm data info --verify` checks hashes and ids too.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from alm.data.config import PackingConfig
from alm.data.docfile import iter_documents
from alm.data.layout import MANIFEST_FILE
from alm.data.prepare import SPLITS, STATS_FILE
from alm.data.shards import FORMAT_VERSION, HEADER_BYTES, TOKEN_DTYPE, ShardWriter, open_split
from alm.data.stage import announce, check_output, progress_task, read_json, signature, write_json_atomic
from alm.errors import DataError
from alm.tokenizer.pieces import gpt2_pre_tokenization, split_long_document
from alm.tokenizer.tokenizer import Tokenizer

BATCH_CHARS = 1 << 18  # ~256 KB of text per encode call: enough documents for both cores, small peak memory
MAX_WHOLE_CHARS = 1 << 24  # the longest document encoded uncut (~2 GB of encoder memory)
PACK_HINT = "rebuild it with `alm pack --force`, or build elsewhere with --set data.root=DIR"
Batch = tuple[list[str], list[bool]]  # text pieces, and whether each one ends its document


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
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenise both clean splits into shards under `out_dir` unless already up to date; returns the manifest.

    Every input is derived (the clean text, the tokenizer, where the stream is cut into files), so stale shards
    are simply re-packed; only a directory alm did not write is refused without `force`. `settings` (the data
    config, recorded in the manifest) lets `alm train --data PACKED_DIR` rebuild the same data later.
    """
    clean_dir, out_dir = Path(clean_dir), Path(out_dir)
    stats = read_clean_stats(clean_dir)
    tokenizer = Tokenizer.load(tokenizer_path)
    inputs = pack_inputs(stats, tokenizer, cfg)
    reason = check_output(
        out_dir,
        MANIFEST_FILE,
        inputs,
        force=force,
        rebuild=rebuild,
        derived=tuple(inputs),
        what="packed shards",
        hint=PACK_HINT,
    )
    if reason is None:
        manifest = read_json(out_dir / MANIFEST_FILE)
        assert manifest is not None
        damage = _damage(out_dir, manifest)
        if damage is None:
            announce(console, f"shards in {out_dir} are up to date")
            return manifest
        reason = damage
    if reason not in ("not built yet", "rebuild requested"):
        announce(console, f"re-packing {out_dir}: {reason}")
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
            "data": dict(settings) if settings is not None else None,
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


def _damage(out_dir: Path, manifest: dict[str, Any]) -> str | None:
    """Why up-to-date shards cannot be used as they are (missing, truncated, headers off), or None."""
    try:
        for split in SPLITS:
            open_split(out_dir, manifest, split)
    except DataError as exc:
        return exc.message
    return None


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

    def documents(advance: Callable[[float], None]) -> Iterator[str]:
        for doc in iter_documents(path):
            data = doc.encode("utf-8")
            text_sha.update(data)
            text_sha.update(b"\x1e\n")
            counts["bytes"] += len(data)
            counts["documents"] += 1
            advance(len(data))
            yield doc

    try:
        with progress_task(console, f"packing {split}", total=expected.get("bytes")) as advance:
            for tokens in encoder.map(batch_pieces(documents(advance), split=document_splitter(tokenizer))):
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


def document_splitter(tokenizer: Tokenizer) -> Callable[[str], list[str]]:
    """How documents are cut before encoding: at pre-token boundaries where that keeps every id (GPT-2's
    pre-tokenization, which every tokenizer alm trains has), else not at all — an imported Llama tokenizer's ids
    would change at every cut (`alm.tokenizer.pieces`)."""
    differs = gpt2_pre_tokenization(tokenizer.backend)
    if differs is None:
        return split_long_document

    def whole(doc: str) -> list[str]:
        if len(doc) > MAX_WHOLE_CHARS:
            raise DataError(
                f"a document of {len(doc):,} characters is too long to encode whole, and this tokenizer "
                f"({differs}) cannot cut it into pieces without changing its ids",
                hint="split the text into smaller documents (data.sources[].boundary: blank_line or line)",
            )
        return [doc]

    return whole


def batch_pieces(
    documents: Iterable[str],
    batch_chars: int = BATCH_CHARS,
    *,
    split: Callable[[str], list[str]] = split_long_document,
) -> Iterator[Batch]:
    """Documents cut into pieces (`split`, see `document_splitter`) and grouped into batches of about
    `batch_chars`.

    A long document spreads over several batches, so no batch — and no encode call — is much larger than
    `batch_chars`; the flags mark each document's last piece, after which <|eos|> goes.
    """
    pieces: list[str] = []
    ends: list[bool] = []
    size = 0
    for doc in documents:
        parts = split(doc)
        for i, part in enumerate(parts):
            pieces.append(part)
            ends.append(i == len(parts) - 1)
            size += len(part)
            if size >= batch_chars:
                yield pieces, ends
                pieces, ends, size = [], [], 0
    if pieces:
        yield pieces, ends


def encode_batch(backend: Any, batch: Batch, eos_id: int) -> np.ndarray:
    """One batch as a uint32 array: the pieces' ids, with `eos_id` after each document's last piece.

    The encode call is the Rust part: it releases the GIL and spreads the batch over every core.
    """
    pieces, ends = batch
    return flatten_ids(backend.encode_batch_fast(pieces, add_special_tokens=False), ends, eos_id)


def flatten_ids(encodings: list[Any], ends: list[bool], eos_id: int) -> np.ndarray:
    """One uint32 array: each encoding's ids, followed by `eos_id` where `ends` says a document ends."""
    ids = [e.ids for e in encodings]
    total = sum(map(len, ids)) + sum(ends)
    flat = itertools.chain.from_iterable(
        itertools.chain(x, (eos_id,)) if end else x for x, end in zip(ids, ends, strict=True)
    )
    return np.fromiter(flat, dtype=TOKEN_DTYPE, count=total)


def encode_documents(backend: Any, documents: list[str], eos_id: int) -> np.ndarray:
    """Token ids of `documents`, each followed by `eos_id`, as one uint32 array."""
    arrays = [encode_batch(backend, batch, eos_id) for batch in batch_pieces(documents)]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=TOKEN_DTYPE)


class Encoder:
    """Encodes batches in this process; the Rust tokenizer parallelises each batch across cores.

    A helper thread encodes the next batch while this thread turns the previous one into an array, reads
    and hashes text and writes shards, so the Python work hides behind the Rust work.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.backend = tokenizer.backend
        self.eos_id = tokenizer.eos_id

    def map(self, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
        """Token arrays of `batches`, in order (at most two batches in flight)."""
        with ThreadPoolExecutor(1) as helper:
            pending: collections.deque[Future[np.ndarray]] = collections.deque()
            for batch in batches:
                pending.append(helper.submit(encode_batch, self.backend, batch, self.eos_id))
                if len(pending) >= 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

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

    def map(self, batches: Iterable[Batch]) -> Iterator[np.ndarray]:
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


def _worker_encode(batch: Batch, eos_id: int) -> bytes:
    return encode_batch(_worker_backend, batch, eos_id).tobytes()


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `staging` (two renames; the old directory is removed after)."""
    old = out_dir.parent / f".{out_dir.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "BATCH_CHARS",
    "MANIFEST_FILE",
    "Batch",
    "Encoder",
    "PoolEncoder",
    "batch_pieces",
    "document_splitter",
    "encode_batch",
    "encode_documents",
    "flatten_ids",
    "make_encoder",
    "pack_dataset",
    "pack_inputs",
    "read_clean_stats",
]
