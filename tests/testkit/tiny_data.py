"""A tiny real dataset (cleaned text, BPE tokenizer, shards) built by the real pipeline, and tiny model/train
configs that train in well under a second per step on a CPU. The root conftest's `tiny_data` fixture builds it
once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from alm.config import load
from alm.data.config import DataConfig
from testkit.corpus import shipped_text

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


def build_tiny_data(root: Path, chars: int = 60_000, val_fraction: float = 0.1) -> TinyData:
    """The first `chars` characters of the built-in corpus under `root`, prepared, tokenized and packed."""
    from alm.data.pipeline import ensure_dataset

    (root / "corpus.txt").write_text(shipped_text(chars), encoding="utf-8")
    corpus_yaml = root / "corpus.yaml"
    corpus_yaml.write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": [str(root / "corpus.txt")]}],
                "root": str(root / "data"),
                "tokenizer": {"vocab_size": 320},
                "val_fraction": val_fraction,
            }
        )
    )
    model_yaml, train_yaml = root / "tiny-model.yaml", root / "tiny-train.yaml"
    model_yaml.write_text(yaml.safe_dump(TINY_MODEL))
    train_yaml.write_text(yaml.safe_dump(TINY_TRAIN))
    data = TinyData(root, corpus_yaml, model_yaml, train_yaml, dict(TINY_MODEL), dict(TINY_TRAIN))
    ensure_dataset(data.config())
    return data


def tiny_plan(tiny: TinyData, run_dir: Path, **train: object):
    """A RunPlan for the tiny model on the tiny data (no lock: in-process tests run one trainer per run)."""
    from alm.config import from_dict
    from alm.data.pipeline import data_paths
    from alm.model.config import ModelConfig
    from alm.rundir import RunDir
    from alm.train.config import TrainConfig
    from alm.train.launch import RunPlan
    from alm.train.run_config import RunConfig, finalize

    data_cfg = tiny.config()
    cfg = RunConfig(
        from_dict(ModelConfig, tiny.model), from_dict(TrainConfig, {**tiny.train, **train}), data_cfg
    )
    paths = data_paths(data_cfg)
    return RunPlan(
        run=RunDir(run_dir),
        config=finalize(cfg, 320),
        tokenizer_path=paths.tokenizer_path,
        packed_dir=paths.packed_dir,
        runs_root=run_dir.parent,
    )
