"""The packed shard format: a 256-byte header, then little-endian uint32 token ids.

Header (little-endian, zero-padded to 256 bytes, like llm.c's fixed header):

    offset  size  field
    0       8     magic  b"ALMTOKS\\0"
    8       4     format version (1)
    12      4     bytes per token (4: uint32)
    16      8     number of tokens in this shard
    24      4     vocabulary size of the tokenizer that wrote it

A split is a sequence of shards `{split}-00000.bin, …`; every shard but the last holds exactly `shard_tokens`
tokens. `manifest.json` beside them records each shard's token count and the sha256 of its token payload
(the bytes after the header), so a reader can verify shards without trusting the header.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alm.data.layout import MANIFEST_FILE
from alm.data.stage import read_json, sha256_file
from alm.errors import DataError

MAGIC = b"ALMTOKS\x00"
FORMAT_VERSION = 1
HEADER_BYTES = 256
TOKEN_DTYPE = np.dtype("<u4")
_HEADER = struct.Struct("<8sIIQI")
REBUILD_HINT = "rebuild the shards with `alm pack --force`"


@dataclass(frozen=True)
class ShardHeader:
    version: int
    token_bytes: int
    num_tokens: int
    vocab_size: int


def encode_header(num_tokens: int, vocab_size: int) -> bytes:
    packed = _HEADER.pack(MAGIC, FORMAT_VERSION, TOKEN_DTYPE.itemsize, num_tokens, vocab_size)
    return packed.ljust(HEADER_BYTES, b"\x00")


def read_header(path: Path) -> ShardHeader:
    """Parse and check a shard header, and check the file size matches it (a truncated shard is an error)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"shard not found: {path}", hint=REBUILD_HINT)
    with path.open("rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < _HEADER.size or raw[:8] != MAGIC:
        raise DataError(f"{path} is not an alm token shard (bad magic {raw[:8]!r})", hint=REBUILD_HINT)
    _, version, token_bytes, num_tokens, vocab_size = _HEADER.unpack_from(raw)
    if version != FORMAT_VERSION:
        raise DataError(
            f"{path} has shard format version {version}; this alm reads version {FORMAT_VERSION}",
            hint=REBUILD_HINT,
        )
    if token_bytes != TOKEN_DTYPE.itemsize:
        raise DataError(
            f"{path} stores {token_bytes}-byte tokens; expected {TOKEN_DTYPE.itemsize}", hint=REBUILD_HINT
        )
    expected = HEADER_BYTES + num_tokens * token_bytes
    actual = path.stat().st_size
    if actual != expected:
        raise DataError(
            f"{path} is {actual} bytes but its header promises {num_tokens} tokens ({expected} bytes):"
            f" {'truncated' if actual < expected else 'trailing bytes'}",
            hint=REBUILD_HINT,
        )
    return ShardHeader(version, token_bytes, num_tokens, vocab_size)


def open_tokens(path: Path, header: ShardHeader | None = None) -> np.memmap:
    """Memory-map a shard's tokens read-only (no copy into RAM)."""
    header = header or read_header(path)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(header.num_tokens,))


def read_manifest(packed_dir: Path) -> dict[str, Any]:
    """`manifest.json` of a packed directory, checked for format and version."""
    packed_dir = Path(packed_dir)
    manifest = read_json(packed_dir / MANIFEST_FILE)
    if manifest is None:
        raise DataError(
            f"no packed dataset in {packed_dir} (manifest.json missing)",
            hint="run `alm pack` (or `alm data prepare` then `alm pack`)",
        )
    if manifest.get("format") != "alm-packed" or manifest.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{packed_dir / MANIFEST_FILE} is not an alm packed manifest of version {FORMAT_VERSION}",
            hint=REBUILD_HINT,
        )
    return manifest


def open_split(
    packed_dir: Path, manifest: dict[str, Any], split: str, *, verify_checksums: bool = False
) -> list[np.memmap]:
    """Memmap a split's shards after checking each one's header and size against the manifest (cheap: no
    payload is read), and its sha256 too if asked."""
    packed_dir = Path(packed_dir)
    splits = manifest.get("splits", {})
    if split not in splits:
        raise DataError(
            f"{packed_dir} has no '{split}' split (it has: {', '.join(splits) or 'none'})", hint=REBUILD_HINT
        )
    shards = []
    for entry in splits[split]["shards"]:
        file = packed_dir / entry["file"]
        if not file.is_file():
            raise DataError(
                f"manifest {packed_dir / MANIFEST_FILE} names shard {entry['file']}, which is missing",
                hint=REBUILD_HINT,
            )
        header = read_header(file)
        if header.num_tokens != entry["tokens"] or header.vocab_size != manifest["vocab_size"]:
            raise DataError(
                f"{file}: header says {header.num_tokens} tokens / vocab {header.vocab_size}, manifest "
                f"says {entry['tokens']} / {manifest['vocab_size']}",
                hint=REBUILD_HINT,
            )
        if verify_checksums and sha256_file(file, offset=HEADER_BYTES) != entry["sha256"]:
            raise DataError(f"{file}: sha256 does not match the manifest (corrupted?)", hint=REBUILD_HINT)
        shards.append(open_tokens(file, header))
    return shards


def verify_split(packed_dir: Path, manifest: dict[str, Any], split: str) -> None:
    """Everything `open_split` checks, plus every shard's sha256 and every token id below the vocabulary size."""
    vocab = int(manifest["vocab_size"])
    entries = manifest["splits"][split]["shards"]
    for entry, tokens in zip(
        entries, open_split(packed_dir, manifest, split, verify_checksums=True), strict=True
    ):
        for start in range(0, tokens.size, 1 << 24):  # 64 MB at a time
            top = int(tokens[start : start + (1 << 24)].max())
            if top >= vocab:
                raise DataError(
                    f"{Path(packed_dir) / entry['file']}: token id {top} is outside the vocabulary (0..{vocab - 1})",
                    hint=REBUILD_HINT,
                )


class ShardWriter:
    """Stream tokens into fixed-size shards `{split}-NNNNN.bin` under `directory`; memory stays O(1 write)."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, vocab_size: int):
        self.directory = Path(directory)
        self.split = split
        self.shard_tokens = shard_tokens
        self.vocab_size = vocab_size
        self.shards: list[dict[str, Any]] = []
        self.total_tokens = 0
        self._file: Any = None
        self._sha: Any = None
        self._count = 0

    def write(self, tokens: np.ndarray) -> None:
        tokens = np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE)
        if tokens.size and int(tokens.max()) >= self.vocab_size:  # one pass over a batch already in cache
            raise DataError(
                f"token id {int(tokens.max())} is outside the {self.vocab_size}-token vocabulary of "
                f"{self.directory / self.split}-*.bin (the tokenizer and the shards disagree)"
            )
        while tokens.size:
            file = self._file if self._file is not None else self._open_next()
            take = min(self.shard_tokens - self._count, tokens.size)
            chunk = tokens[:take].tobytes()
            file.write(chunk)
            self._sha.update(chunk)
            self._count += take
            self.total_tokens += take
            tokens = tokens[take:]
            if self._count == self.shard_tokens:
                self._finish()

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard; returns [{"file", "tokens", "sha256"}, …]."""
        if self._file is not None:
            self._finish()
        return self.shards

    def abort(self) -> None:
        """Close an unfinished shard (the caller discards the directory)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> Any:
        name = f"{self.split}-{len(self.shards):05d}.bin"
        self._file = (self.directory / name).open("wb")
        self._file.write(encode_header(0, self.vocab_size))  # rewritten with the count in _finish
        self._sha = hashlib.sha256()
        self._count = 0
        self.shards.append({"file": name, "tokens": 0, "sha256": ""})
        return self._file

    def _finish(self) -> None:
        self._file.seek(0)
        self._file.write(encode_header(self._count, self.vocab_size))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        self.shards[-1].update(tokens=self._count, sha256=self._sha.hexdigest())


__all__ = [
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "REBUILD_HINT",
    "TOKEN_DTYPE",
    "ShardHeader",
    "ShardWriter",
    "encode_header",
    "open_split",
    "open_tokens",
    "read_header",
    "read_manifest",
    "verify_split",
]
