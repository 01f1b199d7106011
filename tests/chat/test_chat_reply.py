"""Generating replies: stop at <|end|> or <|eos|>, history that fits the context, and a session's history."""

from __future__ import annotations

import pytest
import torch

from alm.chat import render_prompt
from alm.chat.data import Conversation, load_conversations
from alm.chat.reply import ReplyStream, fit_history, reply_room
from alm.chat.session import ChatSession
from alm.errors import UsageError
from alm.sample import SamplingConfig
from testkit.chat import EXCHANGES, assistant, fine_tune, system, user
from testkit.models import tiny_model

GREEDY = SamplingConfig(greedy=True, max_new_tokens=20)


@pytest.mark.parametrize(("question", "answer"), EXCHANGES)
def test_a_fine_tuned_model_answers_and_stops_at_end(chatty, chat_tokenizer, question, answer):
    stream = ReplyStream(chatty, chat_tokenizer, [user(question)], GREEDY, device="cpu")
    assert stream.text == "" and "".join(stream) == answer
    assert stream.text == answer
    assert stream.info.stop_reason == "eos" and stream.info.new_tokens == len(chat_tokenizer.encode(answer))


def test_a_reply_also_ends_at_eos(chat_tokenizer):
    """<|eos|> (a document end) ends a turn like <|end|>; neither is part of the reply."""
    model = tiny_model(chat_tokenizer.vocab_size)
    prompt = render_prompt([user("Hi")], chat_tokenizer)
    answer = chat_tokenizer.encode("Yo")
    sequence = torch.tensor([[*prompt, *answer, chat_tokenizer.eos_id]])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        loss = model(sequence[:, :-1], targets=sequence[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    stream = ReplyStream(model, chat_tokenizer, [user("Hi")], GREEDY, device="cpu")
    assert stream.text == "" and "".join(stream) == "Yo"
    assert stream.info.stop_reason == "eos" and stream.info.new_tokens == len(answer)


def test_stop_strings_cut_the_reply(chatty, chat_tokenizer):
    cfg = GREEDY.replace(stop=("there",))
    stream = ReplyStream(chatty, chat_tokenizer, [user("Hi")], cfg, device="cpu")
    assert "".join(stream) == "Hello " and stream.info.stop_reason == "stop"


def test_on_finish_sees_the_reply_once_even_when_closed_early(chatty, chat_tokenizer):
    seen = []
    stream = ReplyStream(chatty, chat_tokenizer, [user("Hi")], GREEDY, device="cpu", on_finish=seen.append)
    stream.close()
    stream.close()
    assert seen == [""]
    seen.clear()
    stream = ReplyStream(chatty, chat_tokenizer, [user("Hi")], GREEDY, device="cpu", on_finish=seen.append)
    first = next(stream)
    stream.close()
    assert seen == [first]


def _prompt_len(messages, tokenizer):
    return len(render_prompt(messages, tokenizer))


def test_fit_history_keeps_the_newest_turns_and_the_system_prompt(chat_tokenizer):
    tok = chat_tokenizer
    history = [system("Be brief.")]
    for i in range(6):
        history += [user(f"Question number {i}?"), assistant(f"Answer number {i}.")]
    history.append(user("Last one?"))
    assert fit_history(history, tok, 10_000) == (history, 0)
    budget = _prompt_len([history[0], *history[-5:]], tok)
    kept, left_out = fit_history(history, tok, budget)
    assert kept == [history[0], *history[-5:]] and left_out == len(history) - 6
    # One token less: the next user turn is the start, never an assistant turn.
    kept, _ = fit_history(history, tok, budget - 1)
    assert kept == [history[0], *history[-3:]]
    assert kept[1]["role"] == "user"


def test_fit_history_drops_the_system_prompt_last_and_keeps_the_last_message(chat_tokenizer):
    tok = chat_tokenizer
    history = [system("A very long system prompt " * 10), user("Hi"), assistant("Hello"), user("Bye")]
    kept, left_out = fit_history(history, tok, _prompt_len([user("Bye")], tok))
    assert kept == [user("Bye")] and left_out == 3
    kept, left_out = fit_history(history, tok, 3)
    assert kept == [user("Bye")] and left_out == 3
    assert fit_history([], tok, 3) == ([], 0)


def test_reply_room_is_at_most_half_the_context():
    assert reply_room(SamplingConfig(max_new_tokens=10), 64) == 10
    assert reply_room(SamplingConfig(max_new_tokens=256), 64) == 32


def test_a_session_keeps_history_resets_and_saves(chatty, chat_tokenizer, tmp_path):
    session = ChatSession(chatty, chat_tokenizer, GREEDY, device="cpu", system="Be brief.")
    assert "".join(session.reply("Hi")) == "Hello there!"
    assert "".join(session.reply("What is 2 + 3?")) == "5"
    assert session.messages == [
        system("Be brief."),
        user("Hi"),
        assistant("Hello there!"),
        user("What is 2 + 3?"),
        assistant("5"),
    ]
    path = session.save(tmp_path / "chat.jsonl")
    assert load_conversations(path) == [Conversation(tuple(session.messages), 0, 1)]  # fine-tuning data again
    session.set_system("")
    session.reset()
    assert session.messages == []
    session.set_system("New rules.")
    assert session.messages == [system("New rules.")]


def test_a_long_session_leaves_out_old_turns(chatty, chat_tokenizer):
    session = ChatSession(chatty, chat_tokenizer, GREEDY, device="cpu")
    for _ in range(8):
        "".join(session.reply("Name a colour."))
    assert session.left_out > 0
    assert len(render_prompt(session.messages, chat_tokenizer)) > chatty.config.max_seq_len - 20


def test_a_session_needs_chat_tokens(chat_tokenizer, base_tokenizer):
    with pytest.raises(UsageError, match="no chat tokens"):
        ChatSession(tiny_model(base_tokenizer.vocab_size), base_tokenizer, GREEDY, device="cpu")


def test_fine_tuning_only_learns_the_assistant(chat_tokenizer):
    """The user's words are never targets: a model fine-tuned on one exchange does not learn to say them."""
    model = fine_tune(
        tiny_model(chat_tokenizer.vocab_size, seed=1),
        chat_tokenizer,
        [Conversation((user("Hi"), assistant("Hello there!")), 0, 1)],
        steps=80,
    )
    prompt = render_prompt([user("Hi")], chat_tokenizer)
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0]
    # After <|eos|> the model was never taught what the user says, only after <|assistant|> what to answer.
    first_answer_token = chat_tokenizer.encode("Hello there!")[0]
    assert logits[-1].argmax().item() == first_answer_token
    assert logits[0].softmax(-1)[prompt[1]].item() < 0.5
