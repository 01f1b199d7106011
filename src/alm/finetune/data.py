"""A fine-tuning run's data: its JSONL file(s) loaded, the held-out part set aside, every example rendered.

Loading and rendering check everything (line numbers on malformed lines, unknown roles, empty conversations,
conversations longer than the context), so `alm sft` / `alm dpo` refuse bad data before a run directory exists.
Without `--val-data` the held-out examples are `val_fraction` of the file, drawn with the run's seed; both parts
keep the file's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from alm.chat.batches import Example, tokenize_conversations, tokenize_preferences
from alm.chat.data import load_conversations, load_preferences
from alm.errors import DataError
from alm.finetune.config import FinetuneConfig

if TYPE_CHECKING:
    from alm.tokenizer import Tokenizer

T = TypeVar("T")
Pair = tuple[Example, Example]  # (chosen, rejected)


@dataclass(frozen=True)
class ChatData:
    """Rendered examples: conversations (sft) or (chosen, rejected) pairs (dpo)."""

    train: list[Example] | list[Pair]
    val: list[Example] | list[Pair]

    def describe(self, what: str) -> str:
        held = f"{len(self.val):,} held out for validation" if self.val else "no validation"
        return f"{len(self.train):,} {what} to train on, {held}"


def hold_out(items: Sequence[T], fraction: float, seed: int, *, source: str) -> tuple[list[T], list[T]]:
    """(train, val): `fraction` of `items` (at least one) drawn with `seed`, each part in the original order."""
    if fraction == 0:
        return list(items), []
    n_val = max(1, round(len(items) * fraction))
    if n_val >= len(items):
        raise DataError(
            f"{source} holds {len(items)} example(s): too few to hold out {fraction:g} of them for validation",
            hint="add examples, give held-out data with --val-data FILE, or turn validation off with "
            "--val-fraction 0",
        )
    val = np.zeros(len(items), dtype=bool)
    val[np.random.default_rng([seed, len(items)]).permutation(len(items))[:n_val]] = True
    return [x for x, v in zip(items, val, strict=True) if not v], [
        x for x, v in zip(items, val, strict=True) if v
    ]


def load_chat_data(cfg: FinetuneConfig, tokenizer: Tokenizer, seq_len: int, seed: int) -> ChatData:
    """The run's data per its `finetune` section, rendered with `tokenizer` for a context of `seq_len`."""
    load, render = READERS[cfg.mode]
    train = load(cfg.data)
    if cfg.val_data:
        val = load(cfg.val_data)
    else:
        train, val = hold_out(train, cfg.val_fraction, seed, source=cfg.data)
    return ChatData(
        render(train, tokenizer, seq_len, source=cfg.data),
        render(val, tokenizer, seq_len, source=cfg.val_data or cfg.data),
    )


# mode -> (JSONL reader, renderer)
READERS: dict[str, tuple[Callable[..., list[Any]], Callable[..., list[Any]]]] = {
    "sft": (load_conversations, tokenize_conversations),
    "dpo": (load_preferences, tokenize_preferences),
}


__all__ = ["READERS", "ChatData", "Pair", "hold_out", "load_chat_data"]
