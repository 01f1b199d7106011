"""Model-level properties: initial loss, GQA grouping, the dual-FFN router, parameter counts, outputs."""

from __future__ import annotations

import math

import pytest
import torch
from model_testing import VARIANTS, tiny_config, tiny_model

from alm.errors import UsageError
from alm.model import Transformer
from alm.model.ffn import DualFFN, SwiGLU
from alm.model.info import count_params, model_summary
from alm.model.init import is_residual_projection


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("d_model", [64, 256])
def test_initial_loss_on_random_tokens_is_about_ln_vocab(tied: bool, d_model: int) -> None:
    # The ancestor tied a default-initialised embedding (std 1) to the head: initial loss ~353, not ln(V).
    model = tiny_model(vocab_size=1000, d_model=d_model, n_heads=4, n_layers=4, tie_embeddings=tied)
    g = torch.Generator().manual_seed(0)
    idx, targets = (torch.randint(0, 1000, (4, 48), generator=g) for _ in range(2))
    with torch.no_grad():
        loss = model(idx, targets).loss.item()
    assert abs(loss - math.log(1000)) < 0.1 * math.log(1000), loss


def test_loss_ignores_minus_100_targets_and_excludes_aux(make_model) -> None:
    model = make_model(ffn="dual")
    idx = torch.randint(0, 61, (2, 10))
    targets = torch.randint(0, 61, (2, 10))
    out = model(idx, targets)
    masked = targets.clone()
    masked[:, 5:] = -100
    logits = model.head(out.hidden)  # a training forward fuses the head into the loss: logits on request
    expected = torch.nn.functional.cross_entropy(logits[:, :5].reshape(-1, 61), targets[:, :5].reshape(-1))
    torch.testing.assert_close(model(idx, masked).loss, expected)
    assert out.aux_loss.ndim == 0 and out.aux_loss.item() > 0
    plain = make_model()(idx, targets)
    assert plain.aux_loss.item() == 0.0 and plain.router_stats is None


def test_gqa_with_as_many_kv_heads_as_heads_is_mha(make_model) -> None:
    mha, gqa = make_model(seed=1), make_model(seed=1, n_kv_heads=4)
    idx = torch.randint(0, 61, (2, 12))
    torch.testing.assert_close(gqa(idx).logits, mha(idx).logits, atol=0, rtol=0)


@torch.no_grad()
def test_gqa_equals_mha_with_each_kv_head_repeated_for_its_group(make_model) -> None:
    gqa = make_model(seed=2, n_kv_heads=2)  # 4 query heads, 2 KV heads: heads 0,1 → kv 0; heads 2,3 → kv 1
    mha = make_model(seed=3)
    sd = gqa.state_dict()
    hd, H, KV = 8, 4, 2
    for i in range(gqa.config.n_layers):
        key = f"layers.{i}.attn.qkv.weight"
        q, k, v = sd[key].split([H * hd, KV * hd, KV * hd])

        def repeat(w: torch.Tensor) -> torch.Tensor:
            return w.view(KV, hd, -1).repeat_interleave(H // KV, dim=0).reshape(H * hd, -1)

        sd[key] = torch.cat([q, repeat(k), repeat(v)])
    mha.load_state_dict(sd)
    idx = torch.randint(0, 61, (2, 12))
    torch.testing.assert_close(mha(idx).logits, gqa(idx).logits, atol=1e-5, rtol=1e-5)


def test_router_gets_a_gradient_from_the_language_modelling_loss_alone(make_model) -> None:
    model = make_model(ffn="dual").train()
    idx, targets = torch.randint(0, 61, (4, 16)), torch.randint(0, 61, (4, 16))
    model(idx, targets).loss.backward()  # no aux loss: the gradient must come through the gate
    for layer in model.layers:
        grad = layer.ffn.router.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_aux_loss_alone_also_trains_the_router(make_model) -> None:
    model = make_model(ffn="dual", router={"aux_loss_weight": 1.0, "z_loss_weight": 0.1}).train()
    model(torch.randint(0, 61, (4, 16))).aux_loss.backward()
    assert all(layer.ffn.router.weight.grad.abs().sum() > 0 for layer in model.layers)


@torch.no_grad()
@pytest.mark.parametrize("expert", ["small", "large"])
def test_a_one_hot_router_makes_the_dual_ffn_exactly_that_swiglu(expert: str) -> None:
    cfg = tiny_config(ffn="dual")
    torch.manual_seed(0)
    dual = DualFFN(cfg)
    dual.router.weight.zero_()
    dual.router.bias.copy_(torch.tensor([100.0, -100.0] if expert == "small" else [-100.0, 100.0]))
    chosen = getattr(dual, expert)
    single = SwiGLU(cfg.d_model, chosen.down.in_features)
    single.load_state_dict(chosen.state_dict())
    x = torch.randn(3, 9, cfg.d_model)
    y, stats = dual(x)
    torch.testing.assert_close(y, single.mlp(x), atol=0, rtol=0)
    assert stats.frac_large.item() == (1.0 if expert == "large" else 0.0)


@torch.no_grad()
def test_capacity_sends_overflow_to_the_small_expert_per_position() -> None:
    cfg = tiny_config(ffn="dual", router={"capacity_factor": 0.5})  # batch 4 → one large slot per position
    torch.manual_seed(0)
    dual = DualFFN(cfg)
    dual.router.weight.zero_()
    dual.router.bias.copy_(torch.tensor([-5.0, 5.0]))  # every token wants the large expert
    x = torch.randn(4, 6, cfg.d_model)
    y, stats = dual(x)
    assert stats.frac_large.item() == pytest.approx(0.25)
    assert stats.overflow.item() == pytest.approx(0.75)
    # row 0 wins every position (ties go to the lower row); the rest fall back to the small expert
    p_large = torch.sigmoid(torch.tensor(10.0))
    torch.testing.assert_close(y[0], dual.large.mlp(x[0]) * p_large)
    torch.testing.assert_close(y[1:], dual.small.mlp(x[1:]) * (1 - p_large))


def test_residual_projections_are_scaled_by_depth(make_model) -> None:
    model = make_model(n_layers=8, d_model=128, vocab_size=256)
    std = model.config.init_std
    assert model.layers[0].attn.qkv.weight.std().item() == pytest.approx(std, rel=0.1)
    assert model.layers[0].attn.proj.weight.std().item() == pytest.approx(std / math.sqrt(16), rel=0.1)
    assert model.layers[0].ffn.down.weight.std().item() == pytest.approx(std / math.sqrt(16), rel=0.1)


@pytest.mark.parametrize("tied", [True, False])
def test_param_counts_agree_between_model_meta_count_and_summary(tied: bool) -> None:
    cfg = tiny_config(tie_embeddings=tied, position="learned")
    model = Transformer(cfg)
    assert count_params(cfg) == (model.num_params(), model.num_params(exclude_embeddings=True))
    embeddings = cfg.vocab_size * cfg.d_model + cfg.max_seq_len * cfg.d_model
    assert model.num_params() - model.num_params(exclude_embeddings=True) == embeddings
    summary = model_summary(cfg)
    assert summary["params"] == model.num_params()
    kv = summary["kv_cache_bytes_per_token"]
    assert kv["fp32"] == 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * 4 == 2 * kv["bf16"]


def test_logits_to_keep_returns_the_last_positions(make_model) -> None:
    model = make_model()
    idx = torch.randint(0, 61, (2, 10))
    full = model(idx).logits
    torch.testing.assert_close(model(idx, logits_to_keep=1).logits, full[:, -1:])
    at = torch.tensor([3, 9])  # one position per row: right-padded prompts of 4 and 10 tokens
    torch.testing.assert_close(model(idx, logits_at=at).logits, full[torch.arange(2), at].unsqueeze(1))
    with pytest.raises(UsageError, match="not both"):
        model(idx, logits_to_keep=1, logits_at=at)


@pytest.mark.parametrize("variant", ["rope", "alibi-6-heads-gqa", "dual"])
def test_bf16_autocast_trains_and_decodes_with_a_cache_of_either_dtype(variant: str) -> None:
    model = tiny_model(**VARIANTS[variant])
    idx = torch.randint(0, 61, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(idx, idx)
        (out.loss + out.aux_loss).backward()
        assert model.head(out.hidden).dtype == torch.bfloat16 and torch.isfinite(out.loss)
        for cache in (model.new_cache(2, dtype=torch.bfloat16), model.new_cache(2)):
            model(idx[:, :8], cache=cache)
            model(idx[:, 8:11], cache=cache)
            assert model(idx[:, 11:], cache=cache).logits.shape == (2, 1, 61)
            # batched generation: rows at their own positions
            rows = model.decode_step(idx[:, 11], torch.tensor([11, 5]), cache, n_keys=12)
            assert rows.shape == (2, 61) and torch.isfinite(rows).all()


@pytest.mark.parametrize("variant", ["rope", "alibi", "dual", "post-norm"])
def test_a_tiny_model_memorises_a_batch(variant: str) -> None:
    model = tiny_model(**VARIANTS[variant]).train()
    g = torch.Generator().manual_seed(0)
    idx, targets = torch.randint(0, 61, (4, 32), generator=g), torch.randint(0, 61, (4, 32), generator=g)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        out = model(idx, targets)
        (out.loss + out.aux_loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        first = first if first is not None else out.loss.item()
    assert out.loss.item() < 0.5 * first, (first, out.loss.item())


@pytest.mark.parametrize("variant", ["rope", "gelu-layernorm", "dual"])
def test_residual_projections_are_marked_by_the_modules_that_build_them(variant: str) -> None:
    model = tiny_model(**VARIANTS[variant])
    marked = {name for name, module in model.named_modules() if is_residual_projection(module)}
    writes_residual = {f"layers.{i}.attn.proj" for i in range(model.config.n_layers)}
    for i in range(model.config.n_layers):
        experts = ("small.", "large.") if variant == "dual" else ("",)
        writes_residual |= {f"layers.{i}.ffn.{expert}down" for expert in experts}
    assert marked == writes_residual


@pytest.mark.parametrize("variant", ["rope", "gelu-layernorm", "dual"])
def test_every_ffn_returns_its_output_and_its_aux(variant: str) -> None:
    model = tiny_model(**VARIANTS[variant])
    block = model.layers[0]
    assert not hasattr(block, "routed")  # the block does not need to know which FFN it holds
    y, aux = block.ffn(torch.randn(2, 3, model.config.d_model))
    assert y.shape == (2, 3, model.config.d_model)
    assert (aux is not None) == (variant == "dual")


@torch.no_grad()
def test_in_eval_mode_the_capacity_limit_never_couples_the_rows_of_a_batch() -> None:
    # Sampling batches unrelated sequences: a row's output must not depend on what else is in the batch.
    model = tiny_model(**VARIANTS["dual-capacity"])
    for layer in model.layers:
        layer.ffn.router.bias.copy_(torch.tensor([-5.0, 5.0]))  # every token wants the large expert
    idx = torch.randint(0, 61, (4, 9), generator=torch.Generator().manual_seed(0))
    batched = model(idx).logits
    for row in range(4):
        torch.testing.assert_close(batched[row], model(idx[row : row + 1]).logits[0], atol=1e-5, rtol=0)
    model.train()  # training keeps the limit: rows over capacity fall back to the small expert
    assert model(idx).router_stats["overflow"].min() > 0
