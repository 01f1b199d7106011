"""Helpers for sampling/eval tests: tiny real models, memorisation, and a saved run in the contract layout."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from alm.config import to_dict
from alm.model import ModelConfig, Transformer
from alm.tokenizer import Tokenizer

# What the `parrot` fixture's model has memorised (an emoji and CJK split into byte tokens, a multi-token "END").
PARROT_PROMPT = "ROMEO:"
PARROT_CONTINUATION = " go 🙂漢字 now, THE END of it"


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a shared 2-core machine a second spinning OpenMP thread
    makes each small matmul wait on the other test processes (measured: 5 ms -> 700 ms per training step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    with single_thread():
        for _ in range(steps):
            loss = model(x, targets=y).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def save_run(
    run_dir: Path, model: Transformer, tokenizer: Tokenizer, *, step: int = 10, data_root: Path | None = None
) -> Path:
    """A run directory in the contract layout, written with the training engineer's atomic checkpoint writer."""
    from alm.fileio import atomic_link
    from alm.train.checkpoint import atomic_save, checkpoint_dict

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "tokenizer.json").write_bytes(Path(tokenizer.path).read_bytes())
    data_root = data_root if data_root is not None else run_dir / "no-data"
    config = {"model": to_dict(model.config), "train": {}, "data": {"root": str(data_root)}}
    (run_dir / "config.yaml").write_text("# written by tests/sample\n")
    ckpt = checkpoint_dict(
        model.state_dict(),
        step=step,
        tokens_seen=0,
        config=config,
        tokenizer_fingerprint=tokenizer.fingerprint,
        vocab_size=tokenizer.vocab_size,
    )
    path = atomic_save(ckpt, run_dir / "checkpoints" / f"step-{step:06d}.pt")
    atomic_link(path, run_dir / "checkpoints" / "last.pt")
    return path
