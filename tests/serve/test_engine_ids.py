"""What the server added to the engine: a token-id prompt (a rendered chat) decoded to text with stop strings
(`decode=True`), and several end ids (<|end|> and <|eos|> both end a reply)."""

from __future__ import annotations

import pytest

from alm.errors import UsageError
from alm.sample import Engine, SamplingConfig
from testkit.models import tiny_model

GREEDY = SamplingConfig(greedy=True, max_new_tokens=20)
PROMPT = [5, 40, 41, 42]


def run(engine: Engine) -> list:
    events = []
    while engine.busy:
        events += engine.step()
    return events


def test_an_id_prompt_can_stream_text_and_stop_at_any_of_several_ids(chat_tokenizer):
    model = tiny_model(chat_tokenizer.vocab_size, seed=3)
    engine = Engine(model, device="cpu", slots=2, tokenizer=chat_tokenizer)
    free = engine.submit(PROMPT, GREEDY, decode=True)
    events = run(engine)
    tokens = free.tokens
    assert len(tokens) == 20 and free.info.stop_reason == "length"
    text = "".join(e.text for e in events)
    assert text == chat_tokenizer.decode(PROMPT + tokens)[len(chat_tokenizer.decode(PROMPT)) :]

    ends = {tokens[7], tokens[12]}
    first = min(i for i, t in enumerate(tokens) if t in ends)
    stopped = engine.submit(PROMPT, GREEDY, eos_id=ends, decode=True)
    run(engine)
    assert stopped.tokens == tokens[:first] and stopped.info.stop_reason == "eos"

    piece = chat_tokenizer.decode(tokens[:3])[-2:]
    cut = engine.submit(PROMPT, GREEDY.replace(stop=(piece,)), decode=True)
    pieces = "".join(e.text for e in run(engine))
    assert cut.info.stop_reason == "stop" and piece not in pieces and len(cut.tokens) <= 3


def test_ids_without_decode_carry_no_text_and_decode_needs_a_tokenizer(chat_tokenizer):
    model = tiny_model(chat_tokenizer.vocab_size)
    engine = Engine(model, device="cpu", tokenizer=chat_tokenizer)
    engine.submit(PROMPT, GREEDY.replace(max_new_tokens=3))
    assert all(e.text == "" for e in run(engine))
    with pytest.raises(UsageError, match="needs an engine made with a tokenizer"):
        Engine(model, device="cpu").submit(PROMPT, GREEDY, decode=True)
