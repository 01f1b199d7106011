"""transformers' `GPT2LMHeadModel` <-> alm (weights and config.json), in both directions.

GPT-2 stores its projections as `Conv1D`, whose weight is the transpose of an `nn.Linear`'s, and always has
biases (LayerNorm included): a bias-free alm model exports with zero biases, which is exact. alm's GELU is
`gelu(approximate="tanh")`, transformers' `gelu_pytorch_tanh` (GPT-2's own `gelu_new` is the same formula).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from alm.config import from_dict
from alm.errors import UsageError
from alm.model.config import ModelConfig
from alm.model.hf.common import WeightReader, config_as_dict, refuse, required
from alm.model.hf.targets import GPT2

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

# transformers activations that compute 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), alm's GELU.
TANH_GELU = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")
PREFIX = "transformer."  # GPT2LMHeadModel's name for its base model


check_gpt2_compatible = GPT2.require


def gpt2_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """config.json for `cfg` as `GPT2LMHeadModel`."""
    check_gpt2_compatible(cfg)
    return {
        "architectures": [GPT2.architecture],
        "model_type": "gpt2",
        "vocab_size": cfg.require_vocab(),
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.ffn_dim,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "activation_function": "gelu_pytorch_tanh",
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "initializer_range": cfg.init_std,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "use_cache": True,
    }


def model_config_from_gpt2(config: Any) -> ModelConfig:
    """Our `ModelConfig` for a GPT-2 config.json (dict or `GPT2Config`)."""
    hf = config_as_dict(config)
    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELU:
        raise refuse(
            "activation_function", act, f"alm's GELU is the tanh approximation ({', '.join(TANH_GELU)})"
        )
    if hf.get("scale_attn_by_inverse_layer_idx", False):
        raise refuse("scale_attn_by_inverse_layer_idx", True, "alm scales attention by 1/sqrt(head_dim) only")
    if not hf.get("scale_attn_weights", True):
        raise refuse("scale_attn_weights", False, "alm always scales attention by 1/sqrt(head_dim)")
    d_model = required(hf, "n_embd")
    fields = {
        "vocab_size": required(hf, "vocab_size"),
        "d_model": d_model,
        "n_layers": required(hf, "n_layer"),
        "n_heads": required(hf, "n_head"),
        "d_ff": hf.get("n_inner") or 4 * d_model,
        "max_seq_len": required(hf, "n_positions"),
        "norm_eps": float(hf.get("layer_norm_epsilon", 1e-5)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),  # GPT2Config's default
        "bias": True,  # GPT-2 always has biases
        "init_std": float(hf.get("initializer_range", 0.02)),
        **GPT2.settings,
    }
    return from_dict(ModelConfig, fields, source="config.json")


def to_hf_gpt2_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under GPT2LMHeadModel's names (Linear weights transposed into Conv1D's layout; zeros where
    a bias-free alm model has no bias)."""
    cfg = model.config
    check_gpt2_compatible(cfg)
    sd = model.state_dict()

    def bias(name: str, size: int) -> torch.Tensor:
        return sd[name] if cfg.bias else torch.zeros(size, dtype=sd["tok_emb.weight"].dtype)

    d, ff = cfg.d_model, cfg.ffn_dim
    out = {"transformer.wte.weight": sd["tok_emb.weight"], "transformer.wpe.weight": sd["pos_emb.weight"]}
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"transformer.h.{i}."
        for our_norm, their_norm in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
            out[f"{theirs}{their_norm}.weight"] = sd[f"{ours}{our_norm}.weight"]
            out[f"{theirs}{their_norm}.bias"] = bias(f"{ours}{our_norm}.bias", d)
        for our_proj, their_proj, size in (
            ("attn.qkv", "attn.c_attn", 3 * d),
            ("attn.proj", "attn.c_proj", d),
            ("ffn.fc", "mlp.c_fc", ff),
            ("ffn.down", "mlp.c_proj", d),
        ):
            out[f"{theirs}{their_proj}.weight"] = sd[f"{ours}{our_proj}.weight"].t()  # Conv1D: [in, out]
            out[f"{theirs}{their_proj}.bias"] = bias(f"{ours}{our_proj}.bias", size)
    out["transformer.ln_f.weight"] = sd["norm.weight"]
    out["transformer.ln_f.bias"] = bias("norm.bias", d)
    out["lm_head.weight"] = sd["head.weight"]  # the same tensor when tied; HF ties it again on load
    return out


def canonical_gpt2_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layout of GPT-2's own (tied) checkpoints: the base model's names, no `transformer.` prefix and no
    head. transformers loads it into GPT2LMHeadModel and mlx-lm reads only this; an untied head needs the
    prefixed names instead (transformers 4.x calls lm_head beside unprefixed keys a corrupt checkpoint)."""
    return {k.removeprefix(PREFIX): v for k, v in state.items() if k != "lm_head.weight"}


def from_hf_gpt2_state_dict(sd: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A GPT-2 state dict (GPT2LMHeadModel's names, or the canonical unprefixed checkpoint) renamed for
    `Transformer(cfg).load_state_dict(...)`. With `cfg.bias` off, GPT-2's biases must all be zero (as an alm
    export writes them), else the model would change."""
    check_gpt2_compatible(cfg)
    if not any(k.startswith(PREFIX) for k in sd):
        sd = {k if k == "lm_head.weight" else PREFIX + k: v for k, v in sd.items()}
    take = WeightReader(sd, "GPT2LMHeadModel")

    def bias(name: str) -> dict[str, torch.Tensor]:
        tensor = take(name)
        if cfg.bias:
            return {"bias": tensor}
        if torch.count_nonzero(tensor):
            raise UsageError(f"{name} is not zero, but the model config has bias=False")
        return {}

    out = {"tok_emb.weight": take("transformer.wte.weight"), "pos_emb.weight": take("transformer.wpe.weight")}
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"transformer.h.{i}."
        for our_norm, their_norm in (("attn_norm", "ln_1"), ("ffn_norm", "ln_2")):
            out[f"{ours}{our_norm}.weight"] = take(f"{theirs}{their_norm}.weight")
            for kind, value in bias(f"{theirs}{their_norm}.bias").items():
                out[f"{ours}{our_norm}.{kind}"] = value
        for our_proj, their_proj in (
            ("attn.qkv", "attn.c_attn"),
            ("attn.proj", "attn.c_proj"),
            ("ffn.fc", "mlp.c_fc"),
            ("ffn.down", "mlp.c_proj"),
        ):
            out[f"{ours}{our_proj}.weight"] = take(f"{theirs}{their_proj}.weight").t()
            for kind, value in bias(f"{theirs}{their_proj}.bias").items():
                out[f"{ours}{our_proj}.{kind}"] = value
    out["norm.weight"] = take("transformer.ln_f.weight")
    for kind, value in bias("transformer.ln_f.bias").items():
        out[f"norm.{kind}"] = value
    if cfg.tie_embeddings:
        out["head.weight"] = out["tok_emb.weight"]
        take.mark_used("lm_head.weight")
    else:
        out["head.weight"] = take("lm_head.weight")
    take.check_all_used()
    return out


__all__ = [
    "PREFIX",
    "TANH_GELU",
    "canonical_gpt2_checkpoint",
    "check_gpt2_compatible",
    "from_hf_gpt2_state_dict",
    "gpt2_config_dict",
    "model_config_from_gpt2",
    "to_hf_gpt2_state_dict",
]
