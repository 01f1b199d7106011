"""RoPE and ALiBi against their definitions, written out independently of the implementation."""

from __future__ import annotations

import math

import pytest
import torch
from model_testing import tiny_config

from alm.model.attention import Attention, AttentionContext
from alm.model.positions import RotaryEmbedding, alibi_bias, alibi_slopes, apply_rope

# -- RoPE ----------------------------------------------------------------------------------------------------


def _rope_reference(x: torch.Tensor, pos: int, theta: float) -> torch.Tensor:
    """Rotate channel pair (i, i + d/2) by pos·theta^(-2i/d): multiply the complex number x_i + j·x_{i+d/2}."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2 / d)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double())
    z = z * torch.polar(torch.ones_like(freqs), pos * freqs)
    return torch.cat([z.real, z.imag], dim=-1).float()


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_rope_rotates_each_channel_pair_by_its_angle(theta: float) -> None:
    rope = RotaryEmbedding(head_dim=16, max_seq_len=64, theta=theta)
    x = torch.randn(64, 3, 16)  # [T, heads, head_dim]
    cos, sin = rope(0, 64, torch.float32)
    rotated = apply_rope(x, cos, sin)
    for pos in (0, 1, 5, 63):
        torch.testing.assert_close(rotated[pos], _rope_reference(x[pos], pos, theta), atol=1e-5, rtol=1e-5)


def test_rope_preserves_norms() -> None:
    rope = RotaryEmbedding(head_dim=32, max_seq_len=128)
    x = torch.randn(2, 128, 4, 32)
    rotated = apply_rope(x, *rope(0, 128, torch.float32))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_rope_dot_product_depends_only_on_relative_offset() -> None:
    rope = RotaryEmbedding(head_dim=32, max_seq_len=256)
    cos, sin = rope(0, 256, torch.float32)
    q, k = torch.randn(32), torch.randn(32)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rope(q, cos[m, 0], sin[m, 0]) @ apply_rope(k, cos[n, 0], sin[n, 0])

    for m, n in [(5, 2), (17, 17), (3, 40)]:
        for shift in (1, 50, 200):
            torch.testing.assert_close(score(m + shift, n + shift), score(m, n), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(5, 2), score(5, 3))  # and it does depend on the offset


def test_rope_tables_start_at_the_given_offset() -> None:
    rope = RotaryEmbedding(head_dim=8, max_seq_len=32)
    cos_all, sin_all = rope(0, 32, torch.float32)
    cos, sin = rope(10, 13, torch.float32)
    torch.testing.assert_close(cos, cos_all[10:13])
    torch.testing.assert_close(sin, sin_all[10:13])


# -- ALiBi ---------------------------------------------------------------------------------------------------


def test_alibi_slopes_match_the_closed_form() -> None:
    # Press et al.: n a power of two → 2^(-8i/n), i = 1..n.
    eight = [2.0 ** -(8 * i / 8) for i in range(1, 9)]
    torch.testing.assert_close(alibi_slopes(8), torch.tensor(eight))
    # n = 12: the 8 slopes above, then the odd-indexed slopes of 16 heads, 2^(-8i/16) for i = 1, 3, 5, 7.
    twelve = [*eight, 2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(twelve))
    assert all(0 < s < 1 for s in alibi_slopes(6).tolist())


def test_alibi_bias_is_zero_on_the_diagonal_negative_and_non_increasing_with_distance() -> None:
    slopes = alibi_slopes(4)
    bias = alibi_bias(slopes, 0, 10, torch.float32)[0]  # [H, T, T]
    assert bias.shape == (4, 10, 10)
    past = torch.tril(torch.ones(10, 10, dtype=torch.bool))
    assert torch.isneginf(bias[:, ~past]).all()  # the causal mask is folded in
    visible = bias[:, past]
    assert (visible <= 0).all()
    assert (bias.diagonal(dim1=-2, dim2=-1) == 0).all()
    for h in range(4):
        row = bias[h, 9]  # query 9 over keys 9, 8, …, 0: distance grows
        assert (row.flip(0)[1:] <= row.flip(0)[:-1]).all()
        torch.testing.assert_close(row[0], -slopes[h] * 9)
    # decoding offset: queries at [6, 8) see the same rows as the full matrix
    torch.testing.assert_close(alibi_bias(slopes, 6, 8, torch.float32)[0], bias[:, 6:8, :8])


def test_alibi_attention_matches_a_naive_per_head_reference_with_batch_and_gqa() -> None:
    cfg = tiny_config(position="alibi", d_model=48, n_heads=6, n_kv_heads=2)
    torch.manual_seed(0)
    attn = Attention(cfg).eval()
    B, T, H, KV, hd = 3, 7, 6, 2, 8
    x = torch.randn(B, T, cfg.d_model)
    slopes = alibi_slopes(H)
    out = attn(x, AttentionContext(None, alibi_bias(slopes, 0, T, torch.float32), False))

    q, k, v = attn.qkv(x).split([H * hd, KV * hd, KV * hd], dim=-1)
    expected = torch.zeros(B, T, H, hd)
    for b in range(B):
        for h in range(H):
            g = h // (H // KV)  # the KV head serving query head h
            qh, kh, vh = (
                q[b, :, h * hd : (h + 1) * hd],
                k[b, :, g * hd : (g + 1) * hd],
                v[b, :, g * hd : (g + 1) * hd],
            )
            scores = qh @ kh.T / math.sqrt(hd)
            for i in range(T):
                for j in range(T):
                    scores[i, j] = scores[i, j] - slopes[h] * (i - j) if j <= i else float("-inf")
            expected[b, :, h] = scores.softmax(-1) @ vh
    torch.testing.assert_close(out, attn.proj(expected.reshape(B, T, H * hd)), atol=1e-5, rtol=1e-5)
