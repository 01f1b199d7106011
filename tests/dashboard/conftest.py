"""Fixtures for dashboard tests: runs in every status, a stand-in trainer, and a tiny real run with checkpoints
and a tokenizer for sampling (helpers in dashboard_helpers.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dashboard_helpers import SCRIPTED_TRAINER, T0, history, make_run, start_event, step_event

from testkit.corpus import shipped_text
from testkit.runs import save_run


@pytest.fixture(autouse=True)
def dashboard_settings(tmp_path_factory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The dashboard's settings file (the remembered theme) lives in a temp dir: tests never touch ~/.config."""
    config = tmp_path_factory.mktemp("xdg-config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    return config / "alm" / "dashboard.json"


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
    import torch

    from alm.data.config import TokenizerConfig
    from alm.model import ModelConfig, Transformer
    from alm.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("sampled") / "runs"
    run = root / "tiny"
    tok = train_tokenizer(
        shipped_text(20_000).split("\n\n"),
        run / "tok",
        TokenizerConfig(vocab_size=300, min_frequency=2),
        corpus_sha256="tests",
    )
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64
    )
    model = Transformer(cfg).eval()
    stop = {"type": "stop", "time": T0 + 21, "step": 20, "reason": "finished", "resume_command": None}
    events = [start_event("tiny", total_steps=20), step_event(10), step_event(20), stop]
    for step in (10, 20):
        save_run(run, model, tok, step=step, tokens_seen=step * 64, config_yaml="model: {}\n", events=events)
    return root
