"""Fixtures for sampling/eval tests: the shipped corpus, and a tiny real tokenizer and packed data built from it."""

from __future__ import annotations

import pytest
from sample_helpers import PARROT_CONTINUATION, PARROT_PROMPT, memorize, tiny_model

from alm.data.config import DataConfig, SourceConfig, TokenizerConfig
from alm.data.pipeline import DataPaths, ensure_dataset
from alm.tokenizer import Tokenizer
from testkit.corpus import shipped_text
from testkit.threads import one_thread

__all__ = ["one_thread"]  # applied to every module here


# A few KB of the shipped corpus is plenty for a 300-token BPE and keeps the data fixture well under a second.
CORPUS_CHARS = 20_000


@pytest.fixture(scope="session")
def corpus_text() -> str:
    return shipped_text(CORPUS_CHARS)


@pytest.fixture(scope="session")
def data_config(corpus_text, tmp_path_factory) -> DataConfig:
    """A local file of the corpus, and a 300-token BPE."""
    root = tmp_path_factory.mktemp("data")
    source = root / "corpus.txt"
    source.write_text(corpus_text, encoding="utf-8")
    return DataConfig(
        sources=[SourceConfig(type="local", paths=[str(source)])],
        root=root / "data",
        tokenizer=TokenizerConfig(vocab_size=300),
    )


@pytest.fixture(scope="session")
def dataset(data_config) -> DataPaths:
    """Clean text, the BPE and packed shards, built by the real data pipeline."""
    return ensure_dataset(data_config)


@pytest.fixture(scope="session")
def tokenizer(dataset) -> Tokenizer:
    return Tokenizer.load(dataset.tokenizer_path)


@pytest.fixture(scope="session")
def parrot(tokenizer):
    """(model, new tokens): a real model trained until greedy decoding of PARROT_PROMPT reproduces
    PARROT_CONTINUATION, which has an emoji and CJK split into byte tokens and a multi-token "END"."""
    ids = tokenizer.encode(PARROT_PROMPT + PARROT_CONTINUATION)
    model = memorize(tiny_model(tokenizer.vocab_size, max_seq_len=64), [ids])
    return model, len(ids) - len(tokenizer.encode(PARROT_PROMPT))
