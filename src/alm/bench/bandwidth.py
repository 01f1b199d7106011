"""Memory bandwidth of this machine, measured in the same run as the benchmark it bounds.

Decoding one token reads every weight once, so `bandwidth ÷ bytes read per token` is the fastest a decoder can go
(the roofline); the read figure is the one that applies. Measured with torch itself, with the threads torch uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

# Well past any last-level cache (32 MB on the CPUs we run on), small enough to allocate anywhere.
DEFAULT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Bandwidth:
    read_gb_s: float  # a full pass summing a large tensor
    copy_gb_s: float  # a large copy, counting the bytes read and written
    nbytes: int

    def roofline_tok_s(self, bytes_per_token: float) -> float:
        return self.read_gb_s * 1e9 / bytes_per_token


def measure_bandwidth(device: torch.device, nbytes: int = DEFAULT_BYTES, repeats: int = 5) -> Bandwidth:
    """Best-of-`repeats` read and copy bandwidth over `nbytes` of fp32 on `device`."""
    from alm.device import synchronize

    n = nbytes // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)

    def best(fn) -> float:
        fn()  # first touch: page faults, allocator
        seconds = float("inf")
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            seconds = min(seconds, time.perf_counter() - start)
        return seconds

    read = best(lambda: src.sum())
    copy = best(lambda: dst.copy_(src))
    return Bandwidth(read_gb_s=4 * n / read / 1e9, copy_gb_s=8 * n / copy / 1e9, nbytes=4 * n)


def decode_bytes_per_token(model: Transformer, context: int) -> int:
    """Bytes a one-token decode step reads: every linear weight (the LM head included, tied or not) and the keys
    and values of `context` cached positions. Embedding lookups and activations are negligible beside them."""
    weights = {
        id(m.weight): m.weight.numel() * m.weight.element_size()
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    }
    cfg = model.config
    element = next(model.parameters()).element_size()
    kv = 2 * cfg.n_layers * cfg.kv_heads * cfg.head_dim * element * context
    return sum(weights.values()) + kv
