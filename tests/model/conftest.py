"""Fixtures for the model tests (shared configs live in model_testing.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from model_testing import tiny_model

from alm.model import Transformer


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """These models are tiny: a second intra-op thread buys nothing, and on a busy machine every op waits for
    it (a forward goes from ~1 ms to ~250 ms). Restored afterwards so other areas' tests are unaffected."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def make_model() -> Callable[..., Transformer]:
    return tiny_model
