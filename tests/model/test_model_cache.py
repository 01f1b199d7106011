"""KV-cache decoding reproduces the full forward pass: prefill, token by token, and in chunks."""

from __future__ import annotations

import pytest
import torch
from model_testing import VARIANTS

from alm.errors import UsageError

CACHE_VARIANTS = [
    "rope",
    "alibi",
    "alibi-6-heads-gqa",
    "learned",
    "nope",
    "gqa",
    "mqa",
    "dual",
    "dual-capacity",
]


def _decode_in_chunks(model, idx: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    cache = model.new_cache(idx.shape[0])
    pieces, start = [], 0
    for size in chunks:
        pieces.append(model(idx[:, start : start + size], cache=cache).logits)
        start += size
        assert cache.length == start
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("variant", CACHE_VARIANTS)
@torch.no_grad()
def test_cached_decoding_equals_the_full_forward(make_model, variant: str) -> None:
    model = make_model(**VARIANTS[variant])
    idx = torch.randint(0, model.config.vocab_size, (4, 20), generator=torch.Generator().manual_seed(3))
    full = model(idx).logits
    one_at_a_time = _decode_in_chunks(model, idx, [6] + [1] * 14)  # prefill, then a token per step
    torch.testing.assert_close(one_at_a_time, full, atol=1e-5, rtol=0)
    chunked = _decode_in_chunks(model, idx, [5, 4, 1, 7, 3])  # chunked prefill needs a bottom-right mask
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_router_stats_and_choices_agree_between_cache_and_full_forward(make_model) -> None:
    model = make_model(**VARIANTS["dual-capacity"])
    idx = torch.randint(0, model.config.vocab_size, (4, 12), generator=torch.Generator().manual_seed(0))
    full = model(idx)
    assert full.router_stats["frac_large"].shape == (model.config.n_layers,)
    assert full.router_stats["overflow"].shape == (model.config.n_layers,)
    cache = model.new_cache(4)
    fracs = [model(idx[:, t : t + 1], cache=cache).router_stats["frac_large"] for t in range(12)]
    torch.testing.assert_close(torch.stack(fracs).mean(0), full.router_stats["frac_large"])


@torch.no_grad()
def test_cache_is_preallocated_and_reusable(make_model) -> None:
    model = make_model()
    cache = model.new_cache(2, max_len=16)
    storage = [t.data_ptr() for t in cache.keys]
    idx = torch.randint(0, model.config.vocab_size, (2, 10))
    first = model(idx, cache=cache).logits
    model(idx[:, :1], cache=cache)
    assert [t.data_ptr() for t in cache.keys] == storage  # written in place, never regrown
    cache.reset()
    torch.testing.assert_close(model(idx, cache=cache).logits, first)


def test_context_and_cache_limits_are_clear_usage_errors(make_model) -> None:
    model = make_model()  # max_seq_len 48
    with pytest.raises(UsageError, match="max_seq_len=48"):
        model(torch.zeros(1, 49, dtype=torch.long))
    cache = model.new_cache(1)
    model(torch.zeros(1, 40, dtype=torch.long), cache=cache)
    with pytest.raises(UsageError, match="max_seq_len=48"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)
    assert cache.length == 40  # a refused step leaves the cache as it was
    small = model.new_cache(1, max_len=8)
    with pytest.raises(UsageError, match="KV cache is full"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=small)
    with pytest.raises(UsageError, match="batch size 1"):
        model(torch.zeros(2, 3, dtype=torch.long), cache=small)
    with pytest.raises(UsageError, match="max_len=64"):
        model.new_cache(1, max_len=64)


@pytest.mark.parametrize("variant", CACHE_VARIANTS)
@torch.no_grad()
def test_a_decode_step_of_rows_at_their_own_positions_equals_each_full_forward(
    make_model, variant: str
) -> None:
    """Batched generation: each row of the cache holds a sequence of its own length, and one decode step
    advances all of them; every row's logits are those of its own full forward (rows never interact)."""
    model = make_model(**VARIANTS[variant])
    g = torch.Generator().manual_seed(5)
    lengths = [7, 1, 19, 12]
    sequences = [torch.randint(0, model.config.vocab_size, (n + 1,), generator=g) for n in lengths]
    cache = model.new_cache(len(sequences))
    for row, seq in enumerate(sequences):  # prefill each row alone, in place
        model(seq[None, :-1], cache=cache.row(row))
    tokens = torch.stack([seq[-1] for seq in sequences])
    positions = torch.tensor(lengths)
    logits = model.decode_step(tokens, positions, cache, n_keys=max(lengths) + 5)  # a few stale keys too
    for row, seq in enumerate(sequences):
        torch.testing.assert_close(logits[row], model(seq[None]).logits[0, -1], atol=1e-5, rtol=0)
    assert cache.keys[0][2, :, 19].abs().sum() > 0  # row 2 wrote its new key at its own position


@torch.no_grad()
def test_a_cache_row_is_a_view_that_prefills_in_place(make_model) -> None:
    model = make_model()
    cache = model.new_cache(3, max_len=16)
    row = cache.row(1)
    assert row.batch_size == 1 and row.length == 0 and row.max_len == 16
    model(torch.randint(0, 61, (1, 5)), cache=row)
    assert row.length == 5
    written = cache.keys[0][:, :, :5].abs().sum(dim=(1, 2, 3))
    assert written[1] > 0 and written[0] == 0 and written[2] == 0
