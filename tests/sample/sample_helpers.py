"""Helpers for sampling/eval tests: tiny real models (a 32-token context unless asked), memorisation, and a saved
run in the contract layout."""

from __future__ import annotations

from pathlib import Path

import torch

from alm.config import to_dict
from alm.data.config import DataConfig
from alm.model import ModelConfig, Transformer
from alm.tokenizer import Tokenizer
from testkit import models, runs
from testkit.threads import single_thread

# What the `parrot` fixture's model has memorised (an emoji and CJK split into byte tokens, a multi-token "END").
PARROT_PROMPT = "ROMEO:"
PARROT_CONTINUATION = " go 🙂漢字 now, THE END of it"


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    return models.tiny_config(vocab_size, **{"max_seq_len": 32, **overrides})


def tiny_model(vocab_size: int = 64, seed: int = 0, **overrides) -> Transformer:
    return models.tiny_model(vocab_size, seed, **{"max_seq_len": 32, **overrides})


def memorize(
    model: Transformer, sequences: list[list[int]], steps: int = 150, lr: float = 1e-2
) -> Transformer:
    """Train `model` until it reproduces `sequences` greedily (a real model that has learnt specific text)."""
    length = max(len(s) for s in sequences)
    x = torch.full((len(sequences), length - 1), 0, dtype=torch.long)
    y = torch.full((len(sequences), length - 1), -100, dtype=torch.long)
    for i, seq in enumerate(sequences):
        x[i, : len(seq) - 1] = torch.tensor(seq[:-1])
        y[i, : len(seq) - 1] = torch.tensor(seq[1:])
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with single_thread():
        for _ in range(steps):
            loss = model(x, targets=y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def save_run(
    run_dir: Path, model: Transformer, tokenizer: Tokenizer, *, step: int = 10, data: DataConfig | None = None
) -> Path:
    """`testkit.runs.save_run` with the run's data config (`alm eval` reads its val split from the packed data
    that config names); without one, a data root that does not exist."""
    section = to_dict(data) if data is not None else {"root": str(run_dir / "no-data")}
    return runs.save_run(run_dir, model, tokenizer, step=step, sections={"data": section})
