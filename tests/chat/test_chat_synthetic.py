"""Example data: the synthetic arithmetic task, chatterbot-corpus conversations, and the files they make."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from alm.chat.chatterbot import chatterbot_conversations
from alm.chat.data import load_conversations, load_preferences
from alm.chat.examples import write_chat_examples
from alm.chat.synthetic import arithmetic_splits
from alm.chat.tasks import load_task
from alm.errors import AlmError, UsageError

NUMBERS = re.compile(r"(\d+) (?:\+|-|plus|minus) (\d+)")


def _solve(question: str) -> int:
    a, b = map(int, NUMBERS.search(question).groups())
    return a + b if ("+" in question or "plus" in question) else a - b


def _problem_key(question: str) -> tuple[int, bool, int]:
    a, b = map(int, NUMBERS.search(question).groups())
    return a, "+" in question or "plus" in question, b


def test_arithmetic_splits_are_correct_disjoint_and_deterministic():
    train, test = arithmetic_splits(500, 100, seed=1)
    assert len(train) == 500 and len(test) == 100
    assert all(p.answer == _solve(p.question) >= 0 for p in train + test)
    assert not {_problem_key(p.question) for p in train} & {_problem_key(p.question) for p in test}
    assert arithmetic_splits(500, 100, seed=1) == (train, test)
    assert arithmetic_splits(500, 100, seed=2)[1] != test
    # The test split does not depend on how large the train split is.
    assert arithmetic_splits(10, 100, seed=1)[1] == test
    with pytest.raises(UsageError, match="cannot draw"):
        arithmetic_splits(20_000, 1)


def test_preference_pairs_and_choices_are_right_and_wrong_as_they_claim():
    rng = np.random.default_rng(0)
    for problem in arithmetic_splits(0, 200)[1]:
        pair = problem.preference(rng)
        assert pair["chosen"] == str(problem.answer) != pair["rejected"] and int(pair["rejected"]) >= 0
        choice = problem.choice(rng)
        assert choice["choices"][choice["answer"]] == str(problem.answer)
        assert len(set(choice["choices"])) == 4


def test_chatterbot_conversations_alternate_and_end_with_the_assistant():
    records = chatterbot_conversations()
    assert len(records) > 800
    for record in records:
        roles = [m["role"] for m in record["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
        assert sum(len(m["content"]) for m in record["messages"]) <= 400
    assert len(chatterbot_conversations(max_chars=100)) < len(records)
    texts = [tuple(m["content"] for m in r["messages"]) for r in records]
    assert len(set(texts)) == len(texts)
    with pytest.raises(UsageError, match="even"):
        chatterbot_conversations(max_messages=3)
    with pytest.raises(UsageError, match="no language"):
        chatterbot_conversations("klingon")


def test_a_missing_chatterbot_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "chatterbot_corpus.corpus", None)  # what an absent package looks like
    with pytest.raises(AlmError) as info:
        chatterbot_conversations()
    assert "alm[chat]" in (info.value.hint or "")


def test_the_example_files_load_with_the_loaders(tmp_path):
    written = {f.path.name: f.lines for f in write_chat_examples(tmp_path, n_train=40, n_test=10)}
    assert written["arithmetic-train.jsonl"] == written["prefs-train.jsonl"] == 40
    assert written["sft.jsonl"] == written["chatterbot.jsonl"] + 40
    assert len(load_conversations(tmp_path / "sft.jsonl")) == written["sft.jsonl"]
    assert len(load_preferences(tmp_path / "prefs-test.jsonl")) == 10
    assert load_task(tmp_path / "arithmetic-test.jsonl").kind == "exact"
    assert load_task(tmp_path / "arithmetic-choice-test.jsonl").kind == "choice"
    again = tmp_path / "again"
    write_chat_examples(again, n_train=40, n_test=10)
    for name in written:
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes()
    plain = {
        f.path.name for f in write_chat_examples(tmp_path / "plain", n_train=5, n_test=5, chatterbot=False)
    }
    assert "chatterbot.jsonl" not in plain and "sft.jsonl" in plain
