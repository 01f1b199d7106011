"""The tokenizer stage: train a tokenizer on the clean train split unless an up-to-date one is already there, or
copy in the tokenizer.json the settings name (`tokenizer.file`: another run's, which its model was trained with).

A trained tokenizer's inputs are its settings and the sha256 of the text it learns from; a copied one's are the
file's path and fingerprint, so a changed file is copied again (and the shards re-packed after it). Training
itself lives in `alm.tokenizer.train`; this module decides whether it is needed and reports on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alm.data.stage import announce, check_output, progress_task, read_json, signature
from alm.errors import DataError
from alm.fileio import atomic_write, atomic_write_json
from alm.tokenizer.config import TokenizerConfig
from alm.tokenizer.tokenizer import META_FILE, TOKENIZER_FILE, Tokenizer
from alm.tokenizer.train import train_tokenizer

REBUILD_HINT = "rebuild it with `alm tokenizer train --force`, or build elsewhere with --set data.root=DIR"


def tokenizer_inputs(cfg: TokenizerConfig, corpus_sha256: str) -> dict[str, Any]:
    return {"tokenizer": cfg.settings(), "corpus_sha256": corpus_sha256}


def build_tokenizer(
    documents: Iterable[str],
    out_dir: Path,
    cfg: TokenizerConfig,
    *,
    corpus_sha256: str,
    force: bool = False,
    rebuild: bool = False,
    console: Any = None,
) -> Tokenizer:
    """The tokenizer in `out_dir` for `cfg` trained on `documents` (whose text has `corpus_sha256`), trained now
    unless it is already there; a tokenizer of the same settings built from other text is replaced."""
    out_dir = Path(out_dir)
    inputs = tokenizer_inputs(cfg, corpus_sha256)
    reason = _why_build(out_dir, inputs, "corpus_sha256", force=force, rebuild=rebuild, console=console)
    if reason is None:
        return Tokenizer.load(out_dir / TOKENIZER_FILE)
    if reason not in (None, "not built yet", "rebuild requested"):
        announce(console, f"retraining the tokenizer in {out_dir}: {reason}")
    with progress_task(console, f"training {cfg.type} tokenizer", total=cfg.max_bytes) as advance:
        tok = train_tokenizer(
            documents,
            out_dir,
            cfg,
            corpus_sha256=corpus_sha256,
            progress=advance,
            extra_meta={"signature": signature(inputs), "inputs": inputs},
        )
    meta = tok.meta or {}
    if tok.vocab_size < cfg.vocab_size and console is not None:
        console.print(
            f"[yellow]warning:[/] the sample only supports {tok.vocab_size} tokens "
            f"(asked for {cfg.vocab_size}); a larger corpus gives the full vocabulary"
        )
    announce(
        console,
        f"trained a {cfg.type} tokenizer ({tok.vocab_size:,} tokens) on "
        f"{meta.get('sample', {}).get('bytes', 0) / 1e6:.1f} MB in {meta.get('seconds', 0):.1f} s -> {tok.path}",
    )
    return tok


def copy_tokenizer(
    out_dir: Path, cfg: TokenizerConfig, *, force: bool = False, rebuild: bool = False, console: Any = None
) -> Tokenizer:
    """The tokenizer.json `cfg.file` names, with the tokenizer.meta.json beside it (which tokens play bos/eos/pad
    in an imported tokenizer), copied into `out_dir` unless an identical copy is there. Should the file be gone
    since (its run deleted), the copy made from it serves."""
    assert cfg.file is not None
    source = Path(cfg.file).expanduser()
    if not source.is_file():
        if _intact(out_dir):
            announce(console, f"{source} is gone; using the copy of it in {out_dir}")
            return Tokenizer.load(out_dir / TOKENIZER_FILE)
        raise DataError(
            f"data.tokenizer.file: {source} not found",
            hint="name an existing tokenizer.json (a run's: runs/NAME/tokenizer.json), or set "
            "data.tokenizer.file=null to train one",
        )
    data = source.read_bytes()
    inputs = {"tokenizer": cfg.settings(), "fingerprint": hashlib.sha256(data).hexdigest()}
    if _why_build(out_dir, inputs, "fingerprint", force=force, rebuild=rebuild, console=console) is None:
        return Tokenizer.load(out_dir / TOKENIZER_FILE)
    tokenizer = Tokenizer.load(source)  # refuses a file that is no tokenizer.json, before anything is written
    meta = {
        **(tokenizer.meta or {}),
        "fingerprint": tokenizer.fingerprint,  # what `_intact` checks the copy against
        "copied_from": str(source),
        "signature": signature(inputs),
        "inputs": inputs,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / TOKENIZER_FILE, lambda fh: fh.write(data))
    atomic_write_json(out_dir / META_FILE, meta)  # last: a copy killed before this is caught by `_intact`
    announce(console, f"copied the tokenizer {source} ({tokenizer.vocab_size:,} tokens) -> {out_dir}")
    return Tokenizer.load(out_dir / TOKENIZER_FILE)


def _why_build(
    out_dir: Path, inputs: dict[str, Any], derived: str, *, force: bool, rebuild: bool, console: Any
) -> str | None:
    """Why the tokenizer in `out_dir` must be (re)built for `inputs` (`derived`: the upstream digest among
    them); None, said on the console, when it is up to date and intact."""
    reason = check_output(
        out_dir,
        META_FILE,
        inputs,
        force=force,
        rebuild=rebuild,
        derived=(derived,),
        what="a tokenizer",
        hint=REBUILD_HINT,
    )
    if reason is None and not _intact(out_dir):
        return "tokenizer.json is damaged or incomplete"
    if reason is None:
        announce(console, f"tokenizer in {out_dir} is up to date")
    return reason


def _intact(out_dir: Path) -> bool:
    """tokenizer.json is the file its meta describes (a save killed between the two files is caught here)."""
    meta = read_json(out_dir / META_FILE) or {}
    file = out_dir / TOKENIZER_FILE
    return file.is_file() and hashlib.sha256(file.read_bytes()).hexdigest() == meta.get("fingerprint")


__all__ = ["REBUILD_HINT", "build_tokenizer", "copy_tokenizer", "tokenizer_inputs"]
