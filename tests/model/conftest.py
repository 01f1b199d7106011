"""Fixtures for the model tests (shared configs live in model_testing.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from model_testing import tiny_model

from alm.model import Transformer
from testkit.threads import single_thread


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: a second intra-op thread buys nothing, and on a busy machine every op waits for
    it (a forward goes from ~1 ms to ~250 ms). Restored afterwards so other areas' tests are unaffected."""
    with single_thread():
        yield


@pytest.fixture
def make_model() -> Callable[..., Transformer]:
    return tiny_model
