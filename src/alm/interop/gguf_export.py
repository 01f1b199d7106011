"""A GGUF file for llama.cpp (and LM Studio, Ollama): the `llama` architecture with the tokenizer embedded.

Written with the PyPI `gguf` package, tensor names from its own HF->GGUF map, the conventions of llama.cpp's
convert_hf_to_gguf.py:
- q/k rows are permuted from the rotate-half RoPE layout alm and HF share (channel i pairs with i + d/2) to
  llama.cpp's interleaved one (pairs 2i, 2i+1), per head; k with the KV head count.
- Norms and biases stay f32; 2-D weights take the requested type (q8_0 rows not a multiple of 32 fall back to
  the --dtype type). A tied output head is left out: llama.cpp reuses token_embd.
- The byte-level BPE tokenizer goes in as `tokenizer.ggml.model=gpt2`, `pre=gpt-2` (alm's pre-tokenizer is
  GPT-2's regex), with merges, token types and the special ids; `add_bos_token=false`, as alm never adds one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm.errors import UsageError
from alm.interop.source import ExportSource
from alm.interop.tokenizer_files import chat_template, end_of_turn_id, gguf_vocab
from alm.model.hf import check_llama_compatible, to_hf_llama_state_dict

GGUF_ARCH = "llama"
# --dtype / --quantize -> (ggml tensor type name, llama file type name) in the gguf package's enums.
GGUF_TYPES = {
    "fp32": ("F32", "ALL_F32"),
    "fp16": ("F16", "MOSTLY_F16"),
    "bf16": ("BF16", "MOSTLY_BF16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
}


def check_gguf_exportable(source: ExportSource) -> None:
    """Refuse, before anything is written, models llama.cpp's llama architecture or BPE would not reproduce."""
    try:
        check_llama_compatible(source.model.config)
    except UsageError as exc:
        raise UsageError(
            f"GGUF export writes llama.cpp's llama architecture: {exc.message}",
            hint="export it with --format hf instead (transformers, mlx-lm)",
        ) from None
    gguf_vocab(source.tokenizer, source.model.config.require_vocab())


def to_llama_cpp_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Rows of a q or k projection (weight or bias) from rotate-half to interleaved RoPE order, per head."""
    return (
        weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:])
        .transpose(1, 2)
        .reshape(weight.shape)
    )


def from_llama_cpp_rope(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of `to_llama_cpp_rope`."""
    return (
        weight.reshape(n_heads, weight.shape[0] // n_heads // 2, 2, *weight.shape[1:])
        .transpose(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(source: ExportSource) -> dict[str, torch.Tensor]:
    """GGUF tensor name -> fp32 tensor, q/k permuted, the tied head left out."""
    import gguf

    cfg = source.model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.n_layers)
    tensors = {}
    for hf_name, tensor in to_hf_llama_state_dict(source.model).items():
        if hf_name == "lm_head.weight" and cfg.tie_embeddings:
            continue
        if ".self_attn.q_proj." in hf_name:
            tensor = to_llama_cpp_rope(tensor, cfg.n_heads)
        elif ".self_attn.k_proj." in hf_name:
            tensor = to_llama_cpp_rope(tensor, cfg.kv_heads)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name  # the gguf package maps every LlamaForCausalLM tensor
        tensors[name] = tensor.detach().float()
    return tensors


def _encode(tensor: torch.Tensor, kind: str, fallback: str) -> tuple[np.ndarray, Any]:
    """(data, ggml type) for one tensor: norms, biases and other 1-D tensors in f32, matrices as `kind`."""
    import gguf

    data = tensor.numpy()
    qtype = gguf.GGMLQuantizationType
    if data.ndim <= 1:
        return data, qtype.F32
    try:
        wanted = qtype[GGUF_TYPES[kind][0]]
        return gguf.quants.quantize(data, wanted), wanted
    except gguf.QuantError:  # a row length q8_0 cannot block (not a multiple of 32)
        fallback_type = qtype[GGUF_TYPES[fallback][0]]
        return gguf.quants.quantize(data, fallback_type), fallback_type


def write_gguf_file(
    source: ExportSource, path: Path, *, dtype: str, quantize: str | None, license: str
) -> list[Path]:
    """Write the GGUF to `path` (a staging file name); return [path]."""
    import gguf

    check_gguf_exportable(source)
    cfg, tok = source.model.config, source.tokenizer
    kind = quantize or dtype
    vocab = gguf_vocab(tok, cfg.require_vocab())
    writer = gguf.GGUFWriter(path, GGUF_ARCH)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(source.name)
    writer.add_license(license)
    writer.add_context_length(cfg.max_seq_len)
    writer.add_embedding_length(cfg.d_model)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.ffn_dim)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.norm_eps)
    writer.add_vocab_size(cfg.require_vocab())
    writer.add_file_type(gguf.LlamaFileType[GGUF_TYPES[kind][1]])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(tok.bos_id)
    writer.add_eos_token_id(tok.eos_id)
    writer.add_pad_token_id(tok.pad_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    template, end = chat_template(tok, source.config), end_of_turn_id(tok, source.config)
    if template is not None and end is not None:  # a chat run: llama.cpp ends a reply at <|end|> too
        writer.add_chat_template(template)
        writer.add_eot_token_id(end)

    for name, tensor in gguf_tensors(source).items():
        data, tensor_type = _encode(tensor, kind, dtype)
        writer.add_tensor(name, data, raw_dtype=tensor_type)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return [path]


__all__ = [
    "GGUF_TYPES",
    "check_gguf_exportable",
    "from_llama_cpp_rope",
    "gguf_tensors",
    "to_llama_cpp_rope",
    "write_gguf_file",
]
