"""`ensure_dataset`: build the clean text, the tokenizer and the shards, each only when missing or stale.

Each stage records its inputs (its config section and the sha256 of the stage before it) and is rebuilt only
when they change; on a fresh clone with the default config the whole chain takes a few seconds for tiny
Shakespeare. A stage whose output directory holds data built from other inputs is never overwritten unless
`force=True` (then every stale stage downstream is rebuilt too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm.data.config import DataConfig
from alm.data.docfile import iter_documents
from alm.data.pack import MANIFEST_FILE, pack_dataset
from alm.data.prepare import prepare_corpus
from alm.tokenizer.tokenizer import TOKENIZER_FILE
from alm.tokenizer.train import train_tokenizer


@dataclass(frozen=True)
class DataPaths:
    """Where each stage lives under the data root."""

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


def data_paths(cfg: DataConfig) -> DataPaths:
    root = Path(cfg.root)
    return DataPaths(
        root=root, clean_dir=root / "clean", tokenizer_dir=root / "tokenizer", packed_dir=root / "packed"
    )


def ensure_clean(
    cfg: DataConfig, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> dict[str, Any]:
    return prepare_corpus(cfg, data_paths(cfg).clean_dir, console=console, force=force, rebuild=rebuild)


def ensure_tokenizer(
    cfg: DataConfig,
    *,
    console: Any = None,
    force: bool = False,
    rebuild: bool = False,
    upstream_force: bool = False,
) -> Path:
    """Clean text (if needed), then the tokenizer; returns the tokenizer.json path.

    `force`/`rebuild` apply to the tokenizer stage; `upstream_force` lets a stale clean stage be replaced too.
    """
    paths = data_paths(cfg)
    stats = ensure_clean(cfg, console=console, force=upstream_force)
    train_tokenizer(
        iter_documents(paths.clean_dir / "train.txt"),
        paths.tokenizer_dir,
        cfg.tokenizer,
        corpus_sha256=stats["splits"]["train"]["sha256"],
        force=force,
        rebuild=rebuild,
        console=console,
    )
    return paths.tokenizer_path


def ensure_pack(
    cfg: DataConfig,
    *,
    console: Any = None,
    force: bool = False,
    rebuild: bool = False,
    upstream_force: bool = False,
) -> DataPaths:
    """Clean text and tokenizer (if needed), then the shards."""
    paths = data_paths(cfg)
    ensure_tokenizer(cfg, console=console, force=upstream_force, upstream_force=upstream_force)
    pack_dataset(
        paths.clean_dir,
        paths.tokenizer_path,
        paths.packed_dir,
        cfg.packing,
        console=console,
        force=force,
        rebuild=rebuild,
    )
    return paths


def ensure_dataset(data_cfg: DataConfig, console: Any = None, force: bool = False) -> DataPaths:
    """Make sure clean text, tokenizer and shards exist for `data_cfg`; returns their paths.

    Up-to-date stages are kept; `force` lets stale ones replace output built from other inputs.
    """
    return ensure_pack(data_cfg, console=console, force=force, upstream_force=force)


__all__ = ["DataPaths", "data_paths", "ensure_clean", "ensure_dataset", "ensure_pack", "ensure_tokenizer"]
