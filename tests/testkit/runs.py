"""A run directory in the contract layout (tokenizer.json, config.yaml, events.jsonl, checkpoints/step-N.pt and
last.pt), written with the real checkpoint builder and atomic writer."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from alm.config import to_dict
from alm.model import Transformer
from alm.tokenizer import Tokenizer

# config.yaml for runs whose config only the checkpoint holds (a comment: not a run's config to `is_alm_run`).
PLACEHOLDER_CONFIG = "# written by the tests: the checkpoint holds the config\n"


def write_events(path: Path, records: Sequence[Mapping]) -> None:
    """events.jsonl records (schema 1, stamped now unless a record has its own time) as the trainer writes them."""
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps({"schema": 1, "time": time.time(), **record}) + "\n")


def save_run(
    run_dir: Path,
    model: Transformer,
    tokenizer: Tokenizer,
    *,
    step: int = 7,
    tokens_seen: int = 0,
    sections: Mapping[str, object] | None = None,
    config_yaml: str | None = PLACEHOLDER_CONFIG,
    events: Sequence[Mapping] | None = None,
) -> Path:
    """Save `model` as checkpoints/step-`step`.pt (last.pt names it too) and return that path. The config is the
    model's section, empty train/data sections, and `sections` over them; config.yaml is `config_yaml`, or the
    config itself as YAML when None; events.jsonl is written when `events` are given."""
    from alm.fileio import atomic_link
    from alm.train.checkpoint import atomic_save, checkpoint_dict

    run_dir.mkdir(parents=True, exist_ok=True)
    assert tokenizer.path is not None
    (run_dir / "tokenizer.json").write_bytes(Path(tokenizer.path).read_bytes())
    config = {"model": to_dict(model.config), "train": {}, "data": {}, **(sections or {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config) if config_yaml is None else config_yaml)
    if events is not None:
        write_events(run_dir / "events.jsonl", events)
    ckpt = checkpoint_dict(
        model.state_dict(),
        step=step,
        tokens_seen=tokens_seen,
        config=config,
        tokenizer_fingerprint=tokenizer.fingerprint,
        vocab_size=tokenizer.vocab_size,
    )
    path = atomic_save(ckpt, run_dir / "checkpoints" / f"step-{step:06d}.pt")
    atomic_link(path, run_dir / "checkpoints" / "last.pt")
    return path
