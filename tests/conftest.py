"""Fixtures shared by every test area (their building blocks live in the `testkit` package next to this file)."""

from __future__ import annotations

import pytest

from alm.tokenizer import Tokenizer
from testkit.tiny_data import TinyData, build_tiny_data


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    """The tiny real dataset and configs of `testkit.tiny_data`, built once per session."""
    return build_tiny_data(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """A small real BPE with the chat tokens reserved at ids 3-6, as in tokenizers alm trains now."""
    from testkit.chat import train_tokenizer_file

    return train_tokenizer_file(tmp_path_factory.mktemp("tok-chat"), chat=True)


@pytest.fixture(scope="session")
def base_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """Document specials only, as in tokenizers trained before the chat tokens were reserved."""
    from testkit.chat import train_tokenizer_file

    return train_tokenizer_file(tmp_path_factory.mktemp("tok-base"), chat=False)


@pytest.fixture(scope="session", autouse=True)
def _private_alm_cache(tmp_path_factory: pytest.TempPathFactory):
    """Compiled decode steps go to a directory of this session's, never the user's ~/.cache (subprocesses
    inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALM_CACHE_DIR", str(tmp_path_factory.mktemp("alm-cache")))
        yield
