"""Fine-tuning batches: rendered conversations padded on the right, with targets only where the loss mask is 1.

Padding, not packing: several conversations packed into one row would need an attention mask keeping each from
seeing the others, and the model has only the causal mask. Right padding under causal attention cannot leak: a
token attends only to earlier tokens of its own row, and the pad positions after it have no targets. Rows are
padded to the batch's longest, rounded up to `PAD_MULTIPLE` (few distinct shapes), or to seq_len with
`fixed_length=True` (one shape, for torch.compile or a memory peak known from the first step).

The order is a fresh permutation of the examples per epoch from `np.random.default_rng([seed, epoch])`: a pure
function of (seed, epoch, position), like `alm.data.loader.BatchSampler`, so a run resumes it exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alm.chat.data import Conversation, PreferencePair
from alm.chat.format import render
from alm.errors import DataError

if TYPE_CHECKING:
    from alm.tokenizer import Tokenizer

IGNORE = -100  # a target the loss skips (the model's cross-entropy ignore_index)
PAD_MULTIPLE = 16


@dataclass(frozen=True)
class Example:
    """A rendered conversation: ids int64 [L] and mask bool [L] (mask[i]: ids[i] is a training target)."""

    ids: np.ndarray
    mask: np.ndarray
    line: int = 0

    @property
    def inputs(self) -> int:
        """Positions it occupies in a batch row: every id but the last is an input."""
        return self.ids.size - 1


def tokenize_conversations(
    conversations: Sequence[Conversation], tokenizer: Tokenizer, seq_len: int, *, source: str = "data"
) -> list[Example]:
    """Render each conversation; one longer than seq_len + 1 tokens is a DataError naming `source`:line."""
    examples = []
    for conversation in conversations:
        rendered = render(conversation.messages, tokenizer, train_from=conversation.train_from)
        example = Example(
            np.asarray(rendered.ids, dtype=np.int64), np.asarray(rendered.mask, dtype=bool), conversation.line
        )
        if example.inputs > seq_len:
            raise DataError(
                f"{source}:{conversation.line}: this conversation is {example.ids.size} tokens, more than the "
                f"{seq_len + 1} that fit a context of {seq_len}",
                hint="shorten or split it, remove the line, or fine-tune with a longer seq_len",
            )
        examples.append(example)
    return examples


def tokenize_preferences(
    pairs: Sequence[PreferencePair], tokenizer: Tokenizer, seq_len: int, *, source: str = "data"
) -> list[tuple[Example, Example]]:
    """(chosen, rejected) examples per pair, each training only its completion."""
    flat = tokenize_conversations(
        [c for pair in pairs for c in pair.conversations()], tokenizer, seq_len, source=source
    )
    return list(zip(flat[0::2], flat[1::2], strict=True))


def collate(rows: Sequence[Example], pad_id: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), int64 [len(rows), length]: pad_id after each row's inputs, IGNORE where mask is 0."""
    x = np.full((len(rows), length), pad_id, dtype=np.int64)
    y = np.full((len(rows), length), IGNORE, dtype=np.int64)
    for i, row in enumerate(rows):
        n = row.inputs
        x[i, :n] = row.ids[:-1]
        y[i, :n] = np.where(row.mask[1:], row.ids[1:], IGNORE)
    return torch.from_numpy(x), torch.from_numpy(y)


class ChatBatchSampler:
    """Padded batches of examples in a resumable seeded order, with `next_batch()`, `state_dict()` and
    `load_state_dict()` as `alm.data.loader.BatchSampler` has.

    `items` are examples (fine-tuning) or tuples of examples drawn together (preferences: (chosen, rejected)).
    A batch of tuples is laid out by position in the tuple: rows [0, B) hold every item's first example, rows
    [B, 2B) the second, and so on. With world_size > 1 each rank takes its own slice of every global batch.
    """

    def __init__(
        self,
        items: Sequence[Example] | Sequence[tuple[Example, ...]],
        batch_size: int,
        seq_len: int,
        *,
        pad_id: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        fixed_length: bool = False,
    ):
        groups = [item if isinstance(item, tuple) else (item,) for item in items]
        if not groups:
            raise DataError("no examples to make batches from")
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if len({len(g) for g in groups}) != 1:
            raise DataError("every item must hold the same number of examples")
        longest = max(example.inputs for group in groups for example in group)
        if longest > seq_len:
            raise DataError(f"an example has {longest} inputs, more than seq_len={seq_len}")
        self.groups, self.batch_size, self.seq_len, self.pad_id = groups, batch_size, seq_len, pad_id
        self.seed, self.rank, self.world_size, self.fixed_length = seed, rank, world_size, fixed_length
        self.epoch = 0
        self.position = 0  # items of this epoch's permutation already consumed (by all ranks)
        self.digest = _digest(groups)
        self._plan: tuple[int, np.ndarray] | None = None

    def _permutation(self) -> np.ndarray:
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (
                self.epoch,
                np.random.default_rng([self.seed, self.epoch]).permutation(len(self.groups)),
            )
        return self._plan[1]

    def next_indices(self) -> list[int]:
        """The item indices of this rank's next batch (advances the order)."""
        mine = range(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        picked = []
        for i in range(self.batch_size * self.world_size):
            if self.position >= len(self.groups):
                self.epoch, self.position = self.epoch + 1, 0
            if i in mine:
                picked.append(int(self._permutation()[self.position]))
            self.position += 1
        return picked

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (inputs, targets), int64 [batch_size × items per group, length] on the CPU."""
        return self.batch(self.next_indices())

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the items at `indices`, laid out as `next_batch` lays them out; with
        `next_indices()` a caller can gather per-item data alongside (e.g. DPO's reference log-probs)."""
        chosen = [self.groups[i] for i in indices]
        rows = [group[k] for k in range(len(chosen[0])) for group in chosen]
        if self.fixed_length:
            length = self.seq_len
        else:
            longest = max(row.inputs for row in rows)
            length = min(self.seq_len, -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE)
        return collate(rows, self.pad_id, length)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "items": len(self.groups),
            "digest": self.digest,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state` left off; refuses a state saved for other data."""
        for key, mine in (("items", len(self.groups)), ("digest", self.digest)):
            if key in state and state[key] != mine:
                raise DataError(
                    f"cannot resume the data order: the fine-tuning data changed (saved {key} "
                    f"{state[key]!r}, now {mine!r})",
                    hint="resume with the same data file and tokenizer, or start a new run",
                )
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])


def _digest(groups: Sequence[tuple[Example, ...]]) -> str:
    """sha256 over every example's ids and mask: the identity of the rendered data."""
    h = hashlib.sha256()
    for group in groups:
        for example in group:
            h.update(example.ids.size.to_bytes(8, "little"))  # lengths first: boundaries are unambiguous
            h.update(example.ids.tobytes())
            h.update(np.packbits(example.mask).tobytes())
    return h.hexdigest()


__all__ = [
    "IGNORE",
    "PAD_MULTIPLE",
    "ChatBatchSampler",
    "Example",
    "collate",
    "tokenize_conversations",
    "tokenize_preferences",
]
