"""Fixtures for sampling/eval tests: the shipped corpus and a tiny real tokenizer trained on it."""

from __future__ import annotations

import lzma
from importlib.resources import files

import pytest
import torch

from alm.data.config import TokenizerConfig
from alm.tokenizer import Tokenizer, train_tokenizer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine a second spinning OpenMP thread
    makes each small matmul wait on the other test processes (measured: 5 ms -> 700 ms per step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A few KB of the shipped corpus is plenty for a 300-token BPE and keeps the fixture well under a second.
CORPUS_CHARS = 20_000


@pytest.fixture(scope="session")
def corpus_text() -> str:
    path = files("alm") / "resources" / "corpora" / "tinyshakespeare.txt.xz"
    with lzma.open(str(path), "rt", encoding="utf-8") as fh:
        return fh.read(CORPUS_CHARS)


@pytest.fixture(scope="session")
def tokenizer(corpus_text, tmp_path_factory) -> Tokenizer:
    out = tmp_path_factory.mktemp("tokenizer")
    docs = corpus_text.split("\n\n")
    return train_tokenizer(docs, out, TokenizerConfig(vocab_size=300, min_frequency=2), corpus_sha256="tests")
