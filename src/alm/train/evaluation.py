"""Validation during training: loss, perplexity and bits per byte on a fixed, deterministic val subset."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from alm.device import autocast_context


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy per token, in nats
    tokens: int
    bytes_per_token: float | None

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))  # exp overflows float64 past ~709

    @property
    def bits_per_byte(self) -> float | None:
        """bpb = loss_nats × tokens / (ln 2 × bytes): comparable across tokenizers, unlike loss per token."""
        if not self.bytes_per_token:
            return None
        return self.loss / (math.log(2) * self.bytes_per_token)


def bytes_per_token(dataset: Any) -> float | None:
    """Source UTF-8 bytes per token of a split, from its manifest (None when the manifest does not say)."""
    source_bytes, num_tokens = getattr(dataset, "source_bytes", None), getattr(dataset, "num_tokens", 0)
    return source_bytes / num_tokens if source_bytes and num_tokens else None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Any,
    *,
    device: torch.device,
    plan: Any,
    bytes_per_token: float | None,
) -> EvalResult | None:
    """Token-weighted mean loss over `batches` ((x, y) pairs); None when there are none (val split too small).

    The sum stays on the device and is read once at the end. The model is put back in train mode afterwards.
    """
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float32)
    count = torch.zeros((), device=device, dtype=torch.int64)
    try:
        for x, y in batches:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with autocast_context(plan):
                out = model(x, targets=y)
            n = (y != -100).sum()
            total += out.loss.float() * n
            count += n
    finally:
        model.train(was_training)
    tokens = int(count)
    if tokens == 0:
        return None
    return EvalResult(loss=float(total) / tokens, tokens=tokens, bytes_per_token=bytes_per_token)
