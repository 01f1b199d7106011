from __future__ import annotations

import hashlib
import json
import lzma

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alm.errors import ConfigError, DataError
from alm.tokenizer import MIN_VOCAB_SIZE, Tokenizer, TokenizerConfig, train_tokenizer
from alm.tokenizer.pieces import MAX_PIECE_CHARS, bounded_pieces
from alm.tokenizer.special import CHAT_TOKENS, DOCUMENT_TOKENS, RESERVED_TOKENS, USER
from alm.tokenizer.tokenizer import META_FILE, TOKENIZER_FILE

TRICKY = [
    "café naïve Ångström",
    "emoji 😀👍🏽 and a family 👨‍👩‍👧",
    "中文字符 日本語 한국어",
    "tab\there\r\nwindows\rold mac\n",
    "controls \x00\x01\x07\x1b\x7f\x85 end",
    "  leading and trailing spaces  ",
    "\u2581 sentencepiece's space marker",
    "literal <|eos|> and <|bos|> in text",
    "",
    "e\u0301 decomposed",
]


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_exact_on_tricky_text(trained: Tokenizer, text: str) -> None:
    ids = trained.encode(text)
    assert trained.decode(ids) == text
    assert all(0 <= i < trained.vocab_size for i in ids)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_round_trip_property(trained: Tokenizer, text: str) -> None:
    assert trained.decode(trained.encode(text)) == text


def test_special_tokens_have_fixed_ids_and_are_not_injectable(trained: Tokenizer) -> None:
    assert (trained.bos_id, trained.eos_id, trained.pad_id) == (0, 1, 2)
    assert [trained.token_to_id(t) for t in DOCUMENT_TOKENS] == [0, 1, 2]
    ids = trained.encode("a <|eos|> b")
    assert trained.eos_id not in ids  # text never becomes a control token
    assert trained.decode([trained.eos_id]) == "<|eos|>"


def test_chat_tokens_are_reserved_at_ids_3_to_6(trained: Tokenizer) -> None:
    assert [trained.token_id(t) for t in RESERVED_TOKENS] == list(range(7))
    assert [trained.token_id(t) for t in CHAT_TOKENS] == [3, 4, 5, 6]
    assert trained.token_id("the") is None  # a learned piece is not a special token
    ids = trained.encode(f"{USER} hello")
    assert not set(ids) & set(range(7))  # chat markup in text stays text
    assert trained.decode([4]) == USER and trained.token_bytes(4) == USER.encode()
    meta = json.loads(trained.path.with_name(META_FILE).read_text())
    assert meta["special_tokens"] == {tok: i for i, tok in enumerate(RESERVED_TOKENS)}
    assert MIN_VOCAB_SIZE == 256 + 7 + 1
    with pytest.raises(ConfigError, match="at least 264"):
        TokenizerConfig(vocab_size=263).validate()


def test_a_tokenizer_trained_before_the_chat_tokens_still_works(tmp_path, documents) -> None:
    """Tokenizers alm trained before ids 3-6 were reserved have bos/eos/pad only: they load and round-trip."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=list(DOCUMENT_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(documents, trainer=trainer)
    backend.save(str(tmp_path / TOKENIZER_FILE))
    old = Tokenizer.load(tmp_path)
    assert (old.bos_id, old.eos_id, old.pad_id) == (0, 1, 2)
    assert [old.token_id(t) for t in CHAT_TOKENS] == [None] * 4
    text = "ROMEO: café <|user|> 😀"
    assert old.decode(old.encode(text)) == text


def test_encode_batch_matches_encode(trained: Tokenizer, documents: list[str]) -> None:
    batch = documents[:20]
    assert trained.encode_batch(batch) == [trained.encode(d) for d in batch]


def test_token_bytes_concatenate_to_the_utf8_text(trained: Tokenizer) -> None:
    text = "café 😀 中文\tend"
    assert b"".join(trained.token_bytes(i) for i in trained.encode(text)) == text.encode("utf-8")


def test_compresses_english_text(trained: Tokenizer, documents: list[str]) -> None:
    text = "\n\n".join(documents[:50])
    assert len(trained.encode(text)) < 0.8 * len(text.encode("utf-8"))


def test_files_meta_and_fingerprint(trained: Tokenizer) -> None:
    path = trained.path
    assert path is not None and path.name == TOKENIZER_FILE
    assert trained.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    meta = json.loads(path.with_name(META_FILE).read_text())
    assert meta["fingerprint"] == trained.fingerprint
    assert meta["backend"] == trained.backend_type
    assert meta["vocab_size"] == trained.vocab_size
    assert meta["corpus_sha256"] == "test-corpus"
    assert Tokenizer.load(path.parent).fingerprint == trained.fingerprint  # a directory works too


def test_loadable_by_transformers(trained: Tokenizer) -> None:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_file=str(trained.path), bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    text = "ROMEO:\nBut, soft! what light through yonder window breaks? café 😀"
    assert hf.encode(text, add_special_tokens=False) == trained.encode(text)
    assert hf.decode(trained.encode(text)) == text
    assert hf.eos_token_id == trained.eos_id


def test_sample_caps_bound_the_training_text(tmp_path, documents) -> None:
    cfg = TokenizerConfig(vocab_size=300, max_bytes=5_000, max_lines=10_000)
    meta = json.loads(
        train_tokenizer(documents, tmp_path / "b", cfg, corpus_sha256="x")
        .path.with_name(META_FILE)
        .read_text()
    )
    assert 0 < meta["sample"]["bytes"] <= 5_000
    cfg = TokenizerConfig(vocab_size=300, max_bytes=None, max_lines=40)
    meta = json.loads(
        train_tokenizer(documents, tmp_path / "l", cfg, corpus_sha256="x")
        .path.with_name(META_FILE)
        .read_text()
    )
    assert 0 < meta["sample"]["lines"] <= 40


def test_one_huge_document_is_cut_to_the_cap(tmp_path) -> None:
    cfg = TokenizerConfig(vocab_size=300, max_bytes=2_000)
    tok = train_tokenizer(["word " * 10_000], tmp_path, cfg, corpus_sha256="x")
    assert json.loads(tok.path.with_name(META_FILE).read_text())["sample"]["bytes"] <= 2_000


def test_long_lines_reach_the_trainer_in_bounded_pieces(tmp_path) -> None:
    """A line far longer than a piece is cut (at spaces, or hard inside one enormous word) before training,
    so the trainer's memory does not grow with the longest line; all of its text is still learned from."""
    line = "many words without a newline " * 10_000 + "x" * (3 * MAX_PIECE_CHARS)
    pieces = list(bounded_pieces(line))
    assert "".join(pieces) == line and len(pieces) > 5
    assert max(map(len, pieces)) <= MAX_PIECE_CHARS
    progress: list[int] = []
    cfg = TokenizerConfig(vocab_size=300, max_bytes=None)
    tok = train_tokenizer([line], tmp_path, cfg, corpus_sha256="x", progress=progress.append)
    assert progress == [len(line)] and tok.token_id(USER) == 4
    assert json.loads(tok.path.with_name(META_FILE).read_text())["sample"] == {
        "documents": 1,
        "bytes": len(line),
        "lines": 1,
    }


def test_no_text_is_an_error(tmp_path) -> None:
    with pytest.raises(DataError, match="no text"):
        train_tokenizer([], tmp_path, TokenizerConfig(vocab_size=300), corpus_sha256="x")


def test_load_errors_are_clear(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        Tokenizer.load(tmp_path / "nope.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a tokenizers"):
        Tokenizer.load(bad)
    xz = tmp_path / "binary.json"
    xz.write_bytes(lzma.compress(b"abc"))
    with pytest.raises(DataError):
        Tokenizer.load(xz)
