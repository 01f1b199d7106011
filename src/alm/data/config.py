"""`DataConfig`: where text comes from, how it is cleaned and split, the tokenizer to train and how to pack it.

Loaded by `alm.config` from `configs/corpus.yaml` (every key is documented there). With no file at all the
default is the built-in tiny Shakespeare, split into documents at blank lines (one speech per document), with
the last 10% of the text held out for validation (nanoGPT's split). The `tokenizer:` section is the tokenizer
layer's own `TokenizerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alm.config import require
from alm.tokenizer.config import TokenizerConfig

SourceType = Literal["builtin", "local", "huggingface"]
Boundary = Literal["blank_line", "line", "file"]
SplitMethod = Literal["tail", "blocks", "hash"]
BUILTIN_CORPORA = ("tinyshakespeare",)

# Keys each source type understands; anything else set away from its default is a config mistake.
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "builtin": ("name", "boundary"),
    "local": ("paths", "format", "text_field", "boundary"),
    "huggingface": ("repo", "revision", "files", "split", "text_field", "boundary"),
}
_COMMON_KEYS = ("type", "max_bytes", "max_documents")


@dataclass
class SourceConfig:
    """One text source; `type` selects which of the other keys apply (validate() checks the combination)."""

    type: SourceType = "builtin"
    name: str | None = None  # builtin: which shipped corpus (default tinyshakespeare)
    paths: list[str] = field(default_factory=list)  # local: files, directories or globs (** recurses)
    format: Literal["auto", "txt", "jsonl"] = "auto"  # local: auto = by extension (.jsonl/.ndjson = jsonl)
    text_field: str = "text"  # local jsonl / huggingface parquet+jsonl: the field holding the text
    boundary: Boundary = "blank_line"  # plain text: what ends a document
    repo: str | None = None  # huggingface: owner/name of a dataset repository
    revision: str = "main"  # huggingface: branch, tag or commit
    files: list[str] = field(
        default_factory=list
    )  # huggingface: glob patterns of files to read (all if empty)
    split: str | None = None  # huggingface: keep only files whose path names this split (e.g. train)
    max_bytes: int | None = None  # any source: stop after this many UTF-8 bytes of documents
    max_documents: int | None = None  # any source: stop after this many documents

    def __post_init__(self) -> None:
        if self.type == "builtin" and self.name is None:
            self.name = BUILTIN_CORPORA[0]

    def validate(self) -> None:
        defaults = SourceConfig(type=self.type)
        allowed = set(_TYPE_KEYS[self.type]) | set(_COMMON_KEYS)
        for key in sorted(set().union(*_TYPE_KEYS.values()) - allowed):
            value = getattr(self, key)
            if value != getattr(defaults, key) and value not in (None, []):
                require(
                    False,
                    key,
                    f"does not apply to a '{self.type}' source (it takes: {', '.join(sorted(allowed))})",
                )
        if self.type == "builtin":
            require(
                self.name in BUILTIN_CORPORA,
                "name",
                f"unknown builtin corpus {self.name!r}; available: {', '.join(BUILTIN_CORPORA)}",
            )
        elif self.type == "local":
            require(bool(self.paths), "paths", "a local source needs at least one file, directory or glob")
            require(all(isinstance(p, str) and p for p in self.paths), "paths", "entries must be non-empty")
        else:
            require(
                bool(self.repo) and str(self.repo).count("/") == 1,
                "repo",
                f"a huggingface source needs repo: owner/name, got {self.repo!r}",
            )
            require(bool(self.revision), "revision", "must not be empty")
        require(bool(self.text_field), "text_field", "must not be empty")
        require(self.max_bytes is None or self.max_bytes > 0, "max_bytes", "must be positive (or null)")
        require(
            self.max_documents is None or self.max_documents > 0,
            "max_documents",
            "must be positive (or null)",
        )


@dataclass
class CleaningConfig:
    min_chars: int = 1  # drop documents shorter than this (in characters, after cleaning)
    dedup: bool = True  # drop exact duplicate documents (8-byte blake2b digests of the cleaned text)

    def validate(self) -> None:
        require(self.min_chars >= 1, "min_chars", "must be at least 1 (empty documents are always dropped)")


@dataclass
class PackingConfig:
    shard_tokens: int = 100_000_000  # tokens per shard file (the last shard of a split holds the rest)
    workers: int = (
        0  # tokenizer processes: 0 = auto, 1 = in-process (the Rust tokenizer still uses every core)
    )

    def validate(self) -> None:
        require(self.shard_tokens >= 1024, "shard_tokens", f"must be at least 1024, got {self.shard_tokens}")
        require(self.workers >= 0, "workers", "must be 0 (auto) or a positive number of processes")


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    split: SplitMethod = "tail"  # how val is held out (alm.data.split): tail | blocks | hash
    val_fraction: float = 0.1  # share of the text held out for validation
    val_block_bytes: int = 100_000  # split: blocks — size of each contiguous held-out block
    seed: int = 1337  # split: hash — salts the document hash that decides each document's side
    root: Path = Path("data")  # clean/, tokenizer-*/ and packed-*/ live under here
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    packing: PackingConfig = field(default_factory=PackingConfig)

    def validate(self) -> None:
        require(bool(self.sources), "sources", "at least one source is needed")
        require(
            0.0 < self.val_fraction < 1.0, "val_fraction", f"must be between 0 and 1, got {self.val_fraction}"
        )
        require(self.val_block_bytes >= 1, "val_block_bytes", f"must be positive, got {self.val_block_bytes}")


__all__ = [
    "BUILTIN_CORPORA",
    "Boundary",
    "CleaningConfig",
    "DataConfig",
    "PackingConfig",
    "SourceConfig",
    "SourceType",
    "SplitMethod",
]
