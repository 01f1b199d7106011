"""Tiny real models: untied, with a large init so random logits are far from ties (greedy choices are then well
defined). Areas that need another context length pass their own `max_seq_len`."""

from __future__ import annotations

from typing import Any

import torch

from alm.model import ModelConfig, Transformer


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    values: dict[str, Any] = dict(
        vocab_size=vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=64,
        init_std=0.3,
        tie_embeddings=False,
    )
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(vocab_size: int, seed: int = 0, **overrides) -> Transformer:
    """`tiny_config`'s model, initialised from `seed`, in eval mode."""
    torch.manual_seed(seed)
    return Transformer(tiny_config(vocab_size, **overrides)).eval()
