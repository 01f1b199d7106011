"""What must hold on every device alm runs on, checked against references computed on the CPU in float64: the
forward, causality, the KV cache, the transformers export, greedy decoding (eager, and the static-shape step
that is a CUDA graph on CUDA), seeded sampling, and training under the device's precision plan (eager and
compiled). On the CPU (CI) these run as they are; `make test-device` runs them on CUDA or MPS."""

from __future__ import annotations

import copy

import pytest
import torch

from alm.device import choose_precision, make_grad_scaler, probe_capabilities
from alm.model import Transformer
from alm.sample import Engine, SamplingConfig
from alm.train.compiled import compile_for_training
from alm.train.step import lm_loss, train_step
from testkit.models import tiny_model

VOCAB = 64
VARIANTS = {
    "rope-gqa": {},  # tiny_model is GQA (2 KV heads for 4 heads) with RoPE
    "alibi-mqa": {"position": "alibi", "n_kv_heads": 1},
    "learned": {"position": "learned"},
    "dual-ffn": {"ffn": "dual"},
    "gelu-layernorm": {"ffn": "gelu", "norm": "layernorm", "bias": True},
}
PROMPTS = [[3, 14, 15], [9, 2, 6, 5, 35], [1]]
GREEDY = SamplingConfig(greedy=True, max_new_tokens=24)
# fp32 on an accelerator against the float64 reference: reductions are ordered differently, nothing more.
FP32_TOLERANCE = {"atol": 2e-4, "rtol": 1e-4}


def _tokens(rows: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))


def _on(model: Transformer, device: torch.device, dtype: torch.dtype = torch.float32) -> Transformer:
    return copy.deepcopy(model).to(device=device, dtype=dtype)


def _generate(engine: Engine, prompts: list[list[int]], cfg: SamplingConfig) -> list[list[int]]:
    sequences = [engine.submit(p, cfg) for p in prompts]
    while engine.busy:
        engine.step()
    return [s.tokens for s in sequences]


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_the_forward_matches_the_float64_reference(device, variant) -> None:
    model = tiny_model(VOCAB, **VARIANTS[variant])
    idx = _tokens(3, 40, seed=0)
    expected = _on(model, torch.device("cpu"), torch.float64)(idx).logits
    got = _on(model, device)(idx.to(device)).logits
    assert expected.std() > 1.0  # logits that carry signal, so a mix-up shows
    torch.testing.assert_close(got.cpu().double(), expected, **FP32_TOLERANCE)


@torch.no_grad()
def test_no_position_sees_a_later_token(device) -> None:
    model = _on(tiny_model(VOCAB), device)
    idx = _tokens(2, 32, seed=1).to(device)
    changed = idx.clone()
    changed[:, 20:] = (changed[:, 20:] + 1) % VOCAB
    before, after = model(idx).logits, model(changed).logits
    assert torch.equal(before[:, :20], after[:, :20])
    assert not torch.allclose(before[:, 20:], after[:, 20:])


@pytest.mark.parametrize("variant", VARIANTS)
@torch.no_grad()
def test_cached_decoding_equals_the_full_forward(device, variant) -> None:
    model = _on(tiny_model(VOCAB, **VARIANTS[variant]), device)
    idx = _tokens(3, 20, seed=2).to(device)
    full = model(idx).logits
    cache = model.new_cache(3)
    pieces = [model(idx[:, :6], cache=cache).logits]  # prefill, then a token per step
    pieces += [model(idx[:, t : t + 1], cache=cache).logits for t in range(6, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_the_transformers_export_computes_our_logits(device) -> None:
    pytest.importorskip("transformers")
    from alm.model.hf import to_hf

    model = _on(tiny_model(VOCAB), device)
    idx = _tokens(2, 33, seed=3).to(device)
    torch.testing.assert_close(to_hf(model).eval()(idx).logits, model(idx).logits, atol=1e-5, rtol=1e-5)


def test_greedy_tokens_equal_the_float64_reference(device) -> None:
    """Three prompts over two slots: the third joins when the first finishes, at another length."""
    model = tiny_model(VOCAB)
    expected = _generate(
        Engine(_on(model, torch.device("cpu"), torch.float64), device="cpu", slots=2), PROMPTS, GREEDY
    )
    got = _generate(Engine(_on(model, device), device=device, slots=2), PROMPTS, GREEDY)
    assert got == expected


def test_the_static_shape_step_generates_the_eager_tokens(device) -> None:
    """The step CUDA decoding compiles (`compile_cuda_step`: every shape static, attention over the whole cache,
    the cache at fixed addresses, guards skipped once warm) gives the eager tokens, across a slot that changes
    occupant and a context that slides, with no recompilation. On CUDA it is captured as a CUDA graph; on the
    CPU Inductor compiles the same graph without capture, which checks all but the capture."""
    import torch._dynamo.utils

    model = _on(tiny_model(VOCAB, max_seq_len=32), device)
    cfg = GREEDY.replace(max_new_tokens=40)  # past the 32-token context: the long sequences slide
    engine = Engine(model, device=device, slots=2, compile="on")
    engine.decoder.static_shapes = True  # what a CUDA decoder is already
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    got = _generate(engine, PROMPTS, cfg)
    assert engine.decoder.compiled, engine.decoder.compile_note
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs == 1
    assert got == _generate(Engine(model, device=device, slots=2), PROMPTS, cfg)


def test_seeded_sampling_repeats_on_the_device(device) -> None:
    model = _on(tiny_model(VOCAB), device)
    sampled = SamplingConfig(temperature=1.0, top_k=20, top_p=0.9, max_new_tokens=24, seed=7)
    first = _generate(Engine(model, device=device, slots=2), PROMPTS, sampled)
    assert _generate(Engine(model, device=device, slots=2), PROMPTS, sampled) == first
    other = _generate(Engine(model, device=device, slots=2), PROMPTS, sampled.replace(seed=8))
    assert other != first


def _train(model: torch.nn.Module, device: torch.device, steps: int) -> list[float]:
    """`steps` optimizer steps on one fixed batch under the device's precision plan; the losses."""
    plan = choose_precision(probe_capabilities(device))
    seq = _tokens(4, 33, seed=4).to(device)
    batch = (seq[:, :-1], seq[:, 1:])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    scaler = make_grad_scaler(plan)
    losses = []
    for _ in range(steps):
        result = train_step(model, [batch], lm_loss, optimizer, precision=plan, scaler=scaler, grad_clip=1.0)
        assert not result.skipped and result.weights_finite
        losses.append(result.loss.item())
    return losses


def test_training_under_the_precision_plan_learns(device) -> None:
    """bf16 autocast on CUDA (fp16 with a GradScaler where there is no bf16), fp32 on the CPU: the batch is
    learnt, and the weights the optimizer updates stay fp32."""
    torch.manual_seed(0)
    model = _on(tiny_model(VOCAB), device).train()
    losses = _train(model, device, steps=40)
    assert losses[-1] < 0.25 * losses[0]
    assert all(p.dtype == torch.float32 and p.device.type == device.type for p in model.parameters())


def test_compiled_training_matches_eager(device) -> None:
    """`train.compile` on the device: the losses of a compiled model follow the eager ones (Inductor reorders
    reductions, and bf16 rounds differently in fused kernels)."""
    if device.type == "cpu":
        pytest.skip("on the CPU: tests/train/test_train_compile.py (through the trainer)")
    plan = choose_precision(probe_capabilities(device))
    model = tiny_model(VOCAB).train()
    eager = _train(_on(model, device), device, steps=5)
    compiled, why = compile_for_training(_on(model, device), device)
    assert why is None, why
    tolerance = 1e-4 if plan.precision == "fp32" else 3e-2
    torch.testing.assert_close(_train(compiled, device, steps=5), eager, rtol=tolerance, atol=0)
