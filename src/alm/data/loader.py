"""Read packed shards as batches: `PackedDataset` (memmapped, validated), `BatchSampler` (resumable random
windows) and `iter_eval_batches` (deterministic windows).

A split is one logical token stream: its shards are concatenated, and a window of seq_len + 1 tokens may cross
a shard boundary (the loader stitches the two pieces), so no tokens are wasted at shard edges. Windows start at
`offset + k * seq_len`: consecutive windows overlap by the one token that is the last target of one and the first
input of the next. Each epoch draws a fresh offset in [0, seq_len) and a fresh permutation of the windows from
`np.random.default_rng([seed, epoch])`, so the batch order is a pure function of (seed, epoch, position) and
windows differ between epochs. Only the batch being returned is ever copied out of the memmaps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alm.data.shards import TOKEN_DTYPE, open_split, read_manifest
from alm.errors import DataError


@dataclass
class PackedDataset:
    """One split of a packed dataset; `tokens` are read-only memmaps, one per shard."""

    path: Path
    split: str
    manifest: dict[str, Any]
    shards: list[np.memmap]
    offsets: np.ndarray = field(repr=False)  # offsets[i] = index of shard i's first token in the split

    @classmethod
    def open(
        cls, packed_dir: str | Path, split: str = "train", verify_checksums: bool = False
    ) -> PackedDataset:
        """Memmap a split after checking the manifest, every shard's header and size (and sha256 if asked)."""
        packed_dir = Path(packed_dir)
        manifest = read_manifest(packed_dir)
        shards = open_split(packed_dir, manifest, split, verify_checksums=verify_checksums)
        counts = [s.size for s in shards]
        offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        return cls(packed_dir, split, manifest, shards, offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])

    @property
    def tokenizer_fingerprint(self) -> str:
        return str(self.manifest["tokenizer_fingerprint"])

    @property
    def source_bytes(self) -> int:
        """UTF-8 bytes of the text behind this split's tokens (bits per byte = nats * tokens / bytes / ln 2)."""
        return int(self.manifest["splits"][self.split]["source_bytes"])

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) of the split as a uint32 array (a copy; may span shards)."""
        if start < 0 or start + length > self.num_tokens:
            raise IndexError(f"tokens [{start}, {start + length}) outside 0..{self.num_tokens}")
        shard = int(np.searchsorted(self.offsets, start, side="right")) - 1
        local = start - int(self.offsets[shard])
        first = self.shards[shard][local : local + length]
        if first.size == length:
            return np.array(first, dtype=TOKEN_DTYPE)
        out = np.empty(length, dtype=TOKEN_DTYPE)
        filled = 0
        while filled < length:
            piece = self.shards[shard][local : local + length - filled]
            out[filled : filled + piece.size] = piece
            filled += piece.size
            shard, local = shard + 1, 0
        return out


def _require_windows(ds: PackedDataset, seq_len: int) -> None:
    if seq_len < 1:
        raise DataError(f"seq_len must be positive, got {seq_len}")
    if ds.num_tokens < seq_len + 1:
        raise DataError(
            f"the {ds.split} split of {ds.path} has {ds.num_tokens} tokens, fewer than seq_len + 1 = "
            f"{seq_len + 1}",
            hint="use a shorter seq_len or a larger corpus",
        )


def _to_batch(windows: np.ndarray, ds: PackedDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T + 1] uint32 windows -> (inputs, targets) int64 [B, T] each (only the batch is widened).

    Ids are range-checked here, per batch (cheap), so a corrupt payload is a clear error, not an IndexError
    deep in the embedding mid-training.
    """
    top = int(windows.max()) if windows.size else 0
    if top >= ds.vocab_size:
        raise DataError(
            f"the {ds.split} split of {ds.path} holds token id {top}, outside its {ds.vocab_size}-token "
            "vocabulary (a corrupt shard)",
            hint=f"find it with `alm data info {ds.path} --verify`; rebuild it with `alm pack --force`",
        )
    wide = torch.from_numpy(windows.astype(np.int64))
    return wide[:, :-1].contiguous(), wide[:, 1:].contiguous()


class BatchSampler:
    """Random training batches whose order is a pure function of (seed, epoch, position); resumable exactly.

    With world_size > 1 every rank walks the same global sequence and takes its own slice of each global batch
    of batch_size * world_size windows, so ranks never see the same window in a step.
    """

    def __init__(
        self,
        ds: PackedDataset,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
    ):
        _require_windows(ds, seq_len)
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        self.ds, self.batch_size, self.seq_len, self.seed = ds, batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # windows of this epoch's permutation already consumed (by all ranks)
        self._plan: tuple[int, int, np.ndarray] | None = None  # (epoch, offset, permutation)

    def _epoch_plan(self, epoch: int) -> tuple[int, np.ndarray]:
        if self._plan is None or self._plan[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            offset = int(rng.integers(self.seq_len))
            n_windows = (self.ds.num_tokens - 1 - offset) // self.seq_len
            if n_windows < 1:
                offset, n_windows = 0, (self.ds.num_tokens - 1) // self.seq_len
            self._plan = (epoch, offset, rng.permutation(n_windows))
        return self._plan[1], self._plan[2]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (inputs, targets) pair, int64 [batch_size, seq_len] on the CPU."""
        windows = np.empty((self.batch_size, self.seq_len + 1), dtype=TOKEN_DTYPE)
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        for i in range(self.batch_size * self.world_size):
            offset, perm = self._epoch_plan(self.epoch)
            if self.position >= perm.size:
                self.epoch, self.position = self.epoch + 1, 0
                offset, perm = self._epoch_plan(self.epoch)
            if i in mine:
                start = offset + int(perm[self.position]) * self.seq_len
                windows[i - mine.start] = self.ds.read(start, self.seq_len + 1)
            self.position += 1
        return _to_batch(windows, self.ds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "seq_len": self.seq_len,
            "num_tokens": self.ds.num_tokens,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` left off; refuses a state from another dataset or window length."""
        for key, mine in (("seq_len", self.seq_len), ("num_tokens", self.ds.num_tokens)):
            if key in state and state[key] != mine:
                raise DataError(
                    f"cannot resume the data order: saved {key}={state[key]}, now {mine}",
                    hint="resume with the same dataset and seq_len, or start a new run",
                )
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


def iter_eval_batches(
    ds: PackedDataset, batch_size: int, seq_len: int, max_batches: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Windows from the start of the split in order; the last batch may be smaller. Always the same batches."""
    _require_windows(ds, seq_len)
    n_windows = (ds.num_tokens - 1) // seq_len
    firsts = range(0, n_windows, batch_size)
    for first in firsts if max_batches is None else firsts[:max_batches]:
        count = min(batch_size, n_windows - first)
        span = ds.read(first * seq_len, count * seq_len + 1)
        idx = np.arange(count)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
        yield _to_batch(span[idx], ds)


def check_compatible(ds: PackedDataset, vocab_size: int, tokenizer_fingerprint: str | None = None) -> None:
    """Refuse a model/tokenizer that does not match the shards (the model's vocab may be padded larger)."""
    if ds.vocab_size > vocab_size:
        raise DataError(
            f"{ds.path} was packed with a {ds.vocab_size}-token vocabulary but the model has only "
            f"{vocab_size} embeddings",
            hint="set model.vocab_size to at least the tokenizer's size",
        )
    if tokenizer_fingerprint is not None and tokenizer_fingerprint != ds.tokenizer_fingerprint:
        raise DataError(
            f"{ds.path} was packed with tokenizer {ds.tokenizer_fingerprint[:12]}, not "
            f"{tokenizer_fingerprint[:12]}",
            hint="rebuild with `alm pack --force` or use the matching tokenizer",
        )


__all__ = ["BatchSampler", "PackedDataset", "check_compatible", "iter_eval_batches"]
