"""`ensure_dataset`: build the clean text, the tokenizer and the shards, each only when missing or stale.

Each stage records its inputs (its own settings and the digests of the stage before it) and is rebuilt when an
upstream stage changed; on a fresh clone with the default config the whole chain takes a few seconds for tiny
Shakespeare. The tokenizer stage trains a tokenizer, or copies in the tokenizer.json `tokenizer.file` names.
Tokenizers and packings live in directories keyed by their settings (`alm.data.layout`), so other settings build
beside them instead of over them. Only the corpus itself (one per root) can conflict: clean text
built from other sources or split settings is replaced only with `force=True`. Every call records the settings
it used in `<root>/settings.json` (`alm.data.settings`), which later data commands start from.

`force` lets every stage the call touches replace conflicting output; `rebuild` rebuilds the last stage even
when it is up to date (what `--force` means on the command that builds that stage).

Each stage runs holding the root's lock (`<root>/data.lock`, `alm.locks`): a second process building the same
root (two `alm train` runs started together) waits for the first, then finds its work up to date.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alm import locks
from alm.config import to_dict
from alm.data.config import DataConfig
from alm.data.docfile import iter_documents
from alm.data.layout import DataPaths, data_paths
from alm.data.pack import pack_dataset
from alm.data.prepare import prepare_corpus
from alm.data.settings import write_settings
from alm.data.tokenizer_stage import build_tokenizer, copy_tokenizer

DATA_LOCK = "data.lock"
F = TypeVar("F", bound=Callable[..., Any])


def _holding_root(build: F) -> F:
    """Run a stage holding its data root's lock, waiting while another process holds it (re-entrant: a stage
    that runs the stages before it takes the lock once)."""

    @functools.wraps(build)
    def wrapper(cfg: DataConfig, *args: Any, **kwargs: Any) -> Any:
        console = kwargs.get("console")

        def waiting(holder: locks.Holder) -> None:
            if console is not None:
                text = f"waiting for {holder.describe()}, which is building {cfg.root} …"
                console.print(text, soft_wrap=True, highlight=False, markup=False)

        with locks.wait_for(Path(cfg.root) / DATA_LOCK, on_wait=waiting):
            return build(cfg, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@_holding_root
def ensure_clean(
    cfg: DataConfig, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> dict[str, Any]:
    """The clean text (built if needed); returns its stats.json content."""
    stats = prepare_corpus(cfg, data_paths(cfg).clean_dir, console=console, force=force, rebuild=rebuild)
    write_settings(cfg)
    return stats


@_holding_root
def ensure_tokenizer(
    cfg: DataConfig, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> DataPaths:
    """Clean text (if needed), then the tokenizer: trained, or copied from `tokenizer.file`."""
    paths = data_paths(cfg)
    stats = ensure_clean(cfg, console=console, force=force)
    if cfg.tokenizer.file is not None:
        copy_tokenizer(paths.tokenizer_dir, cfg.tokenizer, force=force, rebuild=rebuild, console=console)
        return paths
    build_tokenizer(
        iter_documents(paths.clean_dir / "train.txt"),
        paths.tokenizer_dir,
        cfg.tokenizer,
        corpus_sha256=stats["splits"]["train"]["sha256"],
        force=force,
        rebuild=rebuild,
        console=console,
    )
    return paths


@_holding_root
def ensure_pack(
    cfg: DataConfig, *, console: Any = None, force: bool = False, rebuild: bool = False
) -> DataPaths:
    """Clean text and tokenizer (if needed), then the shards."""
    paths = ensure_tokenizer(cfg, console=console, force=force)
    settings = {k: v for k, v in to_dict(cfg).items() if k != "root"}
    pack_dataset(
        paths.clean_dir,
        paths.tokenizer_path,
        paths.packed_dir,
        cfg.packing,
        console=console,
        force=force,
        rebuild=rebuild,
        settings=settings,
    )
    return paths


def ensure_dataset(data_cfg: DataConfig, console: Any = None, force: bool = False) -> DataPaths:
    """Make sure clean text, tokenizer and shards exist for `data_cfg`; returns their paths.

    Up-to-date stages are kept; `force` lets stale ones replace output built from other inputs.
    """
    return ensure_pack(data_cfg, console=console, force=force)


__all__ = ["DataPaths", "data_paths", "ensure_clean", "ensure_dataset", "ensure_pack", "ensure_tokenizer"]
