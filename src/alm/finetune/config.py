"""The `finetune` section of a fine-tuning run's config: what it trains on, and how.

A fine-tuning run's root config is `FinetuneRunConfig`: a `RunConfig` (model, train, data, init — the parent's
model with any added chat-token rows, the fine-tuning train preset, the parent's data section for lineage, and
the parent run and checkpoint it grew from) plus this section, so `config.yaml`, every checkpoint and the
`start` event say where it came from and `alm resume` rebuilds the same objective. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alm.config import require
from alm.train.run_config import RunConfig

Mode = Literal["sft", "dpo"]
MODES: tuple[Mode, ...] = ("sft", "dpo")


@dataclass
class FinetuneConfig:
    mode: Mode = "sft"
    data: str = ""  # the JSONL file trained on (conversations for sft, preference pairs for dpo)
    val_data: str | None = None  # held-out JSONL; None: hold out `val_fraction` of `data`
    val_fraction: float = 0.1  # drawn with train.seed; 0: no validation
    beta: float = 0.1  # dpo: how far the policy may move from the reference (the starting checkpoint)
    chat_tokens_added: dict[str, Any] | None = (
        None  # VocabResize.to_dict(): the parent's tokenizer lacked them
    )

    def validate(self) -> None:
        require(bool(self.data), "data", "names no data file")
        require(
            0 <= self.val_fraction < 1,
            "val_fraction",
            f"must be in [0, 1) (0: none), got {self.val_fraction}",
        )
        require(self.beta > 0, "beta", f"must be positive, got {self.beta}")


@dataclass
class FinetuneRunConfig(RunConfig):
    """A fine-tuning run's config: the run sections plus `finetune`."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


__all__ = ["MODES", "FinetuneConfig", "FinetuneRunConfig", "Mode"]
