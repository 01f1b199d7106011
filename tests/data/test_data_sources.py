from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alm.data.config import SourceConfig
from alm.data.sources import SourceReport, iter_source_documents
from alm.errors import AlmError, DataError, UsageError


def read(source: SourceConfig) -> tuple[list[str], SourceReport, list[str]]:
    report, warnings = SourceReport(), []
    docs = list(iter_source_documents(source, report, warnings.append))
    return docs, report, warnings


def local(paths, **kw) -> SourceConfig:
    return SourceConfig(type="local", paths=[str(p) for p in paths], **kw)


def test_builtin_streams_speeches() -> None:
    docs, report, _ = read(SourceConfig(max_documents=5))
    assert len(docs) == 5 and report.files == 1
    assert docs[0].startswith("First Citizen:\nBefore we proceed")


@pytest.mark.parametrize(
    ("boundary", "expected"),
    [
        ("blank_line", ["a1\na2\n", "b1\r\n", "c1\n"]),
        ("line", ["a1", "a2", "b1", "c1"]),
        ("file", ["a1\na2\n\n  \nb1\r\n\r\n\nc1\n"]),
    ],
)
def test_text_boundaries(tmp_path, boundary, expected) -> None:
    (tmp_path / "t.txt").write_bytes(b"a1\na2\n\n  \nb1\r\n\r\n\nc1\n")
    docs, _, _ = read(local([tmp_path / "t.txt"], boundary=boundary))
    assert docs == expected


def test_compressed_files_globs_and_directories(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha\n\nbeta\n")
    with gzip.open(tmp_path / "sub" / "b.txt.gz", "wt") as f:
        f.write("gamma\n")
    with lzma.open(tmp_path / "sub" / "c.jsonl.xz", "wt") as f:
        f.write(json.dumps({"body": "delta\n\nstill delta"}) + "\n\n" + json.dumps({"body": None}) + "\n")
    (tmp_path / "sub" / ".hidden.txt").write_text("never read")
    docs, report, _ = read(local([tmp_path / "sub", tmp_path / "*.txt"], text_field="body"))
    assert docs == ["gamma\n", "delta\n\nstill delta", "alpha\n", "beta\n"]
    assert report.files == 3


def test_bom_is_dropped(tmp_path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffhello\n".encode())
    assert read(local([tmp_path / "bom.txt"]))[0] == ["hello\n"]


def test_binary_and_non_utf8_files_are_skipped_with_a_warning(tmp_path) -> None:
    (tmp_path / "good.txt").write_text("fine text\n")
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    docs, report, warnings = read(local([tmp_path / "*.txt"]))
    assert docs == ["fine text\n"]
    assert sorted(Path(p).name for p, _ in report.skipped) == ["image.txt", "latin1.txt"]
    assert (
        len(warnings) == 2
        and any("binary" in w for w in warnings)
        and any("not UTF-8" in w for w in warnings)
    )


def test_invalid_utf8_deep_in_a_file_is_an_error_naming_it(tmp_path) -> None:
    bad = tmp_path / "late.txt"
    bad.write_bytes(b"ok line\n" * 20_000 + b"bad \xff byte\n")
    with pytest.raises(DataError, match=r"late\.txt: invalid UTF-8 near line \d+ \(byte value 0xff\)"):
        read(local([bad]))


def test_missing_paths_are_usage_errors(tmp_path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read(local([tmp_path / "nope.txt"]))
    with pytest.raises(UsageError, match="matches no files"):
        read(local([tmp_path / "*.md"]))


def test_jsonl_problems_name_file_and_line(tmp_path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one"}\n{"content": "two"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: no 'text' field \(found: content\)"):
        read(local([path]))
    path.write_text('{"text": "one"}\nnot json\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        read(local([path]))


def test_truncated_compressed_file_is_a_data_error(tmp_path) -> None:
    path = tmp_path / "cut.txt.xz"
    data = lzma.compress("".join(f"{i} {i * i} {i**3}\n" for i in range(50_000)).encode(), preset=0)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.txt\.xz"):
        read(local([path]))


def test_caps_stop_the_stream(tmp_path) -> None:
    (tmp_path / "t.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    assert len(read(local([tmp_path / "t.txt"], boundary="line", max_documents=7))[0]) == 7
    docs, report, _ = read(local([tmp_path / "t.txt"], boundary="line", max_bytes=30))
    assert len(docs) == 5 and report.bytes >= 30


# ------------------------------------------------------------------------- huggingface, via the cache only

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hf_cache(root: Path, repo: str = "someone/tiny-set") -> Path:
    """A hand-built HF hub cache: datasets--owner--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / f"datasets--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / COMMIT
    (snap / "data").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    table = pa.table({"id": [1, 2, 3], "text": ["first parquet doc", None, "third\nwith a newline"]})
    pq.write_table(table, snap / "data" / "train-00000-of-00001.parquet")
    pq.write_table(
        pa.table({"text": ["validation doc"]}), snap / "data" / "validation-00000-of-00001.parquet"
    )
    (snap / "data" / "extra.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n")
    (snap / "README.md").write_text("# card\n")
    return root


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = hf_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_huggingface_reads_parquet_and_jsonl_from_the_cache(offline_cache) -> None:
    docs, report, _ = read(SourceConfig(type="huggingface", repo="someone/tiny-set"))
    assert docs == ["from jsonl", "first parquet doc", "third\nwith a newline", "validation doc"]
    assert report.files == 3


def test_huggingface_split_and_file_patterns(offline_cache) -> None:
    docs, _, _ = read(SourceConfig(type="huggingface", repo="someone/tiny-set", split="train"))
    assert docs == ["first parquet doc", "third\nwith a newline"]
    docs, _, _ = read(SourceConfig(type="huggingface", repo="someone/tiny-set", files=["*.jsonl"]))
    assert docs == ["from jsonl"]
    assert len(read(SourceConfig(type="huggingface", repo="someone/tiny-set", max_documents=2))[0]) == 2


def test_huggingface_problems_are_clear(offline_cache) -> None:
    with pytest.raises(UsageError, match="no parquet/jsonl/txt file matching"):
        read(SourceConfig(type="huggingface", repo="someone/tiny-set", split="test"))
    with pytest.raises(DataError, match="no column 'content'"):
        read(SourceConfig(type="huggingface", repo="someone/tiny-set", split="train", text_field="content"))
    with pytest.raises(AlmError, match="not in the Hugging Face cache") as info:
        read(SourceConfig(type="huggingface", repo="someone/missing"))
    assert info.value.exit_code == 1


def test_unreachable_hub_fails_fast_or_falls_back_to_the_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback, nothing listens: connection refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache(tmp_path / "hub")))
    docs, _, warnings = read(SourceConfig(type="huggingface", repo="someone/tiny-set", files=["*.jsonl"]))
    assert docs == ["from jsonl"] and "could not reach" in warnings[0]
    with pytest.raises(AlmError, match="could not reach the Hugging Face Hub") as info:
        read(SourceConfig(type="huggingface", repo="someone/uncached"))
    assert "HF_HUB_OFFLINE" in str(info.value)
