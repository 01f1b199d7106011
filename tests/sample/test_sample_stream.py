"""Text-level streaming pieces: the UTF-8-safe incremental decoder and the stop-string matcher."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from alm.sample import StopMatcher, StreamDecoder

TRAIN_TEXT = "the quick brown fox jumps over the lazy dog. " * 50
HARD_TEXT = "smile 🙂 and 漢字, then ¿qué? 👩‍👩‍👧 fin"


@pytest.fixture(scope="module")
def byte_level_bpe() -> Tokenizer:
    """A real byte-level BPE (GPT-2 style): characters it has not merged are split into single-byte tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TRAIN_TEXT], trainer)
    return tok


def stream(decode, ids, context=()):
    decoder = StreamDecoder(decode, context=context)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    return [p for p in pieces if p]


def test_multibyte_characters_are_never_split(byte_level_bpe):
    ids = byte_level_bpe.encode(HARD_TEXT).ids
    assert len(ids) > len(HARD_TEXT.encode()) // 2  # the emoji and CJK really are spread over byte tokens
    pieces = stream(byte_level_bpe.decode, ids)
    assert "".join(pieces) == HARD_TEXT
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) > 5  # it streams, rather than holding everything to the end


def test_each_piece_arrives_as_soon_as_it_is_complete(byte_level_bpe):
    ids = byte_level_bpe.encode("ab🙂").ids
    decoder = StreamDecoder(byte_level_bpe.decode)
    out = [decoder.push(i) for i in ids]
    assert out[-1].endswith("🙂")  # emitted on its last byte, not at flush
    assert all("\ufffd" not in p for p in out)
    assert out[-4:-1] == ["", "", ""]  # the first three of the emoji's four bytes are held back
    assert decoder.flush() == ""


def test_context_tokens_are_not_re_emitted(byte_level_bpe):
    prompt = byte_level_bpe.encode("the lazy").ids
    ids = byte_level_bpe.encode(" dog 漢").ids
    assert "".join(stream(byte_level_bpe.decode, ids, context=prompt)) == " dog 漢"


def test_invalid_bytes_are_flushed_rather_than_stalling(byte_level_bpe):
    lone = byte_level_bpe.encode("🙂").ids[:1] * 12  # a lead byte repeated: never becomes a character
    pieces = stream(byte_level_bpe.decode, lone)
    assert "".join(pieces).count("\ufffd") == 12


def feed_all(stops, chunks):
    matcher = StopMatcher(stops)
    out = [matcher.feed(c) for c in chunks]
    if not matcher.stopped:
        out.append(matcher.flush())
    return "".join(out), matcher.stopped, out


def test_stop_string_inside_a_piece():
    text, stopped, _ = feed_all(["END"], ["abc", "deENDfg", "more"])
    assert (text, stopped) == ("abcde", True)


def test_stop_string_split_across_pieces_never_leaks_its_prefix():
    text, stopped, out = feed_all(["<|end|>"], ["hello <", "|e", "nd", "|> tail"])
    assert (text, stopped) == ("hello ", True)
    assert out == ["hello ", "", "", ""]


def test_a_false_start_is_released():
    text, stopped, out = feed_all(["<|end|>"], ["a <", "|e", "x", " b"])
    assert (text, stopped) == ("a <|ex b", False)
    assert out[0] == "a "  # '<' held: it could begin the stop string


def test_earliest_of_several_stops_wins_and_held_tail_flushes_at_end():
    assert feed_all(["\n\n", "B"], ["x\n", "\nyB"])[:2] == ("x", True)
    assert feed_all(["\n\n"], ["x\n"])[:2] == ("x\n", False)
