"""Model arithmetic without training it: exact parameter counts, FLOPs per token, KV-cache bytes per token."""

from __future__ import annotations

from typing import Any

from alm.model.config import ModelConfig

FLOPS_FORMULA = "6·N + 12·L·H·Q·T (PaLM, Chowdhery et al. 2022, App. B); N = matmul params incl. the LM head"
_BYTES = {"fp32": 4, "bf16": 2}


def count_params(cfg: ModelConfig) -> tuple[int, int]:
    """(total, non-embedding) parameters, counted exactly by building the model on the meta device
    (no memory is allocated, so even large presets count instantly)."""
    import torch

    from alm.model.transformer import Transformer

    with torch.device("meta"):
        model = Transformer(cfg)
    return model.num_params(), model.num_params(exclude_embeddings=True)


def model_summary(cfg: ModelConfig) -> dict[str, Any]:
    """Sizes, parameter counts, training FLOPs per token at full context, and KV-cache bytes per token."""
    vocab = cfg.require_vocab()
    total, non_embedding = count_params(cfg)
    # The LM head is a matmul every token pays for even when it shares the embedding matrix.
    matmul_params = non_embedding + (vocab * cfg.d_model if cfg.tie_embeddings else 0)
    attention_flops = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * cfg.max_seq_len
    kv_elements = 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim  # keys and values, every layer
    summary: dict[str, Any] = {
        "params": total,
        "params_non_embedding": non_embedding,
        "vocab_size": vocab,
        "n_layers": cfg.n_layers,
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "d_ff": cfg.ffn_dim,
        "max_seq_len": cfg.max_seq_len,
        "norm": f"{cfg.norm} ({cfg.norm_position})",
        "position": cfg.position,
        "ffn": cfg.ffn,
        "tie_embeddings": cfg.tie_embeddings,
        "flops_per_token": 6 * matmul_params + attention_flops,
        "flops_formula": FLOPS_FORMULA,
        "kv_cache_bytes_per_token": {name: kv_elements * size for name, size in _BYTES.items()},
    }
    if cfg.ffn == "dual":
        summary["d_ff_small"], summary["d_ff_large"] = cfg.small_ffn_dim, cfg.large_ffn_dim
        summary["note"] = "dual FFN: both experts are computed densely, so FLOPs count both"
    return summary
