"""Text sources: each yields raw documents as a stream (memory does not grow with the corpus).

- builtin: a corpus shipped inside the package (`alm/resources/corpora/<name>.txt.xz`), read with importlib.resources.
- local: files, directories (recursed) and globs; `.txt` (and any other extension) as plain text, `.jsonl` /
  `.ndjson` as one JSON object per line with the text under `text_field`; each may be compressed (.gz, .xz, .bz2).
  Plain text splits into documents at blank lines, at every line, or one document per file (`boundary`).
- huggingface: a dataset repository on the Hub. Lists its files (one request with a short timeout), keeps
  parquet / jsonl / txt files matching `files` globs and `split`, downloads them one at a time into the HF cache
  with `hf_hub_download` (honours HF_TOKEN, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE) only as the stream reaches
  them, so `max_bytes` / `max_documents` also cap the download. Parquet is read in record batches with pyarrow.
  With HF_HUB_OFFLINE=1, or when the Hub cannot be reached, the cached snapshot is used; with neither a clear
  AlmError says what to do.

Non-UTF-8 and binary files: a file whose first 64 KiB hold a NUL byte or invalid UTF-8 is skipped with a
warning and counted in the report (it is almost always an image, archive or a legacy-encoded file caught by a
broad glob). A file that starts as valid UTF-8 but holds an invalid byte further on is a DataError naming the
file and line: we never guess encodings or silently replace bytes, and prepare writes nothing in that case.
A leading UTF-8 byte-order mark is dropped.
"""

from __future__ import annotations

import bz2
import fnmatch
import glob
import gzip
import importlib.resources
import io
import json
import lzma
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from alm.data.config import SourceConfig
from alm.data.stage import sha256_file
from alm.errors import AlmError, DataError, UsageError

Warn = Callable[[str], None]
SNIFF_BYTES = 64 * 1024
HUB_TIMEOUT_S = 10.0
_COMPRESSED = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_HF_SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".txt")


@dataclass
class SourceReport:
    """What a source stream read: files opened, files skipped (path, reason), raw documents and bytes."""

    files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0


def iter_source_documents(source: SourceConfig, report: SourceReport, warn: Warn) -> Iterator[str]:
    """Raw documents of one source, in a deterministic order, stopping at the source's caps."""
    reader = {"builtin": _builtin_documents, "local": _local_documents, "huggingface": _hf_documents}[
        source.type
    ]
    for doc in reader(source, report, warn):
        report.documents += 1
        report.bytes += len(doc.encode("utf-8"))
        yield doc
        if (source.max_documents and report.documents >= source.max_documents) or (
            source.max_bytes and report.bytes >= source.max_bytes
        ):
            return


def describe_source(source: SourceConfig) -> str:
    if source.type == "builtin":
        return f"builtin:{source.name} ({source.boundary})"
    if source.type == "local":
        return f"local:{','.join(source.paths)} ({source.format}, {source.boundary})"
    pattern = ",".join(source.files) or "*"
    split = f" split={source.split}" if source.split else ""
    return f"huggingface:{source.repo}@{source.revision} [{pattern}]{split}"


class FileHashes:
    """sha256 of local files, reusing a previous run's digest when a file's size and mtime are unchanged.

    Content decides staleness (a file copied again with the same bytes is unchanged), and only files whose
    size or mtime moved are read again. `entries` ({path: [size, mtime_ns, sha256]}) is what to keep for next time.
    """

    def __init__(self, known: Mapping[str, Any] | None = None):
        self._known = dict(known or {})
        self.entries: dict[str, list[Any]] = {}

    def sha256(self, path: Path) -> str:
        st = path.stat()
        cached = self._known.get(str(path))
        if isinstance(cached, list) and len(cached) == 3 and cached[:2] == [st.st_size, st.st_mtime_ns]:
            digest = str(cached[2])
        else:
            digest = sha256_file(path)
        self.entries[str(path)] = [st.st_size, st.st_mtime_ns, digest]
        return digest


def source_fingerprint(source: SourceConfig, hashes: FileHashes) -> Any:
    """Offline evidence of what a source holds now (local files by content); a change makes the text stale."""
    if source.type == "builtin":
        with importlib.resources.as_file(_builtin_resource(source.name or "")) as path:
            return {"builtin": source.name, "size": path.stat().st_size}
    if source.type == "local":
        return {
            "files": [[str(p), p.stat().st_size, hashes.sha256(p)] for p in expand_local_paths(source.paths)]
        }
    # Not re-checked online: a moving branch (main) counts as unchanged; pin a commit as revision, or --force.
    return {"repo": source.repo, "revision": source.revision}


# --------------------------------------------------------------------------------------------- builtin


def _builtin_resource(name: str) -> Any:
    return importlib.resources.files("alm") / "resources" / "corpora" / f"{name}.txt.xz"


def _builtin_documents(source: SourceConfig, report: SourceReport, warn: Warn) -> Iterator[str]:
    with importlib.resources.as_file(_builtin_resource(source.name or "")) as path:
        report.files += 1
        yield from _split_text(_text_lines(path), source.boundary)


# ----------------------------------------------------------------------------------------------- local


def expand_local_paths(patterns: Iterable[str]) -> list[Path]:
    """Files named by paths, directories (all files below, hidden ones excluded) and globs; sorted, unique."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = [Path(p) for p in sorted(glob.glob(expanded, recursive=True)) if Path(p).is_file()]
        elif Path(expanded).is_dir():
            matches = sorted(
                p
                for p in Path(expanded).rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(expanded).parts)
            )
        elif Path(expanded).is_file():
            matches = [Path(expanded)]
        else:
            raise UsageError(
                f"local source path not found: {pattern}", hint="check the path in sources[].paths"
            )
        if not matches:
            raise UsageError(
                f"local source '{pattern}' matches no files", hint="check the glob in sources[].paths"
            )
        found.update(dict.fromkeys(matches))
    return list(found)


def _local_documents(source: SourceConfig, report: SourceReport, warn: Warn) -> Iterator[str]:
    for path in expand_local_paths(source.paths):
        reason = sniff_unreadable(path)
        if reason:
            report.skipped.append((str(path), reason))
            warn(f"skipped {path}: {reason}")
            continue
        report.files += 1
        fmt = source.format if source.format != "auto" else ("jsonl" if _is_jsonl(path) else "txt")
        if fmt == "jsonl":
            yield from _jsonl_documents(path, source.text_field)
        else:
            yield from _split_text(_text_lines(path), source.boundary)


def _is_jsonl(path: Path) -> bool:
    name = path.name.lower()
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    return name.endswith(_JSONL_SUFFIXES)


def _open_binary(path: Path) -> IO[bytes]:
    opener = _COMPRESSED.get(path.suffix.lower())
    return opener(path, "rb") if opener else path.open("rb")  # type: ignore[operator]


def sniff_unreadable(path: Path) -> str | None:
    """Why a file cannot be read as UTF-8 text (judged on its first 64 KiB), or None when it looks fine."""
    try:
        with _open_binary(path) as f:
            head = f.read(SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        return f"cannot be read ({exc})"
    if b"\x00" in head:
        return "binary (holds NUL bytes)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_at_window_end = exc.reason == "unexpected end of data" and len(head) == SNIFF_BYTES
        if not cut_at_window_end:
            return f"not UTF-8 (invalid byte at offset {exc.start})"
    return None


def _text_lines(path: Path) -> Iterator[str]:
    """Lines with their terminators (\\n, \\r\\n or \\r), decoded strictly as UTF-8."""
    line_no = 0
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            for line_no, line in enumerate(text, 1):  # noqa: B007 - line_no is reported on errors
                yield line
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: invalid UTF-8 near line {line_no + 1} (byte value 0x{exc.object[exc.start]:02x})",
            hint="convert the file to UTF-8 (e.g. iconv -f latin1 -t utf-8) or leave it out",
        ) from None
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(
            f"{path}: cannot be read after line {line_no}: {exc}", hint="is the file truncated?"
        ) from None


def _split_text(lines: Iterable[str], boundary: str) -> Iterator[str]:
    if boundary == "file":
        doc = "".join(lines)
        if doc:
            yield doc
        return
    if boundary == "line":
        for line in lines:
            if line.strip():
                yield line.rstrip("\r\n")
        return
    buffer: list[str] = []
    for line in lines:
        if line.strip():
            buffer.append(line)
        elif buffer:
            yield "".join(buffer)
            buffer = []
    if buffer:
        yield "".join(buffer)


def _jsonl_documents(path: Path, text_field: str) -> Iterator[str]:
    for line_no, line in enumerate(_text_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{line_no}: not valid JSON ({exc.msg})", hint="each line must be one JSON object"
            ) from None
        if not isinstance(record, dict) or text_field not in record:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise DataError(
                f"{path}:{line_no}: no '{text_field}' field (found: {keys})",
                hint="set text_field in the source to the field that holds the text",
            )
        value = record[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise DataError(f"{path}:{line_no}: '{text_field}' is {type(value).__name__}, not text")
        yield value


# ----------------------------------------------------------------------------------------- huggingface


def hf_cache_dir() -> Path:
    """The hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hf_documents(source: SourceConfig, report: SourceReport, warn: Warn) -> Iterator[str]:
    files, fetch = _hf_files(source, warn)
    for rel in files:
        path = fetch(rel)
        report.files += 1
        if rel.endswith(".parquet"):
            yield from _parquet_documents(path, source.text_field)
        elif _is_jsonl(Path(rel)):
            yield from _jsonl_documents(path, source.text_field)
        else:
            yield from _split_text(_text_lines(path), source.boundary)


def _hf_files(source: SourceConfig, warn: Warn) -> tuple[list[str], Callable[[str], Path]]:
    """The repository files to read, in order, and a function that returns a local path for one of them."""
    repo = source.repo or ""
    if _hf_offline():
        return _hf_cached_files(source)
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(
            repo, revision=source.revision, timeout=HUB_TIMEOUT_S, token=os.environ.get("HF_TOKEN") or None
        )
    except GatedRepoError:
        raise AlmError(
            f"dataset {repo} is gated: accept its terms on the Hub", hint="then set HF_TOKEN"
        ) from None
    except RevisionNotFoundError:
        raise UsageError(
            f"dataset {repo} has no revision '{source.revision}'", hint="check sources[].revision"
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"dataset {repo} not found on the Hub (or private)",
            hint="check sources[].repo; for a private dataset set HF_TOKEN",
        ) from None
    except Exception as exc:  # network trouble comes as several transport error types
        try:
            cached = _hf_cached_files(source)
        except AlmError:
            raise AlmError(
                f"could not reach the Hugging Face Hub for dataset {repo}: {exc}",
                hint="check the network, or download it once and set HF_HUB_OFFLINE=1",
            ) from None
        warn(f"could not reach the Hugging Face Hub ({exc}); using the cached copy of {repo}")
        return cached
    names = [s.rfilename for s in info.siblings or []]
    commit = info.sha or source.revision
    cache_dir = hf_cache_dir()

    def fetch(rel: str) -> Path:
        try:
            return Path(
                hf_hub_download(
                    repo,
                    rel,
                    repo_type="dataset",
                    revision=commit,
                    cache_dir=cache_dir,
                    endpoint=os.environ.get("HF_ENDPOINT") or None,
                    etag_timeout=HUB_TIMEOUT_S,
                    token=os.environ.get("HF_TOKEN") or None,
                )
            )
        except Exception as exc:
            raise AlmError(
                f"could not download {rel} from dataset {repo}: {exc}",
                hint="check the network and disk space, then run again (finished files stay cached)",
            ) from None

    return _hf_select(names, source), fetch


def _hf_cached_files(source: SourceConfig) -> tuple[list[str], Callable[[str], Path]]:
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(
            snapshot_download(
                source.repo or "",
                repo_type="dataset",
                revision=source.revision,
                cache_dir=hf_cache_dir(),
                local_files_only=True,
            )
        )
    except Exception as exc:
        raise AlmError(
            f"dataset {source.repo}@{source.revision} is not in the Hugging Face cache at {hf_cache_dir()} "
            f"and offline mode is on ({type(exc).__name__})",
            hint="unset HF_HUB_OFFLINE and connect to the network once, or set HF_HOME to the cache",
        ) from None
    names = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    return _hf_select(names, source), lambda rel: snapshot / rel


def _hf_select(names: Iterable[str], source: SourceConfig) -> list[str]:
    names = sorted(names)
    candidates = [n for n in names if _hf_readable(n)]
    if source.files:
        candidates = [n for n in candidates if any(fnmatch.fnmatch(n, pat) for pat in source.files)]
    if source.split:
        split_re = re.compile(rf"(?:^|/){re.escape(source.split)}(?:[-_./]|$)")
        candidates = [n for n in candidates if split_re.search(n)]
    if not candidates:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise UsageError(
            f"dataset {source.repo} has no parquet/jsonl/txt file matching files={source.files or ['*']}"
            f" split={source.split}; it holds: {shown or 'nothing'}",
            hint="adjust sources[].files / sources[].split",
        )
    return candidates


def _hf_readable(name: str) -> bool:
    lowered = name.lower()
    for suffix in _COMPRESSED:
        lowered = lowered.removesuffix(suffix)
    return lowered.endswith(_HF_SUFFIXES)


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(
            f"{path}: not a readable parquet file ({exc})", hint="delete it from the cache and retry"
        ) from None
    columns = parquet.schema_arrow.names
    if text_field not in columns:
        raise DataError(
            f"{path}: no column '{text_field}' (columns: {', '.join(columns)})",
            hint="set text_field in the source to the text column",
        )
    for batch in parquet.iter_batches(batch_size=1024, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            if value is None:
                continue
            if not isinstance(value, str):
                raise DataError(f"{path}: column '{text_field}' holds {type(value).__name__}, not text")
            yield value


__all__ = [
    "FileHashes",
    "SourceReport",
    "describe_source",
    "expand_local_paths",
    "hf_cache_dir",
    "iter_source_documents",
    "sniff_unreadable",
    "source_fingerprint",
]
