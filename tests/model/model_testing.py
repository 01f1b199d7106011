"""Tiny model configs shared by the model tests: a few thousand parameters, milliseconds per forward on a CPU."""

from __future__ import annotations

from typing import Any

import torch

from alm.config import from_dict
from alm.model import ModelConfig, Transformer

TINY: dict[str, Any] = {
    "vocab_size": 61,
    "d_model": 32,
    "n_layers": 2,
    "n_heads": 4,
    "max_seq_len": 48,
    "multiple_of": 16,
}

# Every architecture variant the causality and KV-cache proofs must hold for.
VARIANTS: dict[str, dict[str, Any]] = {
    "rope": {},
    "alibi": {"position": "alibi"},
    "alibi-6-heads-gqa": {"position": "alibi", "d_model": 48, "n_heads": 6, "n_kv_heads": 2},
    "nope": {"position": "nope"},
    "learned": {"position": "learned"},
    "gqa": {"n_kv_heads": 2},
    "mqa": {"n_kv_heads": 1},
    "dual": {"ffn": "dual"},
    "dual-capacity": {"ffn": "dual", "router": {"capacity_factor": 0.5}},
    "gelu-layernorm": {"ffn": "gelu", "norm": "layernorm", "bias": True},
    "post-norm": {"norm_position": "post"},
    "no-norm": {"norm": "none"},
    "untied": {"tie_embeddings": False},
}


def tiny_config(**overrides: Any) -> ModelConfig:
    return from_dict(ModelConfig, {**TINY, **overrides})


def tiny_model(seed: int = 0, **overrides: Any) -> Transformer:
    """A freshly initialised tiny model in eval mode (deterministic for a given seed)."""
    torch.manual_seed(seed)
    return Transformer(tiny_config(**overrides)).eval()
