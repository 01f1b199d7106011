"""Fixtures for fine-tuning tests: real tokenizers with and without chat tokens, parent runs, chat data files."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_helpers import conversations, make_parent, preferences, write_jsonl

from alm.tokenizer import Tokenizer
from testkit.threads import one_thread

__all__ = ["one_thread"]  # applied to every module here


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding runs/ and data/ (commands name runs relative to it)."""
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "sft.jsonl", conversations())
    write_jsonl(tmp_path / "data" / "prefs.jsonl", preferences())
    return tmp_path


@pytest.fixture
def parent(work: Path, chat_tokenizer: Tokenizer) -> Path:
    return make_parent(work / "runs" / "base", chat_tokenizer)


@pytest.fixture
def old_parent(work: Path, base_tokenizer: Tokenizer) -> Path:
    """A parent whose tokenizer lacks the chat tokens."""
    return make_parent(work / "runs" / "old", base_tokenizer)
