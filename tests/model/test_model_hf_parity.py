"""Parity with transformers' LlamaForCausalLM and GPT2LMHeadModel (random tiny configs built in code; nothing
is downloaded), and the refusal of every setting neither computes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from model_testing import tiny_config, tiny_model

from alm.errors import UsageError
from alm.model.hf import (
    check_llama_compatible,
    from_hf,
    from_hf_llama_state_dict,
    from_hf_state_dict,
    hf_checkpoint,
    hf_config_dict,
    hf_llama_config,
    hf_target,
    model_config_from_hf,
    to_hf,
    to_hf_llama_state_dict,
    to_hf_state_dict,
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
    return _scramble(transformers.LlamaForCausalLM(config).eval())


@torch.no_grad()
def _scramble(model: torch.nn.Module) -> torch.nn.Module:
    """Large random weights everywhere, norms and biases included, so any mix-up shows."""
    for name, p in model.named_parameters():
        is_norm = "norm" in name or ".ln_" in name
        p.normal_(1.0 if is_norm and name.endswith("weight") else 0.0, 0.3 if is_norm else 0.15)
    return model


@pytest.mark.parametrize(("tied", "bias"), [(True, False), (False, False), (False, True)])
@torch.no_grad()
def test_llama_weights_give_the_same_logits_in_our_model(tied: bool, bias: bool) -> None:
    hf = _random_llama(tied, bias)
    ours = from_hf(hf).eval()
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
    _scramble(ours)
    hf = to_hf(ours).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
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


GPT2_BLOCK = {"norm": "layernorm", "position": "learned", "ffn": "gelu"}


@pytest.mark.parametrize(("tied", "bias"), [(True, True), (False, True), (True, False)])
@torch.no_grad()
def test_our_gpt2_block_gives_the_same_logits_in_gpt2(tied: bool, bias: bool) -> None:
    ours = _scramble(tiny_model(vocab_size=71, d_model=64, tie_embeddings=tied, bias=bias, **GPT2_BLOCK))
    hf = to_hf(ours).eval()
    assert type(hf).__name__ == "GPT2LMHeadModel"
    assert (hf.lm_head.weight is hf.transformer.wte.weight) is tied
    idx = torch.randint(0, 71, (2, 40), generator=torch.Generator().manual_seed(2))
    expected = ours(idx).logits
    assert expected.std() > 1.0
    torch.testing.assert_close(hf(idx).logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_pytorch_tanh"])
@torch.no_grad()
def test_gpt2_weights_give_the_same_logits_in_our_model(activation: str) -> None:
    config = transformers.GPT2Config(
        vocab_size=71, n_embd=64, n_layer=2, n_head=4, n_positions=48, activation_function=activation
    )
    torch.manual_seed(0)
    hf = _scramble(transformers.GPT2LMHeadModel(config).eval())
    ours = from_hf(hf).eval()
    assert ours.config.bias and ours.config.ffn_dim == 256 and ours.config.max_seq_len == 48
    idx = torch.randint(0, 71, (3, 48), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(idx).logits, hf(idx).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_gpt2_mapping_round_trips_exactly(bias: bool) -> None:
    ours = tiny_model(tie_embeddings=False, bias=bias, **GPT2_BLOCK)
    sd = to_hf_state_dict(ours)
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (32, 96)  # Conv1D: [in, out]
    if not bias:  # GPT-2 always has biases: a bias-free model exports exact zeros
        assert not sd["transformer.h.1.mlp.c_fc.bias"].any() and not sd["transformer.ln_f.bias"].any()
    back = from_hf_state_dict(sd, ours.config)
    original = ours.state_dict()
    assert back.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(back[key], value), key
    round_trip = model_config_from_hf(hf_config_dict(ours.config))
    assert round_trip == replace(ours.config, bias=True, d_ff=128, multiple_of=round_trip.multiple_of)


def test_a_tied_gpt2_is_saved_and_read_in_gpt2s_canonical_unprefixed_layout() -> None:
    ours = _scramble(tiny_model(bias=True, **GPT2_BLOCK))
    saved = hf_checkpoint(ours)
    assert "wte.weight" in saved and "h.1.mlp.c_proj.bias" in saved and "lm_head.weight" not in saved
    assert not any(k.startswith("transformer.") for k in saved)
    mask = {"h.0.attn.bias": torch.ones(1, 1, 8, 8)}  # older GPT-2 checkpoints keep the causal mask buffer
    back = from_hf_state_dict({**saved, **mask}, ours.config)
    for key, value in ours.state_dict().items():
        assert torch.equal(back[key], value), key
    untied = tiny_model(tie_embeddings=False, **GPT2_BLOCK)
    assert "transformer.wte.weight" in hf_checkpoint(untied) and "lm_head.weight" in hf_checkpoint(untied)


def test_a_bias_free_config_refuses_gpt2_weights_with_biases() -> None:
    sd = to_hf_state_dict(_scramble(tiny_model(bias=True, **GPT2_BLOCK)))
    with pytest.raises(UsageError, match=r"transformer\.h\.0\.ln_1\.bias is not zero"):
        from_hf_state_dict(sd, tiny_config(bias=False, **GPT2_BLOCK))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"position": "alibi"}, "position='alibi'"),
        ({"position": "alibi", "norm": "layernorm", "ffn": "gelu"}, "position='alibi'"),
        ({"position": "nope"}, "position='nope'"),
        ({"norm_position": "post"}, "norm_position='post'"),
        ({"norm": "none"}, "norm='none'"),
        ({"ffn": "dual"}, "ffn='dual'"),
        ({**GPT2_BLOCK, "n_kv_heads": 2}, "n_kv_heads=2"),
        ({**GPT2_BLOCK, "norm": "rmsnorm"}, "norm='rmsnorm'"),
    ],
)
def test_settings_without_an_exact_hf_equivalent_are_refused_by_name(overrides: dict, named: str) -> None:
    with pytest.raises(UsageError) as caught:
        hf_target(tiny_config(**overrides))
    assert f"model.{named} has no Hugging Face equivalent" in caught.value.message
    assert (
        "LlamaForCausalLM: rmsnorm" in caught.value.hint and "GPT2LMHeadModel: layernorm" in caught.value.hint
    )
    if "alibi" in named:  # why MPT, transformers' ALiBi model, is no target
        assert "erf" in caught.value.message


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}}, "rope_parameters"),
        ({"sliding_window": 16}, "sliding_window"),
        ({"attention_bias": True, "mlp_bias": False}, "attention_bias"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"head_dim": 4}, "head_dim"),
        ({"model_type": "qwen2"}, "model_type"),
    ],
)
def test_llama_configs_alm_cannot_express_are_refused_by_field(change: dict, named: str) -> None:
    config = {**hf_config_dict(tiny_config()), **change}
    with pytest.raises(UsageError, match=f"config.json {named}="):
        model_config_from_hf(config)


def test_gpt2_with_erf_gelu_is_refused_by_field() -> None:
    config = {**hf_config_dict(tiny_config(**GPT2_BLOCK)), "activation_function": "gelu"}
    with pytest.raises(UsageError, match=r"config\.json activation_function='gelu'"):
        model_config_from_hf(config)


def test_weights_alm_has_no_place_for_are_refused() -> None:
    ours = tiny_model()
    sd = {**to_hf_state_dict(ours), "model.layers.0.self_attn.q_norm.weight": torch.ones(8)}
    with pytest.raises(UsageError, match=r"no place for: model\.layers\.0\.self_attn\.q_norm\.weight"):
        from_hf_state_dict(sd, ours.config)
