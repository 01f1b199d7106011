"""Fixtures for the export/import tests: one real tokenizer and one memorised tiny run per exportable variant,
built once per session, and (for the slow tests) a run trained by the real trainer. transformers loads only
local files here (HF_HUB_OFFLINE)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from export_helpers import memorised_model, run_alm, save_run

from alm.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from testkit.corpus import shipped_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the network


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """alm's byte-level BPE with the reserved chat tokens, trained on a slice of the built-in corpus."""
    out = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer(
        shipped_text(40_000).split("\n\n"), out, TokenizerConfig(vocab_size=400, min_frequency=2)
    )


@pytest.fixture(scope="session")
def make_run(tmp_path_factory: pytest.TempPathFactory, tokenizer: Tokenizer) -> Callable[..., Path]:
    """make_run(name, overrides, chat=False) -> a saved run of a memorised model (cached per name for the
    session); `chat`: one fine-tuned for chat (`alm sft`), whose exports carry the chat template."""
    root = tmp_path_factory.mktemp("runs")
    made: dict[str, Path] = {}

    def make(name: str, overrides: dict, *, chat: bool = False) -> Path:
        if name not in made:
            model = memorised_model(tokenizer, **overrides)
            made[name] = save_run(root / name, model, tokenizer, chat=chat)
        return made[name]

    return make


TINY_MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 64}
TINY_TRAIN = {
    "steps": 30,
    "batch_size": 4,
    "lr": 3e-3,
    "warmup_steps": 2,
    "eval_interval": 15,
    "eval_batches": 2,
    "sample_interval": 0,
    "ckpt_interval": 15,
    "progress": "none",
}


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with runs/trained: 30 steps of `alm train` on a slice of the built-in corpus."""
    root = tmp_path_factory.mktemp("trained")
    (root / "corpus.txt").write_text(shipped_text(60_000), encoding="utf-8")
    corpus = {"sources": [{"type": "local", "paths": [str(root / "corpus.txt")]}], "root": str(root / "data")}
    (root / "corpus.yaml").write_text(yaml.safe_dump({**corpus, "tokenizer": {"vocab_size": 320}}))
    (root / "model.yaml").write_text(yaml.safe_dump(TINY_MODEL))
    (root / "train.yaml").write_text(yaml.safe_dump(TINY_TRAIN))
    args = ("--model", "model.yaml", "--train", "train.yaml", "--data", "corpus.yaml", "--run", "trained")
    result = run_alm("train", *args, "--progress", "none", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers Llama saved to disk with its own special ids (<s> = 1, </s> = 2), taught one line."""
    from hf_models import save_llama

    return save_llama(tmp_path_factory.mktemp("hf-llama"))
