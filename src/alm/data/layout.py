"""Where each stage lives under a data root; several tokenizers and packings of one corpus sit side by side.

```
<root>/settings.json                    the settings the root was last built with (what data commands start from)
<root>/clean/{train,val}.txt, stats.json   the corpus: one per root
<root>/tokenizer-<key>/tokenizer.json   one directory per tokenizer setting, e.g. tokenizer-bpe-4096-3f2a91
<root>/packed-<key>/manifest.json       the clean text packed with that tokenizer
```

`<key>` is the tokenizer's type and vocabulary size (readable) plus 6 hex digits of a hash of all its settings,
so a tokenizer trained with other settings never overwrites one a run depends on; a tokenizer.json given as
`tokenizer.file` (copied in, never trained) is `file-<hash>`. `packing.shard_tokens` is not
part of the key: it only decides where the same token stream is cut into files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from alm.data.config import DataConfig
from alm.tokenizer.config import TokenizerConfig
from alm.tokenizer.tokenizer import TOKENIZER_FILE

MANIFEST_FILE = "manifest.json"
SETTINGS_FILE = "settings.json"
CLEAN_DIR = "clean"
TOKENIZER_PREFIX = "tokenizer-"
PACKED_PREFIX = "packed-"


@dataclass(frozen=True)
class DataPaths:
    """Where each stage of one data config lives."""

    root: Path
    clean_dir: Path
    tokenizer_dir: Path
    packed_dir: Path

    @property
    def tokenizer_path(self) -> Path:
        return self.tokenizer_dir / TOKENIZER_FILE

    @property
    def manifest_path(self) -> Path:
        return self.packed_dir / MANIFEST_FILE

    @property
    def settings_path(self) -> Path:
        return self.root / SETTINGS_FILE


def tokenizer_key(cfg: TokenizerConfig) -> str:
    """`bpe-4096-3f2a91`: type, vocabulary size and a short hash of every tokenizer setting; `file-3f2a91` for
    a tokenizer.json used as it is (`tokenizer.file`, hashed with the rest)."""
    digest = hashlib.sha256(json.dumps(cfg.settings(), sort_keys=True).encode()).hexdigest()
    readable = "file" if cfg.file is not None else f"{cfg.type}-{cfg.vocab_size}"
    return f"{readable}-{digest[:6]}"


def data_paths(cfg: DataConfig) -> DataPaths:
    root = Path(cfg.root)
    key = tokenizer_key(cfg.tokenizer)
    return DataPaths(
        root=root,
        clean_dir=root / CLEAN_DIR,
        tokenizer_dir=root / f"{TOKENIZER_PREFIX}{key}",
        packed_dir=root / f"{PACKED_PREFIX}{key}",
    )


__all__ = [
    "CLEAN_DIR",
    "MANIFEST_FILE",
    "PACKED_PREFIX",
    "SETTINGS_FILE",
    "TOKENIZER_PREFIX",
    "DataPaths",
    "data_paths",
    "tokenizer_key",
]
