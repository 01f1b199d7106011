from __future__ import annotations

import hashlib
import json
import os

import pytest
from data_helpers import local_config

from alm.data.clean import clean_document
from alm.data.docfile import DocumentWriter, iter_documents
from alm.data.prepare import prepare_corpus
from alm.errors import DataError, UsageError


def test_clean_document_policy() -> None:
    assert clean_document("a\r\nb\rc\n") == "a\nb\nc"
    assert clean_document("cafe\u0301") == "café"  # NFC
    assert (
        clean_document("bell\x07 nul\x00 esc\x1b del\x7f c1\x85 rs\x1e tab\tok")
        == "bell nul esc del c1 rs tab\tok"
    )
    assert (
        clean_document("\n  \n\n  indented first line\n\nsecond\n\n  ") == "  indented first line\n\nsecond"
    )
    assert clean_document(" \t\n\x00\n") == ""
    assert clean_document("😀 中文 ünïcödé") == "😀 中文 ünïcödé"


def test_document_file_is_lossless(tmp_path) -> None:
    docs = ["plain", "two\n\nparagraphs\n", "\n leading newline", "tabs\tand 😀", "x" * 3_000_000]
    with DocumentWriter(tmp_path / "d.txt") as writer:
        for doc in docs:
            writer.write(doc)
    assert list(iter_documents(tmp_path / "d.txt")) == docs
    assert writer.sha256 == hashlib.sha256((tmp_path / "d.txt").read_bytes()).hexdigest()
    assert writer.bytes == sum(len(d.encode()) for d in docs)
    (tmp_path / "cut.txt").write_bytes((tmp_path / "d.txt").read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        list(iter_documents(tmp_path / "cut.txt"))


@pytest.mark.parametrize("offset", [-2, -1, 0, 1])
def test_document_separator_across_a_read_chunk_boundary(tmp_path, offset) -> None:
    chunk = 1 << 20  # the reader's chunk, in characters
    docs = ["a" * (chunk - 1 + offset), "b" * (2 * chunk + 5), "c"]
    with DocumentWriter(tmp_path / "d.txt") as writer:
        for doc in docs:
            writer.write(doc)
    assert list(iter_documents(tmp_path / "d.txt")) == docs


def write_corpus(directory, n: int = 200) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(f"Speaker {i}:\nline {i} of the play, café.\r\n\n" for i in range(n))
    (directory / "play.txt").write_text(text + "Speaker 3:\nline 3 of the play, café.\n\n\n\n   \n")


def test_prepare_cleans_dedups_splits_and_records_stats(tmp_path) -> None:
    write_corpus(tmp_path / "src")
    cfg = local_config(tmp_path / "data", [str(tmp_path / "src")], boundary="blank_line")
    stats = prepare_corpus(cfg, tmp_path / "data" / "clean")
    clean = tmp_path / "data" / "clean"
    train, val = list(iter_documents(clean / "train.txt")), list(iter_documents(clean / "val.txt"))
    assert len(train) + len(val) == 200 and val and train
    assert not set(train) & set(val)
    assert all("\r" not in d for d in train + val)
    assert stats["dropped"]["duplicate"] == 1
    on_disk = json.loads((clean / "stats.json").read_text())
    assert on_disk["splits"] == stats["splits"]
    for split, docs in (("train", train), ("val", val)):
        entry = stats["splits"][split]
        assert entry["documents"] == len(docs)
        assert entry["bytes"] == sum(len(d.encode()) for d in docs)
        assert entry["sha256"] == hashlib.sha256((clean / f"{split}.txt").read_bytes()).hexdigest()
    assert 0.03 < len(val) / 200 < 0.2  # about val_fraction = 0.1
    assert stats["source"].startswith("local:")


def test_hash_split_is_a_stable_function_of_the_text(tmp_path) -> None:
    write_corpus(tmp_path / "src", n=100)
    a = prepare_corpus(local_config(tmp_path / "a", [str(tmp_path / "src")], split="hash"), tmp_path / "a")
    write_corpus(tmp_path / "src", n=150)  # more documents: the first 100 keep their side
    prepare_corpus(local_config(tmp_path / "b", [str(tmp_path / "src")], split="hash"), tmp_path / "b")
    val_a, val_b = (
        set(iter_documents(tmp_path / "a" / "val.txt")),
        set(iter_documents(tmp_path / "b" / "val.txt")),
    )
    assert a["splits"]["val"]["documents"] > 0 and val_a <= val_b


@pytest.mark.parametrize("split", ["tail", "blocks", "hash"])
def test_val_is_never_empty_with_two_documents(tmp_path, split) -> None:
    (tmp_path / "two.txt").write_text("first document\n\nsecond document\n")
    for fraction in (0.001, 0.999):
        cfg = local_config(tmp_path / "d", [str(tmp_path / "two.txt")], val_fraction=fraction, split=split)
        stats = prepare_corpus(cfg, tmp_path / f"out-{fraction}")
        assert stats["splits"]["train"]["documents"] == 1 and stats["splits"]["val"]["documents"] == 1
        out = tmp_path / f"out-{fraction}"
        docs = list(iter_documents(out / "train.txt")) + list(iter_documents(out / "val.txt"))
        assert sorted(docs) == ["first document", "second document"]
        assert (
            stats["splits"]["train"]["sha256"] == hashlib.sha256((out / "train.txt").read_bytes()).hexdigest()
        )


def test_min_chars_and_empty_corpus(tmp_path) -> None:
    (tmp_path / "short.txt").write_text("hi\n\nyo\n\n \x07 \n")
    cfg = local_config(tmp_path / "d", [str(tmp_path / "short.txt")], cleaning={"min_chars": 5})
    with pytest.raises(UsageError, match=r"no documents left.*1 empty, 2 shorter than min_chars") as info:
        prepare_corpus(cfg, tmp_path / "out")
    assert info.value.exit_code == 2  # the sources named by the user hold nothing usable: like a missing file
    (tmp_path / "one.txt").write_text("just one document\n")
    with pytest.raises(UsageError, match="only one document") as info:
        prepare_corpus(local_config(tmp_path / "d", [str(tmp_path / "one.txt")]), tmp_path / "out")
    assert info.value.exit_code == 2 and "boundary: line" in str(info.value)  # blank_line is the default
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="no documents left"):
        prepare_corpus(local_config(tmp_path / "d", [str(tmp_path / "empty.txt")]), tmp_path / "out")
    with pytest.raises(UsageError, match="not found"):
        prepare_corpus(local_config(tmp_path / "d", [str(tmp_path / "missing.txt")]), tmp_path / "out")


def test_only_binary_files_is_an_empty_corpus_that_names_the_skips(tmp_path) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UsageError, match="1 files skipped"):
        prepare_corpus(local_config(tmp_path / "d", [str(tmp_path / "a.bin")]), tmp_path / "out")


def test_refuses_to_overwrite_different_data_unless_forced(tmp_path) -> None:
    write_corpus(tmp_path / "src")
    out = tmp_path / "clean"
    cfg = local_config(tmp_path, [str(tmp_path / "src")])
    first = prepare_corpus(cfg, out)
    before = (out / "train.txt").read_bytes()
    assert prepare_corpus(cfg, out)["signature"] == first["signature"]  # up to date: kept
    changed = local_config(tmp_path, [str(tmp_path / "src")], boundary="line")
    with pytest.raises(UsageError, match=r"sources\[0\]\.boundary changed.*refusing to overwrite") as info:
        prepare_corpus(changed, out)
    assert "--force" in str(info.value) and info.value.exit_code == 2
    assert (out / "train.txt").read_bytes() == before  # nothing lost
    assert prepare_corpus(changed, out, force=True)["signature"] != first["signature"]

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not clean text written by alm"):
        prepare_corpus(cfg, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_failure_midway_keeps_the_previous_output(tmp_path) -> None:
    write_corpus(tmp_path / "src")
    out = tmp_path / "clean"
    prepare_corpus(local_config(tmp_path, [str(tmp_path / "src")]), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (tmp_path / "src" / "zz.txt").write_bytes(b"valid start\n" * 10_000 + b"\xff\n")
    with pytest.raises(DataError, match="invalid UTF-8"):
        prepare_corpus(local_config(tmp_path, [str(tmp_path / "src")]), out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_source_copied_again_with_the_same_content_is_still_up_to_date(tmp_path) -> None:
    """Staleness is decided by content (sha256), not mtimes: `cp` of the same file must not block a resume."""
    write_corpus(tmp_path / "src")
    out = tmp_path / "clean"
    cfg = local_config(tmp_path, [str(tmp_path / "src")])
    first = prepare_corpus(cfg, out)
    play = tmp_path / "src" / "play.txt"
    play.write_bytes(play.read_bytes())  # same bytes, new mtime
    os.utime(play, ns=(play.stat().st_atime_ns, play.stat().st_mtime_ns + 10**9))
    before = (out / "train.txt").stat().st_mtime_ns
    again = prepare_corpus(cfg, out)
    assert again["signature"] == first["signature"] and (out / "train.txt").stat().st_mtime_ns == before
    assert again["file_hashes"][str(play)][1] == play.stat().st_mtime_ns  # digest cached under the new mtime
    play.write_text(play.read_text() + "A new speaker:\nwith new words.\n")
    with pytest.raises(UsageError, match=r"source_state.*changed.*refusing") as info:
        prepare_corpus(cfg, out)
    assert "alm data prepare --force" in str(info.value)
