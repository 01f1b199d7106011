"""The example chat data `alm data chat-example` writes: offline, deterministic for a seed.

chatterbot.jsonl               conversations from chatterbot-corpus (messages)
arithmetic-train.jsonl         the synthetic task's train split (messages)
sft.jsonl                      both of the above, shuffled: data for `alm sft`
arithmetic-test.jsonl          the test split as an exact-match task (prompt, answer)
arithmetic-choice-test.jsonl   the test split as a multiple-choice task (prompt, choices, answer)
prefs-train.jsonl              preference pairs from the train split: data for `alm dpo`
prefs-test.jsonl               preference pairs from the test split (held out)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alm.chat.chatterbot import chatterbot_conversations
from alm.chat.data import write_jsonl
from alm.chat.synthetic import arithmetic_splits


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    lines: int
    what: str


def write_chat_examples(
    out_dir: str | Path, *, seed: int = 0, n_train: int = 2000, n_test: int = 200, chatterbot: bool = True
) -> list[WrittenFile]:
    """Write the files listed in the module doc into `out_dir` (replacing them); chatterbot=False leaves the
    corpus out (then sft.jsonl is the arithmetic train split alone)."""
    out_dir = Path(out_dir)
    train, test = arithmetic_splits(n_train, n_test, seed=seed)
    rng = np.random.default_rng(seed)
    files: dict[str, tuple[list[dict[str, Any]], str]] = {}
    conversations = chatterbot_conversations() if chatterbot else []
    if chatterbot:
        files["chatterbot.jsonl"] = (conversations, "chatterbot-corpus conversations")
    arithmetic = [p.messages() for p in train]
    files["arithmetic-train.jsonl"] = (arithmetic, "arithmetic train split")
    mixed = conversations + arithmetic
    files["sft.jsonl"] = ([mixed[i] for i in rng.permutation(len(mixed))], "fine-tuning data (alm sft)")
    files["arithmetic-test.jsonl"] = ([p.task() for p in test], "exact-match task, test split")
    files["arithmetic-choice-test.jsonl"] = (
        [p.choice(rng) for p in test],
        "multiple-choice task, test split",
    )
    files["prefs-train.jsonl"] = ([p.preference(rng) for p in train], "preference pairs (alm dpo)")
    files["prefs-test.jsonl"] = ([p.preference(rng) for p in test], "preference pairs, held out")
    return [
        WrittenFile(write_jsonl(out_dir / name, records), len(records), what)
        for name, (records, what) in files.items()
    ]


__all__ = ["WrittenFile", "write_chat_examples"]
