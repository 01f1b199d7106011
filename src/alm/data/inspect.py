"""Describing what is on disk — a data root, a stage directory, a shard, a tokenizer — as plain dicts.

`alm data info` and `alm tokenizer info` print these (as text or `--json`), so both views say the same thing.
Cheap checks always run (shard headers and sizes against the manifest, tokenizer.json against its meta); with
`verify=True` the payloads are read too (shard sha256 and every token id, clean text sha256). Problems are
collected under "problems" rather than raised, so one report shows all of them; `problems(report)` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alm.config import from_dict
from alm.data.config import DataConfig
from alm.data.layout import MANIFEST_FILE, SETTINGS_FILE, data_paths
from alm.data.prepare import STATS_FILE
from alm.data.settings import read_settings
from alm.data.shards import open_split, read_header, read_manifest, verify_split
from alm.data.split import describe_split
from alm.data.stage import read_json, sha256_file
from alm.errors import DataError, UsageError
from alm.tokenizer.special import CHAT_TOKENS
from alm.tokenizer.tokenizer import META_FILE, TOKENIZER_FILE, Tokenizer


def describe(path: str | Path, *, verify: bool = False) -> dict[str, Any]:
    """Whatever `path` is: a shard (.bin), a manifest/stats.json/tokenizer.json, a stage directory or a root."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist", hint="pass a shard, a manifest, or a data directory")
    if path.is_file():
        if path.suffix == ".bin":
            return describe_shard(path)
        if path.name == TOKENIZER_FILE:
            return describe_tokenizer(path)
        kind = (read_json(path) or {}).get("format")
        if kind in ("alm-packed", "alm-clean"):
            return describe(path.parent, verify=verify)
        raise UsageError(f"{path} is not a shard, manifest, stats.json or tokenizer.json written by alm")
    for marker, describer in ((MANIFEST_FILE, describe_packed), (STATS_FILE, describe_clean)):
        if (path / marker).is_file():
            return describer(path, verify=verify)
    if (path / TOKENIZER_FILE).is_file():
        return describe_tokenizer(path)
    return describe_root(path, verify=verify)


def describe_root(root: Path, *, verify: bool = False) -> dict[str, Any]:
    """Every stage under a data root, and which tokenizer/packing its recorded settings select."""
    stages: dict[str, list[dict[str, Any]]] = {"clean": [], "tokenizers": [], "packed": []}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / STATS_FILE).is_file():
            stages["clean"].append(describe_clean(sub, verify=verify))
        if (sub / TOKENIZER_FILE).is_file():
            stages["tokenizers"].append(describe_tokenizer(sub))
        if (sub / MANIFEST_FILE).is_file():
            stages["packed"].append(describe_packed(sub, verify=verify))
    recorded = read_settings(root)
    if recorded is None and not any(stages.values()):
        raise UsageError(
            f"nothing alm wrote was found in {root}", hint="build it with `alm data prepare` / `alm pack`"
        )
    current = None
    if recorded is not None:
        paths = data_paths(
            from_dict(DataConfig, {**recorded, "root": str(root)}, source=str(root / SETTINGS_FILE))
        )
        current = {"tokenizer": paths.tokenizer_dir.name, "packed": paths.packed_dir.name}
    return {"kind": "root", "path": str(root), "settings": recorded, "current": current, **stages}


def describe_clean(clean_dir: Path, *, verify: bool = False) -> dict[str, Any]:
    stats = read_json(clean_dir / STATS_FILE) or {}
    problems = []
    if verify:
        for split, entry in stats.get("splits", {}).items():
            file = clean_dir / entry.get("file", f"{split}.txt")
            if not file.is_file() or sha256_file(file) != entry.get("sha256"):
                problems.append(f"{file}: missing or its sha256 does not match stats.json")
    split = stats.get("split") or {"method": "hash"}  # text prepared before the split option was hash-split
    return {
        "kind": "clean",
        "path": str(clean_dir),
        "source": stats.get("source"),
        "split": {**split, "description": describe_split(split)},
        "splits": stats.get("splits", {}),
        "dropped": stats.get("dropped", {}),
        "verified": verify and not problems,
        "problems": problems,
    }


def describe_tokenizer(path: Path) -> dict[str, Any]:
    tok = Tokenizer.load(path)
    meta = tok.meta or {}
    problems = []
    if meta.get("fingerprint") not in (None, tok.fingerprint):
        problems.append(f"{tok.path} is not the file {META_FILE} describes (fingerprint differs)")
    return {
        "kind": "tokenizer",
        "path": str(tok.path),
        "backend": tok.backend_type,
        "vocab_size": tok.vocab_size,
        "fingerprint": tok.fingerprint,
        "special_ids": {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id},
        "chat_ids": {name: tok.token_id(name) for name in CHAT_TOKENS},
        "settings": (meta.get("inputs") or {}).get("tokenizer"),
        "corpus_sha256": meta.get("corpus_sha256"),
        "sample": meta.get("sample"),
        "seconds": meta.get("seconds"),
        "problems": problems,
    }


def describe_packed(packed_dir: Path, *, verify: bool = False) -> dict[str, Any]:
    manifest = read_manifest(packed_dir)
    problems = []
    for split in manifest.get("splits", {}):
        try:
            if verify:
                verify_split(packed_dir, manifest, split)
            else:
                open_split(packed_dir, manifest, split)
        except DataError as exc:
            problems.append(exc.message)
    splits = {
        name: {
            "tokens": s["tokens"],
            "shards": len(s["shards"]),
            "documents": s["documents"],
            "source_bytes": s["source_bytes"],
            "bytes_per_token": s["source_bytes"] / s["tokens"] if s["tokens"] else 0.0,
        }
        for name, s in manifest.get("splits", {}).items()
    }
    return {
        "kind": "packed",
        "path": str(packed_dir),
        "tokenizer_fingerprint": manifest.get("tokenizer_fingerprint"),
        "vocab_size": manifest.get("vocab_size"),
        "total_tokens": manifest.get("total_tokens"),
        "splits": splits,
        "verified": verify and not problems,
        "problems": problems,
    }


def describe_shard(path: Path) -> dict[str, Any]:
    header = read_header(path)  # a truncated or foreign file is a DataError here
    return {
        "kind": "shard",
        "path": str(path),
        "version": header.version,
        "num_tokens": header.num_tokens,
        "token_bytes": header.token_bytes,
        "vocab_size": header.vocab_size,
    }


def problems(report: dict[str, Any]) -> list[str]:
    """Every problem found anywhere in a report."""
    found = list(report.get("problems", []))
    for key in ("clean", "tokenizers", "packed"):
        for part in report.get(key, []):
            found.extend(part.get("problems", []))
    return found


__all__ = [
    "describe",
    "describe_clean",
    "describe_packed",
    "describe_root",
    "describe_shard",
    "describe_tokenizer",
    "problems",
]
