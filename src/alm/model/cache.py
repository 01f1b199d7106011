"""KV cache: keys and values for every layer, preallocated once, filled in place as decoding advances."""

from __future__ import annotations

import torch

from alm.errors import UsageError


class KVCache:
    """Per layer, keys and values shaped [batch, n_kv_heads, max_len, head_dim]; the first `length` positions
    are filled. Nothing grows per step: a forward pass writes its T new positions and then advances `length`.
    Keys are stored after RoPE, so positions are baked in and never recomputed."""

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)]
        self.batch_size = batch_size
        self.max_len = max_len
        self.length = 0  # a host int: reading it never syncs the device

    @property
    def dtype(self) -> torch.dtype:
        return self.keys[0].dtype

    @property
    def device(self) -> torch.device:
        return self.keys[0].device

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def check_fits(self, batch_size: int, new_tokens: int) -> None:
        if batch_size != self.batch_size:
            raise UsageError(
                f"batch of {batch_size} sequences does not match the KV cache's batch size {self.batch_size}",
                hint="create the cache with model.new_cache(batch_size) for this batch",
            )
        if self.length + new_tokens > self.max_len:
            raise UsageError(
                f"KV cache is full: {self.length} cached + {new_tokens} new tokens > its max_len {self.max_len}",
                hint="create a larger cache (new_cache(max_len=...)) or reset() it",
            )

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, n_kv_heads, T, head_dim] at the current length; return all keys/values so far."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length : end] = k
        self.values[layer][:, :, self.length : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as filled (the model calls this once all layers have written them)."""
        self.length += n

    def reset(self) -> None:
        """Forget the contents; the memory stays allocated for the next sequence."""
        self.length = 0
