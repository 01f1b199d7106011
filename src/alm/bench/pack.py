"""Packing throughput and memory against the raw `tokenizers` encoder, measured in the same run.

For each corpus size (default 10 MB and 100 MB, cycled from the built-in corpus, or from the text files of a
directory given with `corpus_dir`) the bench writes a clean-text split, then measures:

- raw: `Tokenizer.encode_batch_fast` over the same ~256 KB document batches the packer uses, in this process,
  timing only the encode calls (the text is already in memory): the ceiling for any packer using this tokenizer;
- pack: `alm.data.pack.pack_dataset` in a fresh child process — streaming the text from disk, encoding,
  appending <|eos|>, writing and hashing shards — timed inside the child, which also reports its own peak RSS
  (VmHWM; with a process pool, the larger of it and the largest worker's), so each size's figure is its own.

Other processes share the machine, so each size runs `rounds` alternating raw/pack rounds and every figure is
the median (peak RSS: the maximum) over rounds.

Targets: pack ≥ 0.9× raw MB/s, and peak RSS flat (≤ 1.1×) from the smallest corpus to the largest.
"""

from __future__ import annotations

import json
import lzma
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alm.errors import UsageError

TEXT_SUFFIXES = (".txt", ".txt.xz", ".tokens")


@dataclass(frozen=True)
class PackBenchSettings:
    sizes_mb: tuple[float, ...] = (10.0, 100.0)
    corpus_dir: Path | None = None  # text files (.txt, .txt.xz, .tokens), read recursively; None: built-in
    vocab_size: int = 4096
    workers: tuple[int, ...] = (1,)  # packer configurations to measure (1 = in-process, N > 1 = N processes)
    rounds: int = 3  # alternating raw / pack rounds per size; each figure is the median over rounds
    work_dir: Path | None = None  # default: a temporary directory, removed afterwards
    keep: bool = False


@dataclass
class PackRun:
    workers: int
    seconds: float
    tokens: int
    mb_per_s: float
    tokens_per_s: float
    peak_rss_mb: float
    ratio_to_raw: float


@dataclass
class SizeResult:
    corpus_mb: float
    text_bytes: int
    raw_seconds: float
    raw_mb_per_s: float
    raw_tokens_per_s: float
    packs: list[PackRun] = field(default_factory=list)


@dataclass
class PackBenchResult:
    settings: dict[str, Any]
    environment: dict[str, Any]
    sizes: list[SizeResult]

    def rss_growth(self, workers: int) -> float | None:
        """Peak RSS of the largest corpus ÷ the smallest, for one packer configuration."""
        runs = [p for s in self.sizes for p in s.packs if p.workers == workers]
        return runs[-1].peak_rss_mb / runs[0].peak_rss_mb if len(runs) > 1 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "environment": self.environment,
            "sizes": [asdict(s) for s in self.sizes],
        }


def environment() -> dict[str, Any]:
    import numpy
    import tokenizers

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # the bench itself does not need torch
        torch_version = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "tokenizers": tokenizers.__version__,
        "numpy": numpy.__version__,
        "torch": torch_version,
    }


def corpus_documents(corpus_dir: Path | None) -> Iterator[str]:
    """Blank-line documents of every text file under `corpus_dir` (None: the built-in corpus, which ships with
    the package, so the bench runs from an installed wheel), cycled forever in a deterministic order."""
    from alm.data.clean import clean_document
    from alm.tokenizer.pieces import split_long_document

    if corpus_dir is None:
        yield from _builtin_documents()
        return
    if not Path(corpus_dir).is_dir():
        raise UsageError(
            f"corpus directory not found: {corpus_dir}",
            hint="pass --corpus-dir with a directory of plain text, or leave it out for the built-in corpus",
        )
    files = sorted(p for p in Path(corpus_dir).rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
    if not files:
        raise UsageError(
            f"no text files ({', '.join(TEXT_SUFFIXES)}) under {corpus_dir}",
            hint="pass --corpus-dir with a directory of plain text",
        )
    while True:
        for path in files:
            opener = lzma.open if path.suffix == ".xz" else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as f:
                text = f.read()
            for doc in re.split(r"\n[ \t]*\n", text):
                # Long texts with no blank lines (the KJV) become ordinary-sized documents, so the raw
                # encoder and the packer see the same well-formed input.
                for piece in split_long_document(clean_document(doc)):
                    if piece.strip():
                        yield piece


def _builtin_documents() -> Iterator[str]:
    from alm.data.clean import clean_document
    from alm.data.config import SourceConfig
    from alm.data.sources import SourceReport, iter_source_documents

    while True:
        for raw in iter_source_documents(SourceConfig(), SourceReport(), lambda _msg: None):
            doc = clean_document(raw)
            if doc:
                yield doc


def write_clean_split(out_dir: Path, documents: Iterator[str], size_bytes: int) -> int:
    """A clean dir (train.txt of about `size_bytes`, a small val.txt, stats.json) as prepare would write it."""
    from alm.data.docfile import DocumentWriter
    from alm.data.stage import write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, target in (("train", size_bytes), ("val", 64_000)):
        with DocumentWriter(out_dir / f"{split}.txt") as writer:
            while writer.bytes < target:
                writer.write(next(documents))
        splits[split] = {
            "file": f"{split}.txt",
            "documents": writer.documents,
            "bytes": writer.bytes,
            "sha256": writer.sha256,
        }
    write_json_atomic(
        out_dir / "stats.json",
        {"format": "alm-clean", "version": 1, "signature": "bench", "source": "bench", "splits": splits},
    )
    return splits["train"]["bytes"]


def measure_raw(tokenizer_path: Path, clean_file: Path) -> tuple[float, int]:
    """Seconds spent in encode_batch_fast over the packer's batches of `clean_file`, and tokens produced."""
    from alm.data.docfile import iter_documents
    from alm.data.pack import batch_pieces
    from alm.tokenizer import Tokenizer

    backend = Tokenizer.load(tokenizer_path).backend
    seconds, tokens = 0.0, 0
    for pieces, ends in batch_pieces(iter_documents(clean_file)):
        start = time.perf_counter()
        encodings = backend.encode_batch_fast(pieces, add_special_tokens=False)
        seconds += time.perf_counter() - start
        tokens += sum(len(e) for e in encodings) + sum(ends)  # + one <|eos|> per document, as packed
    return seconds, tokens


def measure_raw_splits(tokenizer_path: Path, clean_dir: Path) -> tuple[float, int]:
    """measure_raw over both splits, as the packer sees them."""
    seconds, tokens = 0.0, 0
    for split in ("train", "val"):
        s, t = measure_raw(tokenizer_path, clean_dir / f"{split}.txt")
        seconds, tokens = seconds + s, tokens + t
    return seconds, tokens


def measure_pack(
    clean_dir: Path, tokenizer_path: Path, out_dir: Path, workers: int
) -> tuple[float, int, float]:
    """(seconds, tokens, peak RSS in MB) of packing both splits in a fresh child process."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "alm.bench.pack",
        str(clean_dir),
        str(tokenizer_path),
        str(out_dir),
        str(workers),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"the packing child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(report["seconds"]), int(report["tokens"]), float(report["peak_rss_mb"])


def peak_rss_mb() -> float:
    """This process's peak RSS (and its largest finished child's, e.g. pool workers), in MB.

    Not `ru_maxrss` of the child as seen by the parent: Linux folds the *parent's* RSS at fork into the
    child's maxrss when it execs, so a child of a big parent would report the parent's size. VmHWM is the
    high-water mark of this process's own address space since exec.
    """
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, KiB on Linux
    try:
        with open("/proc/self/status") as f:
            own_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        own = own_kb / 1024
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return max(own, children * scale)


def run_pack_bench(settings: PackBenchSettings, log: Callable[[str], None] = print) -> PackBenchResult:
    from alm.data.docfile import iter_documents
    from alm.tokenizer import TokenizerConfig, train_tokenizer

    source = settings.corpus_dir or "the built-in corpus"
    next(corpus_documents(settings.corpus_dir))  # a bad --corpus-dir fails before any work
    work = Path(settings.work_dir or tempfile.mkdtemp(prefix="alm-bench-pack-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sizes = sorted(settings.sizes_mb)
        clean_dirs = {}
        for mb in sizes:  # each size is a prefix of the same document stream
            clean_dirs[mb] = work / f"clean-{mb:g}mb"
            log(f"writing a {mb:g} MB corpus from {source}")
            write_clean_split(clean_dirs[mb], corpus_documents(settings.corpus_dir), int(mb * 1e6))
        log(f"training a {settings.vocab_size}-token BPE on the {sizes[0]:g} MB corpus")
        tokenizer = train_tokenizer(
            iter_documents(clean_dirs[sizes[0]] / "train.txt"),
            work / "tokenizer",
            TokenizerConfig(vocab_size=settings.vocab_size),
            corpus_sha256="bench",
        )
        assert tokenizer.path is not None
        results = []
        for mb in sizes:
            splits = json.loads((clean_dirs[mb] / "stats.json").read_text())["splits"]
            text_bytes = splits["train"]["bytes"] + splits["val"]["bytes"]
            raw_runs: list[tuple[float, int]] = []
            pack_runs: dict[int, list[tuple[float, int, float]]] = {w: [] for w in settings.workers}
            for round_ in range(1, settings.rounds + 1):  # alternate, so load from other work hits both sides
                log(f"{mb:g} MB, round {round_}/{settings.rounds}: raw encode_batch_fast, then pack")
                raw_runs.append(measure_raw_splits(tokenizer.path, clean_dirs[mb]))
                for workers in settings.workers:
                    pack_runs[workers].append(
                        measure_pack(clean_dirs[mb], tokenizer.path, work / "packed", workers)
                    )
            raw_s = statistics.median(r[0] for r in raw_runs)
            raw_tokens = raw_runs[0][1]
            size = SizeResult(mb, text_bytes, raw_s, text_bytes / raw_s / 1e6, raw_tokens / raw_s)
            for workers, runs in pack_runs.items():
                seconds = statistics.median(r[0] for r in runs)
                rss = max(r[2] for r in runs)
                mbps = text_bytes / seconds / 1e6
                size.packs.append(
                    PackRun(
                        workers,
                        seconds,
                        runs[0][1],
                        mbps,
                        runs[0][1] / seconds,
                        rss,
                        mbps / size.raw_mb_per_s,
                    )
                )
            results.append(size)
    finally:
        if not settings.keep and settings.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    settings_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return PackBenchResult(settings_dict, environment(), results)


def _child(clean_dir: str, tokenizer_path: str, out_dir: str, workers: str) -> None:
    """Pack one corpus and print {"seconds", "tokens", "peak_rss_mb"} as the last line of stdout."""
    from alm.data.config import PackingConfig
    from alm.data.pack import pack_dataset

    start = time.perf_counter()
    manifest = pack_dataset(
        Path(clean_dir), Path(tokenizer_path), Path(out_dir), PackingConfig(workers=int(workers))
    )
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "tokens": manifest["total_tokens"], "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    _child(*sys.argv[1:5])
