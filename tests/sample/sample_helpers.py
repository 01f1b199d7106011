"""Helpers for sampling/eval tests: tiny real models, memorisation, and a saved run in the contract layout."""

from __future__ import annotations

from pathlib import Path

import torch

from alm.config import to_dict
from alm.model import ModelConfig, Transformer
from alm.tokenizer import Tokenizer


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    """Untied, with a large init so random logits are far from ties (greedy choices are then well defined)."""
    values = dict(
        vocab_size=vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=32,
        init_std=0.3,
        tie_embeddings=False,
    )
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(vocab_size: int = 64, seed: int = 0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_config(vocab_size, **overrides)).eval()


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
    for _ in range(steps):
        loss = model(x, targets=y).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def save_run(run_dir: Path, model: Transformer, tokenizer: Tokenizer, *, step: int = 10) -> Path:
    """A run directory in the contract layout, written with the training engineer's atomic checkpoint writer."""
    from alm.train.checkpoint import atomic_link, atomic_save

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tokenizer.json").write_bytes(Path(tokenizer.path).read_bytes())
    config = {"model": to_dict(model.config), "train": {}, "data": {"root": str(run_dir / "no-data")}}
    (run_dir / "config.yaml").write_text("# written by tests/sample\n")
    ckpt = {
        "format": "alm-checkpoint",
        "version": 1,
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "scaler": None,
        "step": step,
        "tokens_seen": 0,
        "loader": {},
        "rng": {},
        "config": config,
        "tokenizer": {"fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size},
        "metrics": {"best_val_loss": None},
    }
    path = atomic_save(ckpt, run_dir / "checkpoints" / f"step-{step:06d}.pt")
    atomic_link(path, run_dir / "checkpoints" / "last.pt")
    return path
