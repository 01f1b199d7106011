"""Tokenizers trained once per session on a 60 kB slice of the built-in corpus (vocab 320)."""

from __future__ import annotations

import pytest

from alm.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from testkit.corpus import shipped_text


def shakespeare_documents(max_chars: int = 60_000) -> list[str]:
    return [d for d in shipped_text(max_chars).split("\n\n") if d.strip()]


@pytest.fixture(scope="session")
def documents() -> list[str]:
    return shakespeare_documents()


@pytest.fixture(scope="session", params=["bpe", "unigram"])
def trained(request, tmp_path_factory, documents) -> Tokenizer:
    out = tmp_path_factory.mktemp(f"tok-{request.param}")
    cfg = TokenizerConfig(type=request.param, vocab_size=320)
    return train_tokenizer(documents, out, cfg, corpus_sha256="test-corpus")
