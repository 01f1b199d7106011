"""The generation loop on tiny real models: KV cache vs recompute, seeds, context policy, stops, streaming."""

from __future__ import annotations

import threading

import pytest
import torch
from sample_helpers import PARROT_CONTINUATION, PARROT_PROMPT, memorize, tiny_model

from alm.errors import UsageError
from alm.sample import GenerationInfo, SamplingConfig, generate, generate_tokens, slide_keep

GREEDY = SamplingConfig(greedy=True, max_new_tokens=20)


@torch.inference_mode()
def reference_greedy(model, prompt: list[int], n: int) -> tuple[list[int], int]:
    """No cache: a full forward over the current window for every token, with the documented window policy
    (a prompt keeps its last max_seq_len tokens; a full window restarts from its last slide_keep tokens)."""
    window = model.config.max_seq_len
    ids = list(prompt[-window:])
    start, slides, out = 0, 0, []
    for _ in range(n):
        if len(ids) - start > window:
            start = len(ids) - slide_keep(window)
            slides += 1
        logits = model(torch.tensor([ids[start:]])).logits[0, -1]
        token = int(logits.argmax())
        ids.append(token)
        out.append(token)
    return out, slides


def run(model, prompt, cfg, **kw) -> tuple[list[int], GenerationInfo]:
    info = GenerationInfo()
    return list(generate_tokens(model, prompt, cfg, device="cpu", info=info, **kw)), info


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_greedy_with_cache_equals_full_recompute(position):
    model = tiny_model(position=position)
    prompt = [3, 14, 15, 9, 26, 5]
    tokens, info = run(model, prompt, GREEDY)
    expected, slides = reference_greedy(model, prompt, GREEDY.max_new_tokens)
    assert slides == 0 and info.slides == 0  # all within the context
    assert tokens == expected
    assert len(set(tokens)) > 3  # a real sequence, not one token repeated
    assert info.new_tokens == 20 and info.stop_reason == "length" and info.prompt_tokens == 6


def test_a_fixed_seed_reproduces_a_sample_and_another_seed_changes_it():
    model = tiny_model()
    cfg = SamplingConfig(temperature=1.0, top_k=20, max_new_tokens=24)
    first, info = run(model, [1, 2, 3], cfg.replace(seed=7))
    again, _ = run(model, [1, 2, 3], cfg.replace(seed=7))
    other, _ = run(model, [1, 2, 3], cfg.replace(seed=8))
    assert first == again
    assert first != other
    assert info.seed == 7
    random_seed, info = run(model, [1, 2, 3], cfg)  # no seed: the one drawn is reported and reproduces it
    assert run(model, [1, 2, 3], cfg.replace(seed=info.seed))[0] == random_seed


def test_a_long_prompt_keeps_its_last_max_seq_len_tokens():
    model = tiny_model(max_seq_len=16)
    prompt = [(7 * i) % 64 for i in range(40)]
    tokens, info = run(model, prompt, GREEDY.replace(max_new_tokens=5))
    assert info.prompt_trimmed == 24 and info.prompt_tokens == 16
    assert tokens == run(model, prompt[-16:], GREEDY.replace(max_new_tokens=5))[0]
    assert tokens == reference_greedy(model, prompt, 5)[0]


def test_generation_past_the_context_slides_the_window():
    model = tiny_model(max_seq_len=16)
    prompt = [5, 9, 2, 33, 12]
    tokens, info = run(model, prompt, GREEDY.replace(max_new_tokens=50))
    expected, slides = reference_greedy(model, prompt, 50)
    assert tokens == expected
    assert info.slides == slides > 5
    assert info.new_tokens == 50


def test_text_stream_reports_trimming_before_the_first_token(tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=16)
    stream = generate(
        model, tokenizer, "To be, or not to be, that is the question " * 3, GREEDY, device="cpu"
    )
    assert stream.info.prompt_trimmed > 0 and stream.info.new_tokens == 0
    assert stream.text()
    assert stream.info.new_tokens == GREEDY.max_new_tokens


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_between_tokens(kind):
    model = tiny_model()
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set
    info = GenerationInfo()
    out = []
    for token in generate_tokens(model, [1, 2], GREEDY, device="cpu", cancel=cancel, info=info):
        out.append(token)
        if len(out) == 3:
            event.set()
    assert len(out) == 3
    assert info.stop_reason == "cancelled"


def test_eos_ends_generation_without_being_yielded():
    model = tiny_model()
    full, _ = run(model, [4, 8], GREEDY)
    eos = full[6]
    tokens, info = run(model, [4, 8], GREEDY, eos_id=eos)
    assert tokens == full[: full.index(eos)]
    assert info.stop_reason == "eos"


def test_generation_restores_train_mode_and_does_not_leak_inference_mode():
    model = tiny_model().train()
    stream = generate_tokens(model, [1, 2, 3], GREEDY, device="cpu")
    next(stream)
    assert not torch.is_inference_mode_enabled()  # the caller's code between tokens runs normally
    assert not model.training
    stream.close()
    assert model.training


def test_an_empty_token_prompt_is_a_usage_error():
    with pytest.raises(UsageError, match="empty prompt"):
        generate_tokens(tiny_model(), [], GREEDY, device="cpu")


# --- text level: a tiny model that has memorised one continuation, decoded by the real tokenizer ----------

PROMPT, CONTINUATION = PARROT_PROMPT, PARROT_CONTINUATION


def test_emoji_and_cjk_stream_without_replacement_characters(parrot, tokenizer):
    model, n_new = parrot
    assert len(tokenizer.encode("🙂漢字")) >= 6  # byte tokens: characters really are split across tokens
    pieces = list(generate(model, tokenizer, PROMPT, GREEDY.replace(max_new_tokens=n_new), device="cpu"))
    assert "".join(pieces) == CONTINUATION
    assert not any("\ufffd" in p for p in pieces)
    assert len(pieces) > 5


def test_a_stop_string_split_across_tokens_is_cut_cleanly(parrot, tokenizer):
    model, n_new = parrot
    assert len(tokenizer.encode(" END")) > 1  # the stop string spans several tokens
    cfg = GREEDY.replace(max_new_tokens=n_new, stop=("END", "never"))
    stream = generate(model, tokenizer, PROMPT, cfg, device="cpu")
    pieces = list(stream)
    assert "".join(pieces) == " go 🙂漢字 now, THE "
    assert stream.info.stop_reason == "stop"
    assert stream.info.new_tokens < n_new  # generation stopped at the stop string, not at max tokens


def test_ignore_eos_runs_past_a_document_end_shown_as_a_blank_line(tokenizer):
    first, second = tokenizer.encode("ROMEO: hi"), tokenizer.encode("JULIET: yo")
    ids = [*first, tokenizer.eos_id, *second]
    model = memorize(tiny_model(tokenizer.vocab_size, max_seq_len=32), [ids])
    n_new = len(ids) - len(tokenizer.encode("ROMEO:"))
    cfg = GREEDY.replace(max_new_tokens=n_new)
    stream = generate(model, tokenizer, "ROMEO:", cfg, device="cpu")
    assert stream.text() == " hi"
    assert stream.info.stop_reason == "eos"
    stream = generate(model, tokenizer, "ROMEO:", cfg.replace(ignore_eos=True), device="cpu")
    assert stream.text() == " hi\n\nJULIET: yo"
    assert stream.info.stop_reason == "length"
