"""Prepare: sources -> cleaned, deduplicated documents -> `clean/{train,val}.txt` + `clean/stats.json`.

Documents stream through `clean_document`; exact duplicates are dropped by 64-bit hash. The kept documents are
written in corpus order to one staging file, then routed to train or val by `alm.data.split` (tail, blocks or
hash), which needs every document's size first — the tail's start is only known at the end. Files are renamed
into place at the end, stats.json last, so an interrupted run leaves the old outputs intact. See
`alm.data.docfile` for the file format.

The stage is up to date when its settings and its sources' content are unchanged: local files are compared by
sha256 (cached by size and mtime, so a file copied again with the same bytes does not make the text stale).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from alm.config import to_dict
from alm.data.clean import Deduplicator, clean_document, document_hash, split_draw
from alm.data.config import DataConfig
from alm.data.docfile import DOC_SEPARATOR, DocumentWriter, iter_documents
from alm.data.sources import (
    FileHashes,
    SourceReport,
    describe_source,
    iter_source_documents,
    source_fingerprint,
)
from alm.data.split import assign_val, count_runs, split_inputs
from alm.data.stage import announce, check_output, progress_task, read_json, signature, write_json_atomic
from alm.errors import UsageError

STATS_FILE = "stats.json"
SPLITS = ("train", "val")
REBUILD_HINT = (
    "rebuild it with `alm data prepare --force` and the same --config/--set as here (tokenizers and shards "
    "built on it follow), or keep both by building elsewhere with --set data.root=DIR"
)
log = logging.getLogger(__name__)


def prepare_inputs(cfg: DataConfig, hashes: FileHashes | None = None) -> dict[str, Any]:
    """Everything the clean text depends on; its signature decides whether the stage is up to date."""
    hashes = hashes or FileHashes()
    return {
        "sources": to_dict(cfg.sources),
        "source_state": [source_fingerprint(s, hashes) for s in cfg.sources],
        "cleaning": to_dict(cfg.cleaning),
        "split": split_inputs(cfg),
    }


def prepare_corpus(
    cfg: DataConfig, out_dir: Path, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> dict[str, Any]:
    """Build the clean train/val text in `out_dir` unless it is already up to date; returns stats.json's content.

    `force` allows replacing an output built from other inputs; `rebuild` rebuilds even when up to date.
    """
    out_dir = Path(out_dir)
    previous = read_json(out_dir / STATS_FILE) if (out_dir / STATS_FILE).is_file() else None
    hashes = FileHashes((previous or {}).get("file_hashes"))
    inputs = prepare_inputs(cfg, hashes)
    reason = check_output(
        out_dir, STATS_FILE, inputs, force=force, rebuild=rebuild, what="clean text", hint=REBUILD_HINT
    )
    if reason is None:
        assert previous is not None
        if hashes.entries != previous.get(
            "file_hashes"
        ):  # same content, new mtimes: skip re-hashing next time
            previous = {**previous, "file_hashes": hashes.entries}
            write_json_atomic(out_dir / STATS_FILE, previous)
        announce(console, f"clean text in {out_dir} is up to date")
        return previous
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {name: out_dir / f".{name}.txt.tmp" for name in ("all", *SPLITS)}
    try:
        stats = _write_splits(cfg, tmp, console)
        for split in SPLITS:
            os.replace(tmp[split], out_dir / f"{split}.txt")
    finally:
        for path in tmp.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    stats = {
        "format": "alm-clean",
        "version": 1,
        "signature": signature(inputs),
        "inputs": inputs,
        **stats,
        "file_hashes": hashes.entries,
    }
    write_json_atomic(out_dir / STATS_FILE, stats)
    train, val = stats["splits"]["train"], stats["splits"]["val"]
    announce(
        console,
        f"prepared {train['documents']:,} train + {val['documents']:,} val documents "
        f"({(train['bytes'] + val['bytes']) / 1e6:.1f} MB, {cfg.split} split) -> {out_dir}",
    )
    return stats


def _write_splits(cfg: DataConfig, tmp: dict[str, Path], console: Any) -> dict[str, Any]:
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if console is not None:
            console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)
        else:
            log.warning(message)

    dedup = Deduplicator()
    dropped = {"empty": 0, "too_short": 0, "duplicate": 0}
    reports: list[SourceReport] = []
    sizes = array("q")
    draws = array("d")  # filled for the hash split only
    started = time.perf_counter()
    with DocumentWriter(tmp["all"]) as kept, progress_task(console, "cleaning text") as advance:
        for source in cfg.sources:
            report = SourceReport()
            reports.append(report)
            for raw in iter_source_documents(source, report, warn):
                advance(len(raw))
                doc = clean_document(raw)
                if not doc:
                    dropped["empty"] += 1
                    continue
                if len(doc) < cfg.cleaning.min_chars:
                    dropped["too_short"] += 1
                    continue
                data = doc.encode("utf-8")
                h = document_hash(data, cfg.seed)
                if cfg.cleaning.dedup and not dedup.is_new(h):
                    dropped["duplicate"] += 1
                    continue
                sizes.append(len(data))
                if cfg.split == "hash":
                    draws.append(split_draw(h))
                kept.write(doc)
    described = "; ".join(describe_source(s) for s in cfg.sources)
    read = sum(r.documents for r in reports)
    skipped = sum(len(r.skipped) for r in reports)
    if len(sizes) == 0:
        raise UsageError(
            f"no documents left to prepare from {described}: read {read} documents "
            f"({dropped['empty']} empty, {dropped['too_short']} shorter than min_chars, "
            f"{dropped['duplicate']} duplicates, {skipped} files skipped)",
            hint="check sources[] in the data config (paths, boundary, text_field) and cleaning.min_chars",
        )
    if len(sizes) == 1:
        raise UsageError(
            f"only one document in {described}: at least two are needed to hold one out for validation",
            hint="split the text into more documents: set `boundary: line` on the source (every line a "
            "document) in the data config",
        )
    is_val = assign_val(
        cfg.split,
        np.frombuffer(sizes, dtype=np.int64),
        val_fraction=cfg.val_fraction,
        block_bytes=cfg.val_block_bytes,
        draws=np.frombuffer(draws, dtype=np.float64) if cfg.split == "hash" else None,
    )
    with DocumentWriter(tmp["train"]) as train, DocumentWriter(tmp["val"]) as val:
        for doc, to_val in zip(iter_documents(tmp["all"]), is_val.tolist(), strict=True):
            (val if to_val else train).write(doc)
    return {
        "source": described,
        "separator": DOC_SEPARATOR,
        "split": {**split_inputs(cfg), "val_runs": count_runs(is_val)},
        "splits": {"train": _split_stats("train", train), "val": _split_stats("val", val)},
        "read": {
            "documents": read,
            "bytes": sum(r.bytes for r in reports),
            "files": sum(r.files for r in reports),
        },
        "dropped": {**dropped, "skipped_files": skipped},
        "skipped_files": [{"path": p, "reason": why} for r in reports for p, why in r.skipped][:100],
        "warnings": warnings[:100],
        "seconds": round(time.perf_counter() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _split_stats(split: str, writer: DocumentWriter) -> dict[str, Any]:
    return {
        "file": f"{split}.txt",
        "documents": writer.documents,
        "bytes": writer.bytes,
        "sha256": writer.sha256,
    }


__all__ = ["REBUILD_HINT", "SPLITS", "STATS_FILE", "prepare_corpus", "prepare_inputs"]
