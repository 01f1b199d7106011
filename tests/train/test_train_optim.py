"""Parameter groups (what gets weight decay) and gradient clipping on the real model."""

from __future__ import annotations

import torch

from alm.model import ModelConfig, Transformer
from alm.train.config import TrainConfig
from alm.train.optim import build_optimizer, clip_grad_norm, param_groups


def _model(**kw) -> Transformer:
    return Transformer(ModelConfig(vocab_size=300, d_model=64, n_layers=2, n_heads=4, max_seq_len=64, **kw))


def test_no_decay_on_norms_biases_and_embeddings() -> None:
    model = _model(bias=True, position="learned", tie_embeddings=False)
    groups = {g["name"]: g for g in param_groups(model, 0.1)}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["decay"]["params"]}
    plain = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    assert all(model.get_parameter(n).ndim >= 2 for n in decayed)
    assert any("emb" in n for n in plain), plain
    assert not any("emb" in n or "norm" in n or n.endswith(".bias") for n in decayed)
    assert any(n.endswith(".bias") for n in plain) and any("norm" in n for n in plain)
    assert decayed | plain == set(names.values())  # every parameter exactly once


def test_tied_head_is_counted_once() -> None:
    model = _model(tie_embeddings=True)
    groups = param_groups(model, 0.1)
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.parameters()))


def test_cpu_uses_the_fused_kernel_and_optimizer_steps() -> None:
    model = _model()
    opt = build_optimizer(model, TrainConfig(lr=1e-3))
    assert opt.defaults["fused"] is True  # on every device: torch >= 2.6 has the CPU, CUDA and MPS kernels
    x = torch.randint(0, 300, (2, 16))
    model(x, targets=x).loss.backward()
    before = model.tok_emb.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.tok_emb.weight)


def test_clip_returns_pre_clip_norm() -> None:
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    norm = clip_grad_norm([p], max_norm=1.0)
    assert norm.item() == 5.0
    assert abs(p.grad.norm().item() - 1.0) < 1e-5
    p.grad = torch.tensor([3.0, 4.0, 0.0, 0.0])
    assert clip_grad_norm([p], max_norm=0.0).item() == 5.0
    assert p.grad.tolist() == [3.0, 4.0, 0.0, 0.0]  # 0 disables clipping
