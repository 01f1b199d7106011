"""Position information: RoPE (HF/Llama rotate-half layout), ALiBi biases, and their absolute offsets.

NoPE needs no code (causal attention alone carries order); learned absolute positions are an `nn.Embedding` in
the Transformer. Every function takes absolute positions, so a KV cache only has to say where it starts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions [0, max_seq_len), laid out as two halves: (θ_0..θ_{d/2-1}, θ_0..θ_{d/2-1})."""

    cos: torch.Tensor  # buffers, [max_seq_len, head_dim]
    sin: torch.Tensor

    def __init__(self, head_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.max_seq_len, self.theta = head_dim, max_seq_len, theta
        cos, sin = self._tables(device=None)
        self.register_buffer("cos", cos, persistent=False)  # derived, so not in the state dict
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
        # Same arithmetic as transformers' Llama rotary embedding (int64 arange, then fp32), so logits match.
        exponents = (
            torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        )
        inv_freq = 1.0 / (self.theta**exponents)
        positions = torch.arange(self.max_seq_len, dtype=torch.int64, device=device).float()
        angles = torch.outer(positions, inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # [max_seq_len, head_dim]
        return angles.cos(), angles.sin()

    def reset_buffers(self) -> None:
        """Recompute the tables in place (after `to_empty()` from the meta device, for instance)."""
        cos, sin = self._tables(device=self.cos.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)

    def forward(self, start: int, end: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for absolute positions [start, end), shaped [T, 1, head_dim] to broadcast over heads."""
        return self.cos[start:end, None].to(dtype), self.sin[start:end, None].to(dtype)

    def at(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin for a tensor of positions [..., T] (each row of a batch at its own position), shaped
        [..., T, 1, head_dim]: a gather instead of a slice, so nothing is read back to the host."""
        return self.cos[positions].unsqueeze(-2).to(dtype), self.sin[positions].unsqueeze(-2).to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (i, i + d/2) of x [..., T, heads, head_dim] by its position's angle."""
    return x * cos + rotate_half(x) * sin


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes from Press et al. (2022): a geometric sequence 2^(-8/n)^(i+1) for n a power of two;
    otherwise those of the closest smaller power of two m, then every other slope of 2m heads."""

    def geometric(n: int) -> list[float]:
        ratio = 2.0 ** (-8.0 / n)
        return [ratio ** (i + 1) for i in range(n)]

    m = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(m) + geometric(2 * m)[0::2][: n_heads - m]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, start: int, end: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive attention bias [1, H, T, end] for queries at [start, end) over keys [0, end):
    −slope·(i − j) for keys at or before the query, −inf after it (the causal mask is folded in)."""
    query_pos = torch.arange(start, end, device=slopes.device)
    return alibi_bias_at(slopes, query_pos[None], end, dtype)


def alibi_bias_at(
    slopes: torch.Tensor, query_pos: torch.Tensor, n_keys: int, dtype: torch.dtype
) -> torch.Tensor:
    """The same bias for queries at positions query_pos [B, T] (rows may differ) over keys [0, n_keys):
    shaped [B, H, T, n_keys]."""
    key_pos = torch.arange(n_keys, device=slopes.device)
    distance = (query_pos[..., None] - key_pos).to(torch.float32)  # [B, T, n_keys], negative = future
    bias = -slopes[:, None, None] * distance.clamp(min=0).unsqueeze(-3)  # [B, H, T, n_keys]
    return bias.masked_fill(distance.unsqueeze(-3) < 0, float("-inf")).to(dtype)


def causal_mask_at(query_pos: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Boolean mask [B, 1, T, n_keys] letting a query at query_pos [B, T] see keys at or before it."""
    key_pos = torch.arange(n_keys, device=query_pos.device)
    return (key_pos <= query_pos[..., None]).unsqueeze(-3)
