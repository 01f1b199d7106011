"""`alm export --format gguf`, read back with `gguf.GGUFReader`: llama metadata, the embedded byte-level BPE, and
tensors that give back alm's weights (q/k after undoing the permutation to llama.cpp's interleaved RoPE)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from export_helpers import HF_VARIANTS, LLAMA_VARIANTS, memorised_model, save_run

from alm.errors import UsageError
from alm.interop.export import ExportOptions, export_checkpoint
from alm.interop.gguf_export import from_llama_cpp_rope, to_llama_cpp_rope
from alm.model.hf import to_hf_llama_state_dict
from alm.model.positions import RotaryEmbedding, apply_rope
from alm.tokenizer import TokenizerConfig, train_tokenizer
from alm.tokenizer.special import RESERVED_TOKENS
from alm.train.checkpoint import load_model
from testkit.corpus import shipped_text

gguf = pytest.importorskip("gguf")


def export_gguf(run: Path, out: Path, **options) -> Path:
    options = {"format": "gguf", **options}
    return export_checkpoint(run / "checkpoints" / "last.pt", ExportOptions(**options), out).path


def field(reader, key: str):
    return reader.fields[key].contents()


def tensors(reader) -> dict[str, np.ndarray]:
    """Name -> float32 array shaped like the torch weight (rows, columns), dequantised where needed."""
    out = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        out[t.name] = np.asarray(data, dtype=np.float32).reshape(tuple(reversed(t.shape.tolist())))
    return out


@pytest.fixture(scope="module", params=LLAMA_VARIANTS)
def exported(request, make_run, tmp_path_factory):
    run = make_run(request.param, HF_VARIANTS[request.param])
    path = export_gguf(run, tmp_path_factory.mktemp("gguf") / f"{request.param}.gguf")
    model, _, _, _ = load_model(run, device="cpu")
    return model, gguf.GGUFReader(path)


def test_metadata_describes_the_llama_model_and_its_tokenizer(exported, tokenizer):
    model, reader = exported
    cfg = model.config
    expected = {
        "general.architecture": "llama",
        "general.file_type": int(gguf.LlamaFileType.ALL_F32),
        "general.license": "other",
        "llama.context_length": cfg.max_seq_len,
        "llama.embedding_length": cfg.d_model,
        "llama.block_count": cfg.n_layers,
        "llama.feed_forward_length": cfg.ffn_dim,
        "llama.attention.head_count": cfg.n_heads,
        "llama.attention.head_count_kv": cfg.kv_heads,
        "llama.rope.dimension_count": cfg.head_dim,
        "llama.rope.freq_base": cfg.rope_theta,
        "llama.vocab_size": cfg.vocab_size,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.bos_token_id": tokenizer.bos_id,
        "tokenizer.ggml.eos_token_id": tokenizer.eos_id,
        "tokenizer.ggml.padding_token_id": tokenizer.pad_id,
        "tokenizer.ggml.add_bos_token": False,
    }
    for key, value in expected.items():
        assert field(reader, key) == pytest.approx(value), key
    assert field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.norm_eps)
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert tokens == [tokenizer.id_to_token(i) for i in range(cfg.vocab_size)]
    types = field(reader, "tokenizer.ggml.token_type")
    reserved = len(RESERVED_TOKENS)
    assert types[:reserved] == [gguf.TokenType.CONTROL] * reserved  # bos/eos/pad and the chat tokens
    assert set(types[reserved:]) == {gguf.TokenType.NORMAL}
    merges = field(reader, "tokenizer.ggml.merges")
    assert merges[0].count(" ") == 1 and len(merges) == cfg.vocab_size - 256 - reserved
    # A pretrained run: no chat template, even though its tokenizer has the chat tokens.
    assert (
        "tokenizer.chat_template" not in reader.fields and "tokenizer.ggml.eot_token_id" not in reader.fields
    )


def test_a_chat_run_carries_the_chat_template_and_ends_replies_at_end(make_run, tmp_path, tokenizer):
    from alm.tokenizer.special import END

    run = make_run("llama-chat", HF_VARIANTS["llama-gqa-untied"], chat=True)  # `alm sft` wrote its config
    reader = gguf.GGUFReader(export_gguf(run, tmp_path / "chat.gguf"))
    assert "<|assistant|>" in field(reader, "tokenizer.chat_template")
    assert field(reader, "tokenizer.ggml.eot_token_id") == tokenizer.token_id(END)
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.eos_id


def test_tensors_give_back_alms_weights_after_the_inverse_permutation(exported):
    model, reader = exported
    cfg = model.config
    got = tensors(reader)
    hf = to_hf_llama_state_dict(model)
    assert ("output.weight" in got) is not cfg.tie_embeddings  # llama.cpp reuses token_embd when tied
    assert len(got) == len(hf) - cfg.tie_embeddings
    for i in range(cfg.n_layers):
        for kind in ("weight", "bias") if cfg.bias else ("weight",):
            for name, heads in (("q", cfg.n_heads), ("k", cfg.kv_heads)):
                stored = torch.tensor(got[f"blk.{i}.attn_{name}.{kind}"])
                original = hf[f"model.layers.{i}.self_attn.{name}_proj.{kind}"]
                assert not torch.equal(stored, original)  # permuted...
                assert torch.equal(from_llama_cpp_rope(stored, heads), original)  # ...and back, exactly
    assert np.array_equal(got["token_embd.weight"], hf["model.embed_tokens.weight"].numpy())
    assert np.array_equal(got["blk.1.ffn_down.weight"], hf["model.layers.1.mlp.down_proj.weight"].numpy())
    assert got["blk.0.attn_norm.weight"].shape == (cfg.d_model,)


def test_the_permutation_turns_rotate_half_rope_into_interleaved_rope():
    """What the permuted rows must satisfy for llama.cpp: RoPE on channel pairs (2i, 2i+1) of the permuted q
    equals, up to that reordering, alm's rotate-half RoPE on pairs (i, i + d/2) of the original."""
    heads, head_dim, d_model, T = 3, 8, 24, 7
    torch.manual_seed(0)
    weight, x = torch.randn(heads * head_dim, d_model), torch.randn(T, d_model)
    rope = RotaryEmbedding(head_dim, T)
    cos, sin = rope(0, T, torch.float32)  # [T, 1, head_dim], halves repeated
    ours = apply_rope((x @ weight.T).view(T, heads, head_dim), cos, sin)
    q = (x @ to_llama_cpp_rope(weight, heads).T).view(T, heads, head_dim // 2, 2)
    c, s = cos[..., : head_dim // 2], sin[..., : head_dim // 2]
    interleaved = torch.stack((q[..., 0] * c - q[..., 1] * s, q[..., 0] * s + q[..., 1] * c), dim=-1)
    assert torch.allclose(
        to_llama_cpp_rope(ours.reshape(T, -1).T, heads).T, interleaved.reshape(T, -1), atol=1e-6
    )


@pytest.mark.parametrize(
    ("options", "matrix_type", "file_type", "atol"),
    [
        ({"dtype": "fp16"}, "F16", "MOSTLY_F16", 1e-3),
        ({"dtype": "bf16"}, "BF16", "MOSTLY_BF16", 2e-2),
        ({"quantize": "q8_0"}, "Q8_0", "MOSTLY_Q8_0", None),
    ],
)
def test_smaller_types_keep_norms_in_f32(make_run, tmp_path, options, matrix_type, file_type, atol):
    run = make_run("llama-gqa-untied", HF_VARIANTS["llama-gqa-untied"])
    path = export_gguf(run, tmp_path / "out.gguf", **options)
    reader = gguf.GGUFReader(path)
    assert field(reader, "general.file_type") == int(gguf.LlamaFileType[file_type])
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert (
        types["blk.0.ffn_gate.weight"] == types["token_embd.weight"] == types["output.weight"] == matrix_type
    )
    model, _, _, _ = load_model(run, device="cpu")
    original = model.layers[0].ffn.down.weight.detach().numpy()
    got = tensors(reader)["blk.0.ffn_down.weight"]
    tolerance = (
        atol if atol is not None else np.abs(original).max() / 127
    )  # q8_0: one step of a block's scale
    assert np.abs(got - original).max() <= tolerance


def test_default_file_name_says_the_type(make_run, tmp_path):
    run = make_run("llama-mha-tied", {})
    path = export_gguf(run, tmp_path / "exports", quantize="q8_0")  # not *.gguf: the directory it goes in
    assert path == tmp_path / "exports" / "llama-mha-tied-q8_0.gguf" and path.is_file()


def test_a_gpt2_model_is_refused_before_anything_is_written(make_run, tmp_path):
    run = make_run("gpt2-tied-bias", HF_VARIANTS["gpt2-tied-bias"])
    with pytest.raises(UsageError, match=r"llama architecture: model\.norm='layernorm'") as caught:
        export_gguf(run, tmp_path / "out" / "model.gguf")
    assert "--format hf" in caught.value.hint
    assert not (tmp_path / "out").exists()


def test_a_unigram_tokenizer_is_refused_by_name(tmp_path):
    unigram = train_tokenizer(
        shipped_text(20_000).split("\n\n"), tmp_path / "tok", TokenizerConfig(type="unigram", vocab_size=300)
    )
    run = save_run(tmp_path / "runs" / "uni", memorised_model(unigram), unigram)
    with pytest.raises(UsageError, match=r"model\.type='Unigram' \(a unigram tokenizer\)"):
        export_gguf(run, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_embedding_rows_past_the_tokenizer_become_unused_tokens(tmp_path, tokenizer):
    import torch
    from export_helpers import tiny_config

    from alm.model import Transformer

    torch.manual_seed(0)
    run = save_run(
        tmp_path / "runs" / "padded", Transformer(tiny_config(tokenizer.vocab_size + 16)), tokenizer
    )
    reader = gguf.GGUFReader(export_gguf(run, tmp_path / "padded.gguf"))
    tokens, types = field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == tokenizer.vocab_size + 16
    assert tokens[-1] == f"[PAD{tokenizer.vocab_size + 15}]" and set(types[-16:]) == {gguf.TokenType.UNUSED}
