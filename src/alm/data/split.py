"""Holding out validation text: which documents go to val, as a pure function of their sizes (and hashes).

- `tail` (the default): the last `val_fraction` of the text, by UTF-8 bytes — nanoGPT's split, so figures on the
  built-in corpus compare with nanoGPT's directly. Val is text the model never saw the like of (later plays).
- `blocks`: contiguous blocks of about `val_block_bytes`, one closing every `val_block_bytes / val_fraction`
  bytes, so val is whole passages spread evenly through the corpus (no drift between its start and its end).
- `hash`: each document by a keyed hash of its text — stable when documents are added or removed, and right for
  corpora of independent documents (web text). In a single book it flatters the model: neighbouring speeches of
  one scene land on both sides.

Documents are never cut: a split lands on the document boundary nearest its target. With two or more documents
both sides are non-empty (the document nearest the boundary moves over if chance left one side empty).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alm.data.config import DataConfig, SplitMethod


def assign_val(
    method: SplitMethod,
    sizes: np.ndarray,
    *,
    val_fraction: float,
    block_bytes: int = 0,
    draws: np.ndarray | None = None,
) -> np.ndarray:
    """A boolean mask over the documents (in corpus order): True where a document belongs to val.

    `sizes` are the documents' UTF-8 byte counts; `draws` (hash only) their hashes scaled to [0, 1).
    """
    n = len(sizes)
    if n < 2:
        raise ValueError("a split needs at least two documents")
    starts = np.cumsum(sizes, dtype=np.int64) - sizes
    if method == "hash":
        if draws is None:
            raise ValueError("the hash split needs each document's draw")
        is_val = draws < val_fraction
        if not is_val.any():
            is_val[np.argmin(draws)] = True
        elif is_val.all():
            is_val[np.argmax(draws)] = False
        return is_val
    if method == "blocks":
        period = block_bytes / val_fraction
        is_val = (starts % period) >= period - block_bytes
        if is_val.any():
            return is_val
    # tail (and blocks on a corpus shorter than one period): cut at the boundary nearest (1 - fraction) of the
    # text, keeping at least one document on each side.
    target = (1.0 - val_fraction) * float(starts[-1] + sizes[-1])
    cut = 1 + int(np.argmin(np.abs(starts[1:] - target)))
    return np.arange(n) >= cut


def split_inputs(cfg: DataConfig) -> dict[str, Any]:
    """The settings that decide the split (only those the method reads, so others may change freely)."""
    inputs: dict[str, Any] = {"method": cfg.split, "val_fraction": cfg.val_fraction}
    if cfg.split == "blocks":
        inputs["val_block_bytes"] = cfg.val_block_bytes
    if cfg.split == "hash":
        inputs["seed"] = cfg.seed
    return inputs


def count_runs(is_val: np.ndarray) -> int:
    """How many contiguous runs of val documents the mask holds (1 for tail)."""
    edges = np.diff(is_val.astype(np.int8))
    return int(is_val[0]) + int((edges == 1).sum())


def describe_split(split: dict[str, Any]) -> str:
    """One line for `alm data info`, from the `split` record in stats.json."""
    method = split.get("method", "hash")
    share = f"{100 * float(split.get('val_fraction', 0.0)):g}%"
    if method == "tail":
        return f"tail: the last {share} of the text held out"
    if method == "blocks":
        runs = split.get("val_runs")
        blocks = "blocks" if runs is None else f"{runs} block" + ("s" if runs != 1 else "")
        return (
            f"blocks: {share} of the text held out in {blocks} of ~{split.get('val_block_bytes', 0):,} bytes"
        )
    return f"hash: {share} of documents held out by a hash of their text (seed {split.get('seed', '?')})"


__all__ = ["assign_val", "count_runs", "describe_split", "split_inputs"]
