"""Causality: what a position predicts may depend only on tokens at or before it, for every variant."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from model_testing import VARIANTS, tiny_config

from alm.model import Transformer


def _assert_prefix_unchanged(model: Transformer, idx: torch.Tensor, k: int, seed: int) -> None:
    changed = idx.clone()
    g = torch.Generator().manual_seed(seed)
    changed[:, k:] = torch.randint(0, model.config.vocab_size, changed[:, k:].shape, generator=g)
    with torch.no_grad():
        before = model(idx).logits
        after = model(changed).logits
    torch.testing.assert_close(after[:, :k], before[:, :k], atol=1e-5, rtol=0)
    # and the test has teeth: the future positions do see the change
    assert not torch.allclose(after[:, k:], before[:, k:])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_future_tokens_never_change_past_logits(make_model, variant: str) -> None:
    model = make_model(**VARIANTS[variant])
    idx = torch.randint(0, model.config.vocab_size, (4, 24), generator=torch.Generator().manual_seed(1))
    for k in (1, 7, 23):
        _assert_prefix_unchanged(model, idx, k, seed=k)


_PROPERTY_MODELS: dict[str, Transformer] = {}


@settings(max_examples=30, deadline=None)
@given(
    variant=st.sampled_from(["rope", "alibi", "dual-capacity", "learned"]),
    length=st.integers(2, 40),
    data=st.data(),
)
def test_causality_holds_at_any_split_point(variant: str, length: int, data: st.DataObject) -> None:
    if variant not in _PROPERTY_MODELS:
        torch.manual_seed(0)
        _PROPERTY_MODELS[variant] = Transformer(tiny_config(**VARIANTS[variant])).eval()
    model = _PROPERTY_MODELS[variant]
    k = data.draw(st.integers(1, length - 1), label="k")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    idx = torch.randint(
        0, model.config.vocab_size, (3, length), generator=torch.Generator().manual_seed(seed)
    )
    _assert_prefix_unchanged(model, idx, k, seed=seed + 1)
