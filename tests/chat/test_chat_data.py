"""Chat JSONL formats: what loads, and clear errors with line numbers for what does not."""

from __future__ import annotations

import json

import pytest

from alm.chat.batches import tokenize_conversations
from alm.chat.data import Conversation, PreferencePair, load_conversations, load_preferences
from alm.errors import DataError, UsageError
from testkit.chat import assistant, system, user


def write(tmp_path, *lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_conversational_and_prompt_completion_lines_load(tmp_path):
    path = write(
        tmp_path,
        {"messages": [system("Be kind."), user("Hi"), assistant("Hello!")], "id": 7},
        "",
        {"prompt": "2 + 2?", "completion": "4"},
        {"prompt": [user("Hi"), assistant("Hello"), user("2 + 2?")], "completion": [assistant("4")]},
    )
    first, second, third = load_conversations(path)
    assert first == Conversation((system("Be kind."), user("Hi"), assistant("Hello!")), 0, 1)
    assert second == Conversation((user("2 + 2?"), assistant("4")), 1, 3)
    assert third.train_from == 3 and third.line == 4 and len(third.messages) == 4


def test_preference_lines_plain_and_conversational(tmp_path):
    path = write(
        tmp_path,
        {"prompt": "2 + 2?", "chosen": "4", "rejected": "5"},
        {
            "prompt": [system("Math."), user("2 + 2?")],
            "chosen": [assistant("4")],
            "rejected": [assistant("22")],
        },
    )
    plain, conversational = load_preferences(path)
    assert plain == PreferencePair((user("2 + 2?"),), (assistant("4"),), (assistant("5"),), 1)
    chosen, rejected = conversational.conversations()
    assert chosen.messages[-1] == assistant("4") and rejected.messages[-1] == assistant("22")
    assert chosen.train_from == rejected.train_from == 2


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ('{"messages": [', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"messages": []}, "empty list of messages"),
        ({"messages": [{"role": "tool", "content": "x"}, assistant("y")]}, "unknown role 'tool'"),
        ({"messages": [user("Hi"), system("late"), assistant("x")]}, "system message may only come first"),
        ({"messages": [user("Hi")]}, "no assistant message"),
        ({"messages": [system("only")]}, "only a system prompt"),
        ({"messages": "Hi"}, "must be a list of messages"),
        ({"messages": [user("Hi"), {"role": "assistant"}]}, 'with "role" and "content"'),
        ({"messages": [user("Hi"), {"role": "assistant", "content": 5}]}, "content must be a string"),
        ({"prompt": "Hi"}, 'no "messages" nor "prompt" + "completion"'),
        ({"prompt": [assistant("Hi")], "completion": [user("x")]}, "no assistant message"),
    ],
)
def test_bad_conversation_lines_name_file_and_line(tmp_path, line, needle):
    path = write(tmp_path, {"messages": [user("fine"), assistant("ok")]}, line)
    with pytest.raises(DataError) as info:
        load_conversations(path)
    assert f"{path}:2:" in info.value.message
    assert needle in info.value.message


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ({"prompt": "2 + 2?", "chosen": "4", "rejected": "4"}, "chosen and rejected are the same"),
        ({"chosen": [user("q"), assistant("a")], "rejected": [user("q"), assistant("b")]}, "missing prompt"),
        ({"prompt": "q", "chosen": [user("a")], "rejected": "b"}, "'chosen' has no assistant message"),
        ({"prompt": "q", "chosen": "a", "rejected": [{"role": "robot", "content": "b"}]}, "unknown role"),
    ],
)
def test_bad_preference_lines_name_file_and_line(tmp_path, line, needle):
    path = write(tmp_path, {"prompt": "q", "chosen": "a", "rejected": "b"}, line)
    with pytest.raises(DataError) as info:
        load_preferences(path)
    assert f"{path}:2:" in info.value.message and needle in info.value.message


def test_preference_data_given_for_fine_tuning_says_so(tmp_path):
    path = write(tmp_path, {"prompt_text": "q", "chosen": "a", "rejected": "b"})
    with pytest.raises(DataError) as info:
        load_conversations(path)
    assert "preference data" in (info.value.hint or "")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UsageError, match="data file not found"):
        load_conversations(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="holds no conversations"):
        load_conversations(write(tmp_path, "", "  "))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"messages": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_conversations(bad)


def test_a_conversation_longer_than_the_context_is_an_error_naming_its_line(tmp_path, chat_tokenizer):
    path = write(
        tmp_path,
        {"messages": [user("Hi"), assistant("Hello")]},
        {"messages": [user("Tell me everything. " * 30), assistant("No.")]},
    )
    conversations = load_conversations(path)
    assert len(tokenize_conversations(conversations[:1], chat_tokenizer, 32, source=str(path))) == 1
    with pytest.raises(DataError) as info:
        tokenize_conversations(conversations, chat_tokenizer, 32, source=str(path))
    assert f"{path}:2: this conversation is" in info.value.message
    assert "context of 32" in info.value.message
