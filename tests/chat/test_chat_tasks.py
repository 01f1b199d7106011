"""Task evals: exact match (greedy) and multiple choice (log-likelihood), from JSONL files or built in."""

from __future__ import annotations

import json

import pytest

from alm.chat.tasks import BUILTIN_TASKS, TaskResult, evaluate_task, load_task, resolve_task
from alm.errors import DataError, UsageError
from testkit.chat import EXCHANGES


def write(tmp_path, records, name="task.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_exact_match_scores_the_greedy_reply(chatty, chat_tokenizer, tmp_path):
    records = [{"prompt": q, "answer": a} for q, a in EXCHANGES]
    records.append({"prompt": "Hi", "answer": "Goodbye."})  # the model says "Hello there!": wrong
    records.append({"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "answer": " 5 "})  # stripped
    task = load_task(write(tmp_path, records, "greetings.jsonl"))
    assert (task.name, task.kind, len(task.examples)) == ("greetings", "exact", 5)
    seen = []
    result = evaluate_task(
        chatty, chat_tokenizer, task, device="cpu", progress=lambda d, t: seen.append((d, t))
    )
    assert result == TaskResult("greetings", "exact", 5, 4)
    assert result.to_dict() == {
        "task": "greetings",
        "kind": "exact",
        "examples": 5,
        "correct": 4,
        "accuracy": 0.8,
    }
    assert seen[-1] == (5, 5)
    assert evaluate_task(chatty, chat_tokenizer, task, device="cpu", limit=2).examples == 2


def test_multiple_choice_picks_the_likeliest_reply(chatty, chat_tokenizer, tmp_path):
    records = [
        {"prompt": "Hi", "choices": ["Goodbye.", "Hello there!", "5"], "answer": 1},
        {"prompt": "What is 2 + 3?", "choices": ["5", "Blue, like the sea."], "answer": 0},
        {
            "prompt": "Name a colour.",
            "choices": ["Hello there!", "Blue, like the sea."],
            "answer": 0,
        },  # wrong
    ]
    task = load_task(write(tmp_path, records))
    assert task.kind == "choice"
    result = evaluate_task(chatty, chat_tokenizer, task, device="cpu")
    assert (result.examples, result.correct) == (3, 2)
    assert chatty.training is False


@pytest.mark.parametrize(
    ("records", "needle"),
    [
        ([{"prompt": "q"}], "needs prompt and answer"),
        ([{"prompt": "q", "answer": 3}], "'answer' must be a string"),
        ([{"prompt": "q", "choices": ["a"], "answer": 0}], "at least two strings"),
        ([{"prompt": "q", "choices": ["a", "b"], "answer": 2}], r"index of the right choice \(0\.\.1\)"),
        ([{"prompt": "q", "choices": ["a", "b"], "answer": True}], "index of the right choice"),
        ([{"prompt": "q", "answer": "a"}, {"prompt": "q", "choices": ["a", "b"], "answer": 0}], "mixes"),
    ],
)
def test_bad_task_files(tmp_path, records, needle):
    with pytest.raises(DataError, match=needle):
        load_task(write(tmp_path, records))


def test_builtin_tasks_resolve_by_name_and_files_by_path(tmp_path):
    arithmetic = resolve_task("arithmetic")
    assert arithmetic.kind == "exact" and len(arithmetic.examples) == 200
    choice = resolve_task("arithmetic-choice")
    assert choice.kind == "choice" and all(len(e.choices) == 4 for e in choice.examples)
    assert [e.prompt for e in choice.examples] == [e.prompt for e in arithmetic.examples]
    assert set(BUILTIN_TASKS) == {"arithmetic", "arithmetic-choice"}
    path = write(tmp_path, [{"prompt": "q", "answer": "a"}], "mine.jsonl")
    assert resolve_task(str(path)).name == "mine"
    with pytest.raises(UsageError) as info:
        resolve_task("no-such-task")
    assert "arithmetic" in (info.value.hint or "")


def test_a_task_needs_a_chat_tokenizer(base_tokenizer, chatty):
    with pytest.raises(UsageError, match="no chat tokens"):
        evaluate_task(chatty, base_tokenizer, resolve_task("arithmetic"), device="cpu", limit=1)
