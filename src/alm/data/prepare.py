"""Prepare: sources -> cleaned, deduplicated documents -> `clean/{train,val}.txt` + `clean/stats.json`.

Documents stream through `clean_document`; exact duplicates are dropped by 64-bit hash; the train/val split
is a pure function of (document text, seed, val_fraction): a document goes to val when its keyed hash, scaled
to [0, 1), is below val_fraction. So the split is stable when documents are added or removed. With two or more
documents val (and train) is never empty: if chance leaves one side empty, the document closest to the
threshold moves over. Files are written next to the outputs and renamed into place at the end, stats.json last,
so an interrupted run leaves the old outputs intact. See `alm.data.docfile` for the file format.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from alm.config import to_dict
from alm.data.clean import Deduplicator, clean_document, document_hash, split_draw
from alm.data.config import DataConfig
from alm.data.docfile import DOC_SEPARATOR, DocumentWriter, iter_documents
from alm.data.sources import SourceReport, describe_source, iter_source_documents, source_fingerprint
from alm.data.stage import announce, check_output, progress_task, read_json, signature, write_json_atomic
from alm.errors import DataError

STATS_FILE = "stats.json"
SPLITS = ("train", "val")
log = logging.getLogger(__name__)


def prepare_inputs(cfg: DataConfig) -> dict[str, Any]:
    """Everything the clean text depends on; its signature decides whether the stage is up to date."""
    return {
        "sources": to_dict(cfg.sources),
        "source_state": [source_fingerprint(s) for s in cfg.sources],
        "cleaning": to_dict(cfg.cleaning),
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
    }


def prepare_corpus(
    cfg: DataConfig, out_dir: Path, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> dict[str, Any]:
    """Build the clean train/val text in `out_dir` unless it is already up to date; returns stats.json's content.

    `force` allows replacing an output built from other inputs; `rebuild` rebuilds even when up to date.
    """
    out_dir = Path(out_dir)
    inputs = prepare_inputs(cfg)
    if check_output(out_dir, STATS_FILE, inputs, force=force, rebuild=rebuild, what="clean text"):
        announce(console, f"clean text in {out_dir} is up to date")
        stats = read_json(out_dir / STATS_FILE)
        assert stats is not None
        return stats
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = {split: out_dir / f".{split}.txt.tmp" for split in SPLITS}
    try:
        stats = _write_splits(cfg, tmp, console)
        for split in SPLITS:
            os.replace(tmp[split], out_dir / f"{split}.txt")
    finally:
        for path in tmp.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    stats = {"format": "alm-clean", "version": 1, "signature": signature(inputs), "inputs": inputs, **stats}
    write_json_atomic(out_dir / STATS_FILE, stats)
    train, val = stats["splits"]["train"], stats["splits"]["val"]
    announce(
        console,
        f"prepared {train['documents']:,} train + {val['documents']:,} val documents "
        f"({(train['bytes'] + val['bytes']) / 1e6:.1f} MB) -> {out_dir}",
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
    # The train document nearest the val threshold (and the val one nearest from above), in case a side is empty.
    nearest = {"train": (2.0, -1), "val": (-1.0, -1)}
    started = time.perf_counter()
    with (
        DocumentWriter(tmp["train"]) as train,
        DocumentWriter(tmp["val"]) as val,
        progress_task(console, "cleaning text") as advance,
    ):
        writers = {"train": train, "val": val}
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
                h = document_hash(doc.encode("utf-8"), cfg.seed)
                if cfg.cleaning.dedup and not dedup.is_new(h):
                    dropped["duplicate"] += 1
                    continue
                draw = split_draw(h)
                split = "val" if draw < cfg.val_fraction else "train"
                if (split == "train" and draw < nearest["train"][0]) or (
                    split == "val" and draw > nearest["val"][0]
                ):
                    nearest[split] = (draw, writers[split].documents)
                writers[split].write(doc)
        kept = train.documents + val.documents
    described = "; ".join(describe_source(s) for s in cfg.sources)
    read = sum(r.documents for r in reports)
    if kept == 0:
        raise DataError(
            f"no documents left to prepare from {described}: read {read} documents "
            f"({dropped['empty']} empty, {dropped['too_short']} shorter than min_chars, "
            f"{dropped['duplicate']} duplicates, {sum(len(r.skipped) for r in reports)} files skipped)",
            hint="check sources[] in the data config (paths, boundary, text_field) and cleaning.min_chars",
        )
    if kept == 1:
        raise DataError(
            f"only one document in {described}: at least two are needed to hold one out for validation",
            hint="split the text into more documents, e.g. boundary: blank_line or boundary: line",
        )
    counts = {"train": train.documents, "val": val.documents}
    splits = {"train": _split_stats("train", train), "val": _split_stats("val", val)}
    for empty, other in (("val", "train"), ("train", "val")):
        if counts[empty] == 0:  # move the document nearest the threshold over, rewriting the other file
            splits = _move_one(tmp, source=other, target=empty, index=nearest[other][1])
    return {
        "source": described,
        "separator": DOC_SEPARATOR,
        "splits": splits,
        "read": {
            "documents": read,
            "bytes": sum(r.bytes for r in reports),
            "files": sum(r.files for r in reports),
        },
        "dropped": {**dropped, "skipped_files": sum(len(r.skipped) for r in reports)},
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


def _move_one(tmp: dict[str, Path], *, source: str, target: str, index: int) -> dict[str, dict[str, Any]]:
    """Move document `index` of split `source` to the end of split `target`; both files are rewritten."""
    moved = ""
    rewritten = tmp[source].with_name(tmp[source].name + ".2")
    with DocumentWriter(rewritten) as out:
        for i, doc in enumerate(iter_documents(tmp[source])):
            if i == index:
                moved = doc
            else:
                out.write(doc)
    os.replace(rewritten, tmp[source])
    docs = list(iter_documents(tmp[target]))  # empty, by construction
    with DocumentWriter(tmp[target]) as out_target:
        for doc in [*docs, moved]:
            out_target.write(doc)
    return {source: _split_stats(source, out), target: _split_stats(target, out_target)}


__all__ = ["SPLITS", "STATS_FILE", "prepare_corpus", "prepare_inputs"]
