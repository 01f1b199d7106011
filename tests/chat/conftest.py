"""Fixtures for chat tests: a model fine-tuned to chat (the tokenizers come from the root conftest)."""

from __future__ import annotations

import pytest

from testkit.chat import exchanges_as_conversations, fine_tune
from testkit.models import tiny_model
from testkit.threads import one_thread, single_thread

__all__ = ["one_thread"]  # applied to every module here


@pytest.fixture(scope="session")
def chatty(chat_tokenizer):
    """A tiny real model fine-tuned (assistant tokens only) until it answers testkit.chat.EXCHANGES greedily."""
    with single_thread():
        return fine_tune(tiny_model(chat_tokenizer.vocab_size), chat_tokenizer, exchanges_as_conversations())
