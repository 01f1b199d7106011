"""Fixtures for server tests: a chat run (fine-tuned to answer testkit.chat.EXCHANGES) and a base run whose
greedy generations never end by themselves, both loaded as the server loads them, and a live server for each."""

from __future__ import annotations

import pytest
from serve_helpers import load_served, never_ends, save_chat_run, serving

from alm.serve.model import ServedModel
from testkit.chat import exchanges_as_conversations, fine_tune
from testkit.models import tiny_model
from testkit.threads import one_thread, single_thread

__all__ = ["one_thread"]  # applied to every module here


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory, chat_tokenizer):
    """runs/chatty (fine-tuned for chat) and runs/base (a random base model that never stops on its own)."""
    root = tmp_path_factory.mktemp("serve-runs") / "runs"
    with single_thread():
        chatty = fine_tune(
            tiny_model(chat_tokenizer.vocab_size), chat_tokenizer, exchanges_as_conversations()
        )
    save_chat_run(root / "chatty", chatty, chat_tokenizer, finetune=True)
    base = tiny_model(chat_tokenizer.vocab_size, seed=1)
    never_ends(base, chat_tokenizer)
    save_chat_run(root / "base", base, chat_tokenizer, finetune=False)
    return root


@pytest.fixture(scope="session")
def chat_served(runs_root) -> ServedModel:
    return load_served(runs_root / "chatty" / "checkpoints" / "last.pt", "chatty")


@pytest.fixture(scope="session")
def base_served(runs_root) -> ServedModel:
    return load_served(runs_root / "base" / "checkpoints" / "last.pt", "base")


@pytest.fixture(scope="module")
def chat_server(chat_served):
    with serving(chat_served) as server:
        yield server


@pytest.fixture(scope="module")
def base_server(base_served):
    with serving(base_served, max_tokens_limit=100_000) as server:
        yield server
