"""The tokenizer stage: when `alm.data` reuses, retrains or refuses to replace a tokenizer."""

from __future__ import annotations

import pytest

from alm.data.tokenizer_stage import build_tokenizer
from alm.errors import UsageError
from alm.tokenizer import Tokenizer, TokenizerConfig
from alm.tokenizer.tokenizer import TOKENIZER_FILE

DOCUMENTS = ["First Citizen:\nBefore we proceed any further, hear me speak."] * 20 + [
    "All:\nSpeak, speak."
] * 5


def test_up_to_date_tokenizer_is_reused_and_changes_are_refused(tmp_path) -> None:
    cfg = TokenizerConfig(type="bpe", vocab_size=300)
    first = build_tokenizer(DOCUMENTS, tmp_path, cfg, corpus_sha256="a")
    assert first.path is not None
    mtime = first.path.stat().st_mtime_ns
    again = build_tokenizer(iter(()), tmp_path, cfg, corpus_sha256="a")  # not retrained: nothing is read
    assert again.fingerprint == first.fingerprint and first.path.stat().st_mtime_ns == mtime
    with pytest.raises(UsageError, match="vocab_size changed") as info:
        build_tokenizer(DOCUMENTS, tmp_path, TokenizerConfig(vocab_size=310), corpus_sha256="a")
    assert info.value.exit_code == 2 and "alm tokenizer train --force" in str(info.value)
    assert Tokenizer.load(tmp_path).fingerprint == first.fingerprint  # refused: nothing lost
    forced = build_tokenizer(
        DOCUMENTS, tmp_path, TokenizerConfig(vocab_size=310), corpus_sha256="a", force=True
    )
    assert forced.vocab_size == 310


def test_new_text_retrains_a_tokenizer_of_the_same_settings(tmp_path) -> None:
    """Its corpus was rebuilt (that took --force upstream): the old tokenizer is stale by construction."""
    cfg = TokenizerConfig(vocab_size=300)
    first = build_tokenizer(DOCUMENTS, tmp_path, cfg, corpus_sha256="a")
    second = build_tokenizer(["other text, other merges"] * 30, tmp_path, cfg, corpus_sha256="b")
    assert second.fingerprint != first.fingerprint and second.meta["corpus_sha256"] == "b"


def test_a_tokenizer_json_its_meta_does_not_describe_is_retrained(tmp_path) -> None:
    cfg = TokenizerConfig(vocab_size=300)
    first = build_tokenizer(DOCUMENTS, tmp_path, cfg, corpus_sha256="a")
    (tmp_path / TOKENIZER_FILE).write_text((tmp_path / TOKENIZER_FILE).read_text().replace("  ", " "))
    again = build_tokenizer(DOCUMENTS, tmp_path, cfg, corpus_sha256="a")  # e.g. a save killed between files
    assert again.fingerprint == first.fingerprint == again.meta["fingerprint"]


def test_foreign_files_are_refused(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a tokenizer written by alm; refusing to overwrite"):
        build_tokenizer(DOCUMENTS, tmp_path, TokenizerConfig(vocab_size=300), corpus_sha256="a")
    assert (tmp_path / "notes.txt").read_text() == "mine"
