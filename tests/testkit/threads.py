"""One intra-op thread for tiny models: they gain nothing from threads, and on a shared 2-core machine a second
spinning OpenMP thread makes each small matmul wait on the other test processes (measured: 5 ms -> 700 ms per
training step)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Every test of a module on one thread: an area's conftest imports this fixture to apply it there."""
    with single_thread():
        yield
