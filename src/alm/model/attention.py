"""Causal self-attention: one fused QKV projection, MHA/GQA/MQA via `n_kv_heads`, SDPA for the kernel."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from alm.model.cache import KVCache
from alm.model.config import ModelConfig
from alm.model.positions import apply_rope

_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def _sdpa_handles_gqa(device_type: str, masked: bool) -> bool:
    """SDPA's enable_gqa on MPS crashes before torch 2.7 (pytorch#149132) and supports masks only from 2.13
    (as transformers also assumes); elsewhere it is native. Where it is not, KV heads are repeated instead."""
    if device_type != "mps":
        return True
    return _TORCH_VERSION >= (2, 13) or (not masked and _TORCH_VERSION >= (2, 7))


class AttentionContext(NamedTuple):
    """What every layer shares in one forward pass, built once by the Transformer."""

    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin [T, 1, head_dim]
    mask: torch.Tensor | None  # additive float (ALiBi) or boolean (chunked prefill) mask; None = is_causal
    is_causal: bool


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        qkv_dim = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
        self.qkv = nn.Linear(cfg.d_model, qkv_dim, bias=cfg.bias)
        self.proj = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(
        self, x: torch.Tensor, ctx: AttentionContext, cache: KVCache | None = None, layer: int = 0
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
