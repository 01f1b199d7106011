"""Conversion to and from transformers' `LlamaForCausalLM` (weights and config), in both directions.

Only the Llama-compatible subset maps (rmsnorm, pre-norm, RoPE, SwiGLU). Our RoPE uses the same rotate-half
channel layout as HF Llama, so q/k weights copy over unpermuted; the only reshaping is splitting our fused QKV
and gate/up projections into HF's separate ones (and concatenating them back). transformers is imported lazily:
it is a dev extra, not a runtime dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from alm.errors import UsageError
from alm.model.config import ModelConfig

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

    from alm.model.transformer import Transformer

_LLAMA_SETTINGS = {"norm": "rmsnorm", "norm_position": "pre", "position": "rope", "ffn": "swiglu"}


def check_llama_compatible(cfg: ModelConfig) -> None:
    """Raise UsageError naming the first setting a Llama checkpoint cannot express."""
    for key, expected in _LLAMA_SETTINGS.items():
        value = getattr(cfg, key)
        if value != expected:
            raise UsageError(
                f"model.{key}={value!r} has no Llama equivalent (Llama needs {key}={expected!r})",
                hint="only rmsnorm + pre-norm + rope + swiglu models convert to/from LlamaForCausalLM",
            )


def hf_llama_config(cfg: ModelConfig) -> LlamaConfig:
    """The `transformers.LlamaConfig` describing the same architecture as `cfg`."""
    check_llama_compatible(cfg)
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.require_vocab(),
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_theta=cfg.rope_theta,  # transformers 5 folds this into rope_parameters
        tie_word_embeddings=cfg.tie_embeddings,
        attention_bias=cfg.bias,
        mlp_bias=cfg.bias,
        attention_dropout=cfg.dropout,
        hidden_act="silu",
        initializer_range=cfg.init_std,
    )


def model_config_from_hf(hf_config: Any, **overrides: Any) -> ModelConfig:
    """Our `ModelConfig` for a `LlamaConfig` (plain RoPE only: scaled RoPE variants have no equivalent here)."""
    # transformers 5 keeps RoPE settings in rope_parameters; 4.x has rope_theta and an optional rope_scaling.
    rope = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UsageError(f"RoPE scaling ({rope_type!r}) is not supported; only plain RoPE converts")
    if hf_config.hidden_act != "silu":
        raise UsageError(f"hidden_act={hf_config.hidden_act!r} is not SwiGLU's silu")
    head_dim = getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads
    if head_dim * hf_config.num_attention_heads != hf_config.hidden_size:
        raise UsageError(f"head_dim={head_dim} × {hf_config.num_attention_heads} heads != hidden_size")
    if getattr(hf_config, "attention_bias", False) != getattr(hf_config, "mlp_bias", False):
        raise UsageError("attention_bias and mlp_bias differ; alm has one `bias` switch for both")
    fields: dict[str, Any] = {
        "vocab_size": hf_config.vocab_size,
        "d_model": hf_config.hidden_size,
        "n_layers": hf_config.num_hidden_layers,
        "n_heads": hf_config.num_attention_heads,
        "n_kv_heads": hf_config.num_key_value_heads,
        "d_ff": hf_config.intermediate_size,
        "max_seq_len": hf_config.max_position_embeddings,
        "norm_eps": hf_config.rms_norm_eps,
        "rope_theta": float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))),
        "tie_embeddings": bool(hf_config.tie_word_embeddings),
        "bias": bool(getattr(hf_config, "attention_bias", False)),
        "init_std": float(getattr(hf_config, "initializer_range", 0.02)),
        **_LLAMA_SETTINGS,
    }
    fields.update(overrides)
    cfg = ModelConfig(**fields)
    cfg.validate()
    return cfg


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


def from_hf_llama_state_dict(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A LlamaForCausalLM state dict renamed (and fused) for `Transformer(cfg).load_state_dict(...)`."""
    check_llama_compatible(cfg)

    def take(name: str) -> torch.Tensor:
        if name not in sd:
            raise UsageError(
                f"the Llama state dict has no '{name}'", hint="is it a LlamaForCausalLM checkpoint?"
            )
        return sd[name]

    embed = take("model.embed_tokens.weight")
    out = {"tok_emb.weight": embed, "norm.weight": take("model.norm.weight")}
    out["head.weight"] = embed if cfg.tie_embeddings else take("lm_head.weight")
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
    return out


def from_hf_llama(hf_model: LlamaForCausalLM) -> Transformer:
    """Our Transformer with the weights of a `LlamaForCausalLM` (same device and dtype)."""
    from alm.model.transformer import Transformer

    cfg = model_config_from_hf(hf_model.config)
    weight = hf_model.get_input_embeddings().weight
    with torch.device(weight.device):
        model = Transformer(cfg).to(weight.dtype)
    model.load_state_dict(from_hf_llama_state_dict(hf_model.state_dict(), cfg))
    return model


def to_hf_llama(model: Transformer) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` carrying our weights (same device and dtype)."""
    from transformers import LlamaForCausalLM

    weight = model.tok_emb.weight
    with torch.device(weight.device):
        hf_model = LlamaForCausalLM(hf_llama_config(model.config)).to(weight.dtype)
    hf_model.load_state_dict(to_hf_llama_state_dict(model))
    return hf_model.train(model.training)
