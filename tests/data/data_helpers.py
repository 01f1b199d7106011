"""Config builders shared by the data tests (imported as a plain module: tests dirs are not packages)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alm.config import from_dict
from alm.data.config import DataConfig


def tiny_config(root: Path, **extra) -> DataConfig:
    """The built-in corpus cut to ~80 kB, a 300-token BPE and 4096-token shards: builds in about a second."""
    data = {
        "root": str(root),
        "sources": [{"type": "builtin", "max_bytes": 80_000}],
        "tokenizer": {"vocab_size": 300},
        "packing": {"shard_tokens": 4096},
    }
    data.update(extra)
    return from_dict(DataConfig, data)


def local_config(root: Path, paths: list[str], **keys) -> DataConfig:
    """A config reading local `paths`; keys of DataConfig go to the top level, the rest to the source."""
    top_keys = {f.name for f in dataclasses.fields(DataConfig)}
    top = {k: v for k, v in keys.items() if k in top_keys}
    source = {k: v for k, v in keys.items() if k not in top_keys}
    return from_dict(
        DataConfig,
        {
            "root": str(root),
            "sources": [{"type": "local", "paths": paths, **source}],
            "tokenizer": {"vocab_size": 300},
            **top,
        },
    )
