"""Small real corpora and a tiny, fully built dataset shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm.config import from_dict
from alm.data.config import DataConfig
from alm.data.pipeline import DataPaths, ensure_dataset


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


def local_config(root: Path, paths: list[str], **source) -> DataConfig:
    return from_dict(
        DataConfig,
        {"root": str(root), "sources": [{"type": "local", "paths": paths, **source}], "tokenizer": {"vocab_size": 300}},
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> tuple[DataConfig, DataPaths]:
    cfg = tiny_config(tmp_path_factory.mktemp("built") / "data")
    return cfg, ensure_dataset(cfg)
