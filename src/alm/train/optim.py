"""AdamW with decoupled weight decay on matrices only, and global-norm gradient clipping.

Weight decay pulls weights toward zero; that is regularisation for the large matmul weights but only harm for
norm gains (they would drift from 1), biases and embeddings (rare tokens' rows would decay towards zero between
their updates), so those go in a no-decay group. A tied lm_head shares the embedding tensor and follows it.

Fused AdamW on every device (torch >= 2.6 has the kernel for CUDA, MPS and the CPU): one kernel per step; on the
CPU 5x faster than `foreach` for pico (14 vs 75 ms a step, same result to 1e-8).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from alm.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: decayed (>= 2-D weights outside embeddings) and not decayed (norms, biases, embeddings)."""
    embedding_params = {
        id(p) for module in model.modules() if isinstance(module, nn.Embedding) for p in module.parameters()
    }
    decay, no_decay, seen = [], [], set()
    for _name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if param.ndim >= 2 and id(param) not in embedding_params:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=True,
    )


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Global L2 norm of the gradients *before* clipping (a device tensor, no host sync); clips when max_norm > 0."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(norm, DTensor):  # FSDP2's gradients are shards: their norm is a partial sum over the ranks
        norm = norm.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm
