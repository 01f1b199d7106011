"""A tiny real dataset (cleaned text, BPE tokenizer, shards) built once per session by the real pipeline, and
tiny model/train configs that train in well under a second per step on a CPU."""

from __future__ import annotations

import lzma
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from alm.config import load
from alm.data.config import DataConfig

TINY_MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 64}
TINY_TRAIN = {
    "steps": 12,
    "batch_size": 4,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "warmup_steps": 2,
    "eval_interval": 6,
    "eval_batches": 2,
    "sample_interval": 0,
    "log_interval": 1,
    "ckpt_interval": 4,
    "keep_last": 2,
    "progress": "none",
}


@dataclass(frozen=True)
class TinyData:
    root: Path
    corpus_yaml: Path
    model_yaml: Path
    train_yaml: Path
    model: dict
    train: dict

    def config(self) -> DataConfig:
        return load(DataConfig, self.corpus_yaml)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    from alm.data.pipeline import ensure_dataset

    root = tmp_path_factory.mktemp("tiny-data")
    corpus = files("alm") / "resources" / "corpora" / "tinyshakespeare.txt.xz"
    with lzma.open(str(corpus), "rt", encoding="utf-8") as fh:
        (root / "corpus.txt").write_text(fh.read()[:60_000], encoding="utf-8")
    corpus_yaml = root / "corpus.yaml"
    corpus_yaml.write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": [str(root / "corpus.txt")]}],
                "root": str(root / "data"),
                "tokenizer": {"vocab_size": 320},
                "val_fraction": 0.1,
            }
        )
    )
    model_yaml, train_yaml = root / "tiny-model.yaml", root / "tiny-train.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MODEL))
    train_yaml.write_text(yaml.safe_dump(TINY_TRAIN))
    data = TinyData(root, corpus_yaml, model_yaml, train_yaml, dict(TINY_MODEL), dict(TINY_TRAIN))
    ensure_dataset(data.config())
    return data
