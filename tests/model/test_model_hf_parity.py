"""Parity with transformers' LlamaForCausalLM (random tiny config built in code; nothing is downloaded)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from model_testing import tiny_config, tiny_model

from alm.errors import UsageError
from alm.model.hf import (
    check_llama_compatible,
    from_hf_llama,
    from_hf_llama_state_dict,
    hf_llama_config,
    model_config_from_hf,
    to_hf_llama,
    to_hf_llama_state_dict,
)

transformers = pytest.importorskip("transformers")


def _random_llama(tied: bool, bias: bool = False) -> transformers.LlamaForCausalLM:
    config = transformers.LlamaConfig(
        vocab_size=71,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # GQA
        max_position_embeddings=64,
        rope_theta=50000.0,  # not the default, so a dropped theta would show
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        attention_bias=bias,
        mlp_bias=bias,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # large random weights everywhere, norms included, so any mix-up shows
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.3 if "norm" in name else 0.15)
    return model


@pytest.mark.parametrize(("tied", "bias"), [(True, False), (False, False), (False, True)])
@torch.no_grad()
def test_llama_weights_give_the_same_logits_in_our_model(tied: bool, bias: bool) -> None:
    hf = _random_llama(tied, bias)
    ours = from_hf_llama(hf).eval()
    assert ours.config.n_kv_heads == 2 and ours.config.rope_theta == 50000.0 and ours.config.norm_eps == 1e-6
    assert ours.config.tie_embeddings is tied
    idx = torch.randint(0, 71, (3, 40), generator=torch.Generator().manual_seed(0))
    expected = hf(idx).logits
    assert expected.std() > 1.0  # logits carry signal, not a near-constant
    torch.testing.assert_close(ours(idx).logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
@torch.no_grad()
def test_our_weights_give_the_same_logits_in_llama(tied: bool) -> None:
    ours = tiny_model(vocab_size=71, d_model=64, n_heads=4, n_kv_heads=2, tie_embeddings=tied, rope_theta=3e4)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.3 if "norm" in name else 0.15)
    hf = to_hf_llama(ours).eval()
    assert (hf.lm_head.weight is hf.model.embed_tokens.weight) is tied
    idx = torch.randint(0, 71, (2, 33), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(hf(idx).logits, ours(idx).logits, atol=1e-5, rtol=0)


def test_state_dict_mapping_round_trips_exactly() -> None:
    ours = tiny_model(n_kv_heads=2, tie_embeddings=False, bias=True)
    sd = to_hf_llama_state_dict(ours)
    assert "model.layers.1.self_attn.k_proj.bias" in sd and "model.layers.0.mlp.up_proj.weight" in sd
    back = from_hf_llama_state_dict(sd, ours.config)
    original = ours.state_dict()
    assert back.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(back[key], value), key
    cfg = ours.config
    round_trip = model_config_from_hf(hf_llama_config(cfg))
    assert round_trip.ffn_dim == cfg.ffn_dim  # HF stores the resolved width, not our rounding rule
    assert replace(round_trip, d_ff=cfg.d_ff, multiple_of=cfg.multiple_of) == cfg


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("position", "alibi"),
        ("norm", "layernorm"),
        ("norm_position", "post"),
        ("ffn", "gelu"),
        ("ffn", "dual"),
    ],
)
def test_non_llama_settings_are_refused_by_name(setting: str, value: str) -> None:
    cfg = tiny_config(**{setting: value})
    with pytest.raises(UsageError, match=f"model.{setting}="):
        check_llama_compatible(cfg)
    with pytest.raises(UsageError, match=setting):
        hf_llama_config(cfg)


def test_a_missing_llama_weight_is_named() -> None:
    ours = tiny_model()
    sd = to_hf_llama_state_dict(ours)
    del sd["model.layers.1.mlp.down_proj.weight"]
    with pytest.raises(UsageError, match=r"model\.layers\.1\.mlp\.down_proj\.weight"):
        from_hf_llama_state_dict(sd, ours.config)
