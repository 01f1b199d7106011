"""The clean-text file format: UTF-8 documents, each followed by the separator RS + newline ("\\x1e\\n").

Lossless by construction: cleaning removes every C0/C1 control character except \\n and \\t, so the record
separator U+001E can never occur inside a document, and a document may hold any other text (blank lines,
leading spaces, trailing newlines). The file stays readable with `less`, and `sha256sum` of it is the split's
sha256 recorded in `stats.json`. Reading streams in fixed-size chunks, so memory does not grow with the file
(only with the longest document, which is joined once, not re-copied per chunk).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from alm.errors import DataError

DOC_SEPARATOR = "\x1e\n"
_CHUNK_CHARS = 1 << 20


class DocumentWriter:
    """Append documents to a clean-text file, tracking count, document bytes and the file's sha256."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._sha = hashlib.sha256()
        self.documents = 0
        self.bytes = 0  # UTF-8 bytes of the documents themselves (no separators): the bits-per-byte base

    def write(self, document: str) -> None:
        data = document.encode("utf-8")
        self._sha.update(data)
        self._sha.update(b"\x1e\n")
        self._file.write(document)
        self._file.write(DOC_SEPARATOR)
        self.documents += 1
        self.bytes += len(data)

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DocumentWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def iter_documents(path: Path) -> Iterator[str]:
    """Stream the documents of a clean-text file (see the module docstring for the format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"clean text file not found: {path}", hint="run `alm data prepare` to create it")
    pending: list[str] = []  # chunks of an unfinished document, joined once its separator arrives
    try:
        with path.open("r", encoding="utf-8", newline="") as f:
            while chunk := f.read(_CHUNK_CHARS):
                split_across = pending and pending[-1].endswith("\x1e") and chunk.startswith("\n")
                if DOC_SEPARATOR not in chunk and not split_across:
                    pending.append(chunk)
                    continue
                parts = "".join([*pending, chunk]).split(DOC_SEPARATOR)
                pending = [parts.pop()]
                yield from parts
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 (byte {exc.start}): not a clean-text file written by alm",
            hint="run `alm data prepare --force` to rebuild it",
        ) from None
    if "".join(pending):
        raise DataError(
            f"{path} ends in the middle of a document (truncated?)",
            hint="run `alm data prepare --force` to rebuild it",
        )


__all__ = ["DOC_SEPARATOR", "DocumentWriter", "iter_documents"]
