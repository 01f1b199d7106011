"""The fused LM-head cross-entropy (a training-speed path in alm.model) computes exactly what the plain route does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alm.errors import UsageError
from alm.model import ModelConfig, Transformer
from alm.model.loss import linear_cross_entropy


def plain(x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(x, w), t, ignore_index=-100)


def grads(loss_fn, x: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    loss = loss_fn(x, w, t)
    (2.5 * loss).backward()  # a non-unit upstream gradient reaches both inputs
    return loss.detach(), x.grad, w.grad


@pytest.mark.parametrize(("rows", "chunk"), [(100, 32), (64, 1000), (257, 256)])
def test_fused_matches_plain_loss_and_gradients(rows: int, chunk: int) -> None:
    gen = torch.Generator().manual_seed(rows)
    x, w = torch.randn(rows, 16, generator=gen), torch.randn(50, 16, generator=gen) * 0.5
    t = torch.randint(0, 50, (rows,), generator=gen)
    t[::7] = -100  # ignored positions count for nothing, in the mean and in the gradients
    expected = grads(plain, x, w, t)
    fused = grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk_rows=chunk)[0], x, w, t)
    for got, want in zip(fused, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fused_under_bf16_autocast_matches_plain_autocast() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(96, 32, generator=gen), torch.randn(40, 32, generator=gen) * 0.3
    t = torch.randint(0, 40, (96,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = grads(plain, x, w, t)
        fused = grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk_rows=32)[0], x, w, t)
    for got, want in zip(fused, expected, strict=True):
        assert got.dtype == want.dtype == torch.float32  # loss in fp32, grads in the params' dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


def test_all_ignored_is_nan_like_cross_entropy() -> None:
    x, w = torch.randn(4, 8, requires_grad=True), torch.randn(10, 8)
    t = torch.full((4,), -100)
    assert torch.isnan(linear_cross_entropy(x, w, t)[0])
    assert torch.isnan(plain(x, w, t))


def test_no_grad_takes_the_plain_route_and_returns_its_logits() -> None:
    x, w, t = torch.randn(6, 8), torch.randn(10, 8), torch.randint(0, 10, (6,))
    with torch.no_grad():
        loss, logits = linear_cross_entropy(x.requires_grad_(), w, t)
    torch.testing.assert_close(logits, x @ w.t())
    torch.testing.assert_close(loss, plain(x, w, t))


def test_a_fused_training_forward_keeps_the_hidden_state_for_explicit_logits() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16)
    model = Transformer(cfg)
    x = torch.randint(0, 64, (2, 16))
    out = model(x, targets=x)
    out.loss.backward()
    assert model.head.weight.grad is not None
    with torch.no_grad():
        reference = model(x, targets=x)
        logits = model.head(out.hidden)  # explicit: the output never turns into a matmul on first read
    torch.testing.assert_close(logits, reference.logits)
    torch.testing.assert_close(out.loss, reference.loss)
    assert logits.shape == (2, 16, 64)
    with pytest.raises(UsageError, match="fused the LM head"):
        out.logits  # noqa: B018 - reading it is the test
