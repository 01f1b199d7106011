"""Cross-entropy fused with the LM head, computed a chunk of tokens at a time.

The plain route, `F.cross_entropy(head(x), targets)`, materialises the [tokens, vocab] logits (262 MB for 2,048
tokens at vocab 32k), their log-softmax, a zero-filled one-hot gradient and the log-softmax gradient. Here each
chunk of rows goes logits → log-softmax → softmax − one-hot (in place) → both matmul gradients, so the big
tensor is never whole, takes fewer passes over memory, and its gradients are ready when backward asks (the same
idea as Liger-Kernel's fused linear cross-entropy). On a 2-core CPU, head + loss take 15–35% less time (vocab
32k and 4k), which is most of what our training step gains over transformers' (see docs/BENCHMARKS.md).

The gradients are computed during the forward, so this is for training (grad enabled); evaluation under
`torch.no_grad()` takes the plain route.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

CHUNK_ROWS = 256  # ~32 MB of fp32 logits per chunk at vocab 32k; measured best of 64..1024 on CPU
MAX_COMPILED_CHUNKS = 16  # torch.compile unrolls the chunk loop: bound the graph it has to compile


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        chunk_rows: int,
    ) -> torch.Tensor:
        # Under autocast the matmuls run in the autocast dtype and the softmax in fp32, as F.linear +
        # F.cross_entropy would; autocast itself is off in here so every dtype below is explicit.
        device_type = x.device.type
        compute_dtype = (
            torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
        )
        with torch.autocast(device_type, enabled=False):
            w = weight.to(compute_dtype)
            xs = x.to(compute_dtype)
            valid = targets != ignore_index
            safe_targets = targets.masked_fill(~valid, 0).unsqueeze(1)
            minus_one = torch.full((min(chunk_rows, len(targets)), 1), -1.0, device=x.device)
            loss = torch.zeros((), dtype=torch.float32, device=x.device)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
            grad_x_chunks = []
            for start in range(0, xs.shape[0], chunk_rows):
                rows = slice(start, start + chunk_rows)
                xc, tc, keep = xs[rows], safe_targets[rows], valid[rows].unsqueeze(1)
                logp = torch.log_softmax((xc @ w.t()).float(), dim=-1)
                loss -= logp.gather(1, tc).masked_fill(~keep, 0.0).sum()
                grad = logp.exp_()  # d(−log p_target)/d logits = softmax − one-hot, built in place
                grad.scatter_add_(1, tc, minus_one[: len(tc)])
                grad = grad.to(compute_dtype)
                # Ignored rows are masked on the [rows, d_model] side, never on the [rows, vocab] side.
                grad_x_chunks.append((grad @ w) * keep)
                if compute_dtype == torch.float32:
                    grad_w.addmm_(grad.t(), xc * keep)
                else:  # accumulate low-precision chunk products in fp32
                    grad_w += (grad.t() @ (xc * keep)).float()
            grad_x = torch.cat(grad_x_chunks)
        count = valid.sum()
        ctx.save_for_backward(grad_x, grad_w, count)
        ctx.dtypes = (x.dtype, weight.dtype)
        return loss / count  # NaN when every target is ignored, as F.cross_entropy

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        grad_x, grad_w, count = ctx.saved_tensors
        x_dtype, w_dtype = ctx.dtypes
        scale = grad_loss / count
        return (grad_x * scale).to(x_dtype), (grad_w * scale).to(w_dtype), None, None, None


def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = -100,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean cross-entropy of `x @ weight.T` against targets != ignore_index, the logits or None); x [N, D].

    Fused and chunked when gradients are needed (no logits are stored: None); the plain two-op route, which
    returns its logits, otherwise."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        if torch.compiler.is_compiling():
            chunk_rows = max(chunk_rows, math.ceil(x.shape[0] / MAX_COMPILED_CHUNKS))
        return _FusedLinearCrossEntropy.apply(x, weight, targets, ignore_index, chunk_rows), None
    logits = F.linear(x, weight)
    return F.cross_entropy(logits, targets, ignore_index=ignore_index), logits
