"""KV cache: keys and values for every layer, preallocated once, filled in place as decoding advances."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from alm.errors import UsageError


class CacheWriter(Protocol):
    """What attention asks of a cache: store this layer's new keys/values, return every key/value to attend to."""

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class KVCache:
    """Per layer, keys and values shaped [batch, n_kv_heads, max_len, head_dim]; the first `length` positions
    are filled. Nothing grows per step: a forward pass writes its T new positions and then advances `length`.
    Keys are stored after RoPE, so positions are baked in and never recomputed.

    Every row shares `length` here. A batch whose rows sit at their own lengths (batched generation) keeps the
    lengths itself and uses `row(i)` to prefill one row and `at(positions, n_keys)` for a decode step."""

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
        self._adopt(
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)],
            [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layers)],
        )

    @classmethod
    def of(cls, keys: list[torch.Tensor], values: list[torch.Tensor]) -> KVCache:
        """A cache (length 0) over existing per-layer tensors, e.g. those a compiled decode step receives."""
        cache = cls.__new__(cls)
        cache._adopt(keys, values)
        return cache

    def _adopt(self, keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        self.keys, self.values = keys, values
        self.batch_size, self.max_len = keys[0].shape[0], keys[0].shape[2]
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

    def row(self, i: int) -> KVCache:
        """Row i as a cache of its own (batch 1, length 0) sharing this cache's memory: prefilling it writes the
        row in place, so one sequence of a batch can (re)start while the others keep their keys."""
        return self.rows(i, i + 1)

    def rows(self, start: int, stop: int) -> KVCache:
        """Rows [start, stop) as a cache of their own (length 0) sharing this cache's memory: several
        neighbouring sequences prefill together, in one forward (right-padded to the longest)."""
        return KVCache.of([k[start:stop] for k in self.keys], [v[start:stop] for v in self.values])

    def copy_row(self, source: int, target: int, length: int) -> None:
        """Give row `target` the first `length` positions of row `source` (the same prompt twice)."""
        for t in (*self.keys, *self.values):
            t[target, :, :length] = t[source, :, :length]

    def at(self, positions: torch.Tensor, n_keys: int) -> RowStep:
        """A one-token decode step in which row b writes at positions[b] and reads keys [0, n_keys)."""
        return RowStep(self.keys, self.values, positions, n_keys)


class RowStep(NamedTuple):
    """The cache seen by one decode step of rows at their own positions (static shapes, no host reads).

    Row b stores its new key/value at positions[b]; attention reads the first n_keys positions of every row, and
    the step's mask hides each row's keys after its own position (stale or another sequence's leftovers)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    positions: torch.Tensor  # int64 [B], each < max_len
    n_keys: int

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [B, n_kv_heads, 1, head_dim] -> every row's keys/values [B, n_kv_heads, n_keys, head_dim]."""
        rows = torch.arange(k.shape[0], device=k.device)
        keys, values = self.keys[layer], self.values[layer]
        # Advanced indices around a slice select [B, n_kv_heads, head_dim]; an index_put does not cast, so the
        # new entries take the cache's dtype (under autocast they arrive in the compute dtype).
        keys[rows, :, self.positions] = k[:, :, 0].to(keys.dtype)
        values[rows, :, self.positions] = v[:, :, 0].to(values.dtype)
        return keys[:, :, : self.n_keys], values[:, :, : self.n_keys]
