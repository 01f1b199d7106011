"""transformers' `LlamaForCausalLM` <-> alm (weights and config.json), in both directions.

Only the Llama-compatible subset maps (rmsnorm, pre-norm, RoPE, SwiGLU). Our RoPE uses the same rotate-half
channel layout as HF Llama, so q/k weights copy over unpermuted; the only reshaping is splitting our fused QKV
and gate/up projections into HF's separate ones (and concatenating them back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from alm.config import from_dict
from alm.model.config import ModelConfig
from alm.model.hf.common import WeightReader, config_as_dict, refuse, required
from alm.model.hf.targets import LLAMA

if TYPE_CHECKING:
    from transformers import LlamaConfig

    from alm.model.transformer import Transformer


check_llama_compatible = LLAMA.require


def llama_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """config.json for `cfg` as `LlamaForCausalLM`, readable by transformers 4.4x and 5.x."""
    check_llama_compatible(cfg)
    return {
        "architectures": [LLAMA.architecture],
        "model_type": "llama",
        "vocab_size": cfg.require_vocab(),
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # transformers 4.x reads rope_theta; 5.x reads only rope_parameters: write both.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": cfg.bias,
        "mlp_bias": cfg.bias,
        "attention_dropout": cfg.dropout,
        "hidden_act": "silu",
        "initializer_range": cfg.init_std,
        "pretraining_tp": 1,
        "use_cache": True,
    }


def hf_llama_config(cfg: ModelConfig) -> LlamaConfig:
    """The `transformers.LlamaConfig` describing the same architecture as `cfg`."""
    from transformers import LlamaConfig

    return LlamaConfig.from_dict(llama_config_dict(cfg))


def model_config_from_llama(config: Any) -> ModelConfig:
    """Our `ModelConfig` for a Llama config.json (dict or `LlamaConfig`); fields alm cannot express exactly
    (scaled RoPE, a sliding window, biases on only one of attention/MLP, another activation) are refused."""
    hf = config_as_dict(config)
    # transformers 5 keeps RoPE settings in rope_parameters; 4.x has rope_theta and an optional rope_scaling.
    for key in ("rope_parameters", "rope_scaling"):
        rope = dict(hf.get(key) or {})
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise refuse(key, rope, f"RoPE scaling ({rope_type}) is not supported; alm implements plain RoPE")
    rope = dict(hf.get("rope_parameters") or {})
    if hf.get("hidden_act", "silu") != "silu":
        raise refuse("hidden_act", hf["hidden_act"], "alm's SwiGLU gates with silu")
    hidden, heads = required(hf, "hidden_size"), required(hf, "num_attention_heads")
    head_dim = hf.get("head_dim") or hidden // heads
    if head_dim * heads != hidden:
        raise refuse(
            "head_dim", head_dim, f"alm needs head_dim × num_attention_heads = hidden_size ({hidden})"
        )
    max_len = required(hf, "max_position_embeddings")
    window = hf.get("sliding_window")
    if window is not None and window < max_len:
        raise refuse("sliding_window", window, "alm attends to the whole context; no sliding window")
    attention_bias, mlp_bias = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise refuse(
            "attention_bias",
            attention_bias,
            f"mlp_bias={mlp_bias} differs; alm has one `bias` switch for both",
        )
    fields = {
        "vocab_size": required(hf, "vocab_size"),
        "d_model": hidden,
        "n_layers": required(hf, "num_hidden_layers"),
        "n_heads": heads,
        "n_kv_heads": hf.get("num_key_value_heads") or heads,
        "d_ff": required(hf, "intermediate_size"),
        "max_seq_len": max_len,
        "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
        "rope_theta": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),  # LlamaConfig's default
        "bias": attention_bias,
        "init_std": float(hf.get("initializer_range", 0.02)),
        **LLAMA.settings,
    }
    return from_dict(ModelConfig, fields, source="config.json")


def to_hf_llama_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under LlamaForCausalLM's names (fused projections split; tensors are views, not copies)."""
    cfg = model.config
    check_llama_compatible(cfg)
    sd = model.state_dict()
    q_dim, kv_dim = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["norm.weight"]}
    out["lm_head.weight"] = sd["head.weight"]  # the same tensor when tied; HF ties it again on load
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        out[theirs + "input_layernorm.weight"] = sd[ours + "attn_norm.weight"]
        out[theirs + "post_attention_layernorm.weight"] = sd[ours + "ffn_norm.weight"]
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            q, k, v = sd[f"{ours}attn.qkv.{kind}"].split([q_dim, kv_dim, kv_dim], dim=0)
            out[f"{theirs}self_attn.q_proj.{kind}"] = q
            out[f"{theirs}self_attn.k_proj.{kind}"] = k
            out[f"{theirs}self_attn.v_proj.{kind}"] = v
            out[f"{theirs}self_attn.o_proj.{kind}"] = sd[f"{ours}attn.proj.{kind}"]
            gate, up = sd[f"{ours}ffn.gate_up.{kind}"].chunk(2, dim=0)
            out[f"{theirs}mlp.gate_proj.{kind}"] = gate
            out[f"{theirs}mlp.up_proj.{kind}"] = up
            out[f"{theirs}mlp.down_proj.{kind}"] = sd[f"{ours}ffn.down.{kind}"]
    return out


def from_hf_llama_state_dict(sd: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict renamed (and fused) for `Transformer(cfg).load_state_dict(...)`;
    weights it has that `cfg` has no place for are a UsageError."""
    check_llama_compatible(cfg)
    take = WeightReader(sd, "LlamaForCausalLM")
    embed = take("model.embed_tokens.weight")
    out = {"tok_emb.weight": embed, "norm.weight": take("model.norm.weight")}
    if cfg.tie_embeddings:
        out["head.weight"] = embed
        take.mark_used("lm_head.weight")  # a tied model's state dict repeats the embedding here
    else:
        out["head.weight"] = take("lm_head.weight")
    for i in range(cfg.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        out[ours + "attn_norm.weight"] = take(theirs + "input_layernorm.weight")
        out[ours + "ffn_norm.weight"] = take(theirs + "post_attention_layernorm.weight")
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            out[f"{ours}attn.qkv.{kind}"] = torch.cat(
                [take(f"{theirs}self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")], dim=0
            )
            out[f"{ours}attn.proj.{kind}"] = take(f"{theirs}self_attn.o_proj.{kind}")
            out[f"{ours}ffn.gate_up.{kind}"] = torch.cat(
                [take(f"{theirs}mlp.gate_proj.{kind}"), take(f"{theirs}mlp.up_proj.{kind}")], dim=0
            )
            out[f"{ours}ffn.down.{kind}"] = take(f"{theirs}mlp.down_proj.{kind}")
    take.check_all_used()
    return out


__all__ = [
    "check_llama_compatible",
    "from_hf_llama_state_dict",
    "hf_llama_config",
    "llama_config_dict",
    "model_config_from_llama",
    "to_hf_llama_state_dict",
]
