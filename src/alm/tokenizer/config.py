"""`TokenizerConfig`: which tokenizer to train (the `tokenizer:` section of a data config), or which existing
tokenizer.json to use as it is (`file`: another run's, e.g. for continued pretraining)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alm.config import require
from alm.tokenizer.special import RESERVED_TOKENS

# Every byte, the reserved special tokens, and room for at least one learned token.
MIN_VOCAB_SIZE = 256 + len(RESERVED_TOKENS) + 1


@dataclass
class TokenizerConfig:
    type: Literal["bpe", "unigram"] = "bpe"
    vocab_size: int = 4096  # including the 256 byte symbols and the 7 reserved special tokens
    max_bytes: int | None = 100_000_000  # training sample cap (bounded memory); null = whole train split
    max_lines: int | None = None  # training sample cap in lines; null = no cap
    min_frequency: int = 2  # bpe only: a merge must occur at least this often
    file: Path | None = (
        None  # an existing tokenizer.json, used as it is (nothing is trained; the keys above unset)
    )

    def validate(self) -> None:
        if self.file is not None:
            # A tokenizer given as a file has its own settings: a training key set beside it would be ignored.
            defaults = TokenizerConfig()
            for f in dataclasses.fields(self):
                require(
                    f.name == "file" or getattr(self, f.name) == getattr(defaults, f.name),
                    f.name,
                    f"does not apply to a tokenizer given as a file (tokenizer.file={self.file}); "
                    "drop it, or set tokenizer.file to null to train one",
                )
            return
        require(
            self.vocab_size >= MIN_VOCAB_SIZE,
            "vocab_size",
            f"must be at least {MIN_VOCAB_SIZE} (256 bytes + {len(RESERVED_TOKENS)} special tokens + 1), "
            f"got {self.vocab_size}",
        )
        require(self.vocab_size < 2**32, "vocab_size", "must fit in uint32 shards")
        require(self.max_bytes is None or self.max_bytes > 0, "max_bytes", "must be positive (or null)")
        require(self.max_lines is None or self.max_lines > 0, "max_lines", "must be positive (or null)")
        require(self.min_frequency >= 1, "min_frequency", "must be at least 1")

    def settings(self) -> dict[str, Any]:
        """Every setting, for the keys and records of what was built with them; `file` only when set, so what was
        built before it existed keeps its key."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.file is None:
            del values["file"]
        else:
            values["file"] = str(self.file)
        return values


__all__ = ["MIN_VOCAB_SIZE", "TokenizerConfig"]
