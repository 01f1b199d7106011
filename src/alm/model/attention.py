"""Causal self-attention: one fused QKV projection, MHA/GQA/MQA via `n_kv_heads`, SDPA for the kernel."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from alm.device import parse_version
from alm.model.cache import CacheWriter
from alm.model.config import ModelConfig
from alm.model.init import residual_projection
from alm.model.positions import apply_rope

_TORCH_VERSION = parse_version(torch.__version__)


def _sdpa_handles_gqa(device_type: str, masked: bool) -> bool:
    """SDPA's enable_gqa on MPS crashes before torch 2.7 (pytorch#149132) and supports masks only from 2.13
    (as transformers also assumes); elsewhere it is native. Where it is not, KV heads are repeated instead."""
    if device_type != "mps":
        return True
    return _TORCH_VERSION >= (2, 13) or (not masked and _TORCH_VERSION >= (2, 7))


class AttentionContext(NamedTuple):
    """What every layer shares in one forward pass, built once by the Transformer."""

    rope: (
        tuple[torch.Tensor, torch.Tensor] | None
    )  # cos, sin [T, 1, head_dim], or [B, T, 1, head_dim] per row
    mask: (
        torch.Tensor | None
    )  # additive float (ALiBi) or boolean mask [B or 1, H or 1, T, keys]; None = is_causal
    is_causal: bool
    decode_kernel: bool = False  # a decode step calls torch.ops.alm.decode_attention (alm.model.kernels)


def single_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention of one query per row (a decode step): q [B, H, 1, hd] over k, v [B, KV, L, hd] -> [B, H, 1, hd].

    Two batched matmuls and a softmax: SDPA's CPU kernel tiles over queries and spends ~400 µs per layer on 8
    rows of one query each, and here the query heads of a KV group share one matmul (GQA without repeating keys).
    `mask` is boolean (True = visible) or additive (ALiBi), broadcastable to [B, H, 1, L]; None = every key."""
    B, H, _, hd = q.shape
    KV, L = k.shape[1], k.shape[2]
    scores = (q.view(B, KV, H // KV, hd) @ k.transpose(-1, -2)).view(B, H, 1, L) * hd**-0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = scores.float().softmax(dim=-1).to(v.dtype)
    return (probs.view(B, KV, H // KV, L) @ v).view(B, H, 1, hd)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        qkv_dim = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        self.qkv = nn.Linear(cfg.d_model, qkv_dim, bias=cfg.bias)
        self.proj = residual_projection(nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.bias))
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, ctx: AttentionContext, cache: CacheWriter | None = None, layer: int = 0
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV = self.n_heads, self.n_kv_heads
        qkv = self.qkv(x).view(B, T, H + 2 * KV, self.head_dim)
        qk, v = qkv.split([H + KV, KV], dim=2)
        if ctx.rope is not None:  # q and k rotate together: one kernel chain instead of two
            qk = apply_rope(qk, *ctx.rope)
        q, k = qk.split([H, KV], dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, head_dim]
        if cache is not None:
            k, v = cache.update(layer, k, v)
            if k.dtype != q.dtype:  # a cache made in another dtype than autocast computes in
                k, v = k.to(q.dtype), v.to(q.dtype)
        if T == 1 and cache is not None:
            if ctx.decode_kernel:
                y = torch.ops.alm.decode_attention(q, k, v, ctx.mask)
            else:
                y = single_query_attention(q, k, v, ctx.mask)
            return self.proj(y.transpose(1, 2).reshape(B, T, H * self.head_dim))
        grouped = KV != H  # query head h reads KV head h // (H // KV)
        if grouped and not _sdpa_handles_gqa(q.device.type, ctx.mask is not None):
            k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
            grouped = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=ctx.mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=ctx.is_causal,
            enable_gqa=grouped,
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, H * self.head_dim))
