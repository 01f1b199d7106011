"""Fixtures for dashboard tests: runs in every status, a stand-in trainer, and a tiny real run with checkpoints
and a tokenizer for sampling (helpers in dashboard_helpers.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dashboard_helpers import SCRIPTED_TRAINER, T0, history, make_run, start_event, step_event, write_events


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """Four runs, one per status (running is this test process, which is alive and is Python)."""
    root = tmp_path / "runs"
    make_run(root, "finished-run", history("finished-run", steps=200, stop="finished"))
    make_run(root, "stopped-run", history("stopped-run", steps=150, stop="interrupted"))
    make_run(root, "nan-run", history("nan-run", steps=60, stop="nan"))
    make_run(root, "live-run", history("live-run", steps=80, stop=None), live_pid=os.getpid())
    return root


@pytest.fixture
def scripted_trainer(tmp_path: Path):
    """argv for the stand-in trainer: scripted_trainer(run_dir, mode) with mode 'run' or 'crash'."""
    script = tmp_path / "scripted_trainer.py"
    script.write_text(SCRIPTED_TRAINER)

    def argv(run_dir: Path, mode: str = "run") -> list[str]:
        return [sys.executable, str(script), str(run_dir), mode]

    return argv


@pytest.fixture(scope="session")
def sampled_run(tmp_path_factory) -> Path:
    """A real run directory: a tiny trained-from-scratch-free model (random init) + real tokenizer + checkpoints,
    saved in the checkpoint contract format with the training engineer's atomic writer."""
    import lzma
    from importlib.resources import files

    import torch

    from alm.config import to_dict
    from alm.data.config import TokenizerConfig
    from alm.fileio import atomic_link
    from alm.model import ModelConfig, Transformer
    from alm.tokenizer import train_tokenizer
    from alm.train.checkpoint import atomic_save, checkpoint_dict

    root = tmp_path_factory.mktemp("sampled") / "runs"
    run = root / "tiny"
    with lzma.open(str(files("alm") / "resources" / "corpora" / "tinyshakespeare.txt.xz"), "rt") as fh:
        text = fh.read(20_000)
    tok = train_tokenizer(
        text.split("\n\n"),
        run / "tok",
        TokenizerConfig(vocab_size=300, min_frequency=2),
        corpus_sha256="tests",
    )
    (run / "tokenizer.json").write_bytes(Path(tok.path).read_bytes())
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64
    )
    model = Transformer(cfg).eval()
    config = {"model": to_dict(cfg), "train": {}, "data": {}}
    (run / "config.yaml").write_text("model: {}\n")
    for step in (10, 20):
        ckpt = checkpoint_dict(
            model.state_dict(),
            step=step,
            tokens_seen=step * 64,
            config=config,
            tokenizer_fingerprint=tok.fingerprint,
            vocab_size=tok.vocab_size,
        )
        path = atomic_save(ckpt, run / "checkpoints" / f"step-{step:06d}.pt")
    atomic_link(path, run / "checkpoints" / "last.pt")
    events = [start_event("tiny", total_steps=20), step_event(10), step_event(20)]
    events.append(
        {
            "schema": 1,
            "type": "stop",
            "time": T0 + 21,
            "step": 20,
            "reason": "finished",
            "resume_command": None,
        }
    )
    write_events(run / "events.jsonl", events)
    return root
