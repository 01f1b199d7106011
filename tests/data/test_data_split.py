"""Holding out validation text: tail, blocks and hash splits on synthetic corpora whose order is known."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import local_config

from alm.data.config import DataConfig
from alm.data.docfile import iter_documents
from alm.data.prepare import prepare_corpus
from alm.data.split import assign_val, count_runs, describe_split


def numbered_corpus(directory, n: int = 400) -> list[str]:
    """One document per line, each naming its position, so order and contiguity can be read back."""
    directory.mkdir(parents=True, exist_ok=True)
    docs = [f"document {i:04d} " + "word " * (5 + i % 7) for i in range(n)]
    (directory / "numbered.txt").write_text("".join(d + "\n" for d in docs))
    return [d.rstrip() for d in docs]


def prepared(tmp_path, name: str, **keys) -> tuple[list[str], list[str], dict]:
    src = tmp_path / "src"
    cfg = local_config(tmp_path / name, [str(src / "numbered.txt")], boundary="line", **keys)
    stats = prepare_corpus(cfg, tmp_path / name / "clean")
    clean = tmp_path / name / "clean"
    return list(iter_documents(clean / "train.txt")), list(iter_documents(clean / "val.txt")), stats


def positions(docs: list[str]) -> list[int]:
    return [int(d.split()[1]) for d in docs]


def test_the_default_is_nanogpts_tail_ten_percent() -> None:
    cfg = DataConfig()
    assert (cfg.split, cfg.val_fraction) == ("tail", 0.1)


def test_tail_holds_out_the_last_tenth_contiguously_and_stably(tmp_path) -> None:
    docs = numbered_corpus(tmp_path / "src")
    train, val, stats = prepared(tmp_path, "a", split="tail")
    assert positions(train) + positions(val) == list(range(len(docs)))  # disjoint, contiguous, in order
    val_bytes = sum(len(d.encode()) for d in val)
    assert 0.09 < val_bytes / sum(len(d.encode()) for d in docs) < 0.11
    assert stats["split"] == {"method": "tail", "val_fraction": 0.1, "val_runs": 1}
    again = prepared(tmp_path, "b", split="tail")[2]
    assert again["splits"] == stats["splits"]  # same sha256s: stable across runs


def test_blocks_are_contiguous_passages_spread_through_the_corpus(tmp_path) -> None:
    docs = numbered_corpus(tmp_path / "src", n=600)
    total = sum(len(d.encode()) for d in docs)
    train, val, stats = prepared(tmp_path, "a", split="blocks", val_block_bytes=600)
    assert not set(train) & set(val) and len(train) + len(val) == len(docs)
    where = sorted(positions(val))
    runs = np.split(where, np.flatnonzero(np.diff(where) != 1) + 1)
    assert len(runs) == stats["split"]["val_runs"] >= 4  # several blocks ...
    assert runs[0][0] > len(docs) // 20 and runs[-1][-1] > len(docs) * 3 // 4  # ... spread to the end
    for run in runs:
        size = sum(len(docs[i].encode()) for i in run)
        assert 0.5 * 600 < size < 1.5 * 600 + 60  # each about one block (documents are never cut)
    assert 0.07 < sum(len(d.encode()) for d in val) / total < 0.13
    assert positions(train) == sorted(positions(train))  # train keeps corpus order too
    assert prepared(tmp_path, "b", split="blocks", val_block_bytes=600)[2]["splits"] == stats["splits"]


def test_hash_split_records_its_seed_and_differs_from_tail(tmp_path) -> None:
    numbered_corpus(tmp_path / "src")
    stats = prepared(tmp_path, "h", split="hash", seed=7)[2]
    assert stats["split"]["method"] == "hash" and stats["split"]["seed"] == 7
    assert stats["split"]["val_runs"] > 5  # scattered single documents, not passages


@pytest.mark.parametrize("method", ["tail", "blocks", "hash"])
def test_assign_val_keeps_both_sides_non_empty(method) -> None:
    sizes = np.array([5, 1_000_000], dtype=np.int64)
    draws = np.array([0.5, 0.7])
    for fraction in (0.001, 0.999):
        mask = assign_val(method, sizes, val_fraction=fraction, block_bytes=10, draws=draws)
        assert mask.sum() == 1


def test_tail_cuts_at_the_document_boundary_nearest_the_target() -> None:
    sizes = np.array([10] * 9 + [4, 6], dtype=np.int64)  # 100 bytes; 90% falls after document 8
    mask = assign_val("tail", sizes, val_fraction=0.1)
    assert mask.tolist() == [False] * 9 + [True, True]
    assert count_runs(mask) == 1 and count_runs(np.array([True, False, True, True])) == 2


def test_describe_split_says_what_was_used() -> None:
    assert (
        describe_split({"method": "tail", "val_fraction": 0.1}) == "tail: the last 10% of the text held out"
    )
    assert "3 blocks" in describe_split(
        {"method": "blocks", "val_fraction": 0.05, "val_block_bytes": 1000, "val_runs": 3}
    )
    assert "seed 7" in describe_split({"method": "hash", "val_fraction": 0.1, "seed": 7})
