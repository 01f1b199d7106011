"""Tiny real runs for the export/import tests: a real BPE tokenizer, models of each exportable variant that have
memorised a line (so greedy decoding and its stop at <|eos|> are well defined), saved in the run-dir contract."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from alm.config import to_dict
from alm.model import ModelConfig, Transformer
from alm.tokenizer import Tokenizer
from testkit import runs
from testkit.threads import single_thread

# Strings whose ids transformers' and llama.cpp's tokenizers must reproduce exactly.
HARD_STRINGS = [
    "  two spaces,   three, \t\ttabs and a trailing space ",
    "Windows\r\nline ends\r\n\r\nand a blank one",
    "emoji with joiners: 👨‍👩‍👧‍👦 🏳️‍🌈 and skin tones 👍🏽",
    "漢字かな交じり文、中文標點。한국어",
    "digits 1234567890, 3.14159, -42, 1e-5, 2024-01-01",
    "\n\n\nleading newlines and 'quotes' it's we're",
    "accents: café naïve façade Ω≈ç√∫µ",
]
PROMPT = "ROMEO:"
CONTINUATION = " O, she doth teach the torches to burn bright!"
OTHER_PROMPT = "To be, or not to be"

GPT2_BLOCK = {"norm": "layernorm", "position": "learned", "ffn": "gelu"}
# Every architecture the Hugging Face export maps, by name.
HF_VARIANTS = {
    "llama-mha-tied": {},
    "llama-gqa-untied": {"n_kv_heads": 2, "tie_embeddings": False},
    "llama-mqa-bias": {"n_kv_heads": 1, "bias": True},
    "gpt2-tied-bias": {**GPT2_BLOCK, "bias": True},
    "gpt2-untied": {**GPT2_BLOCK, "tie_embeddings": False},
}
LLAMA_VARIANTS = [name for name in HF_VARIANTS if name.startswith("llama")]


def tiny_config(vocab_size: int, **overrides) -> ModelConfig:
    values = {"vocab_size": vocab_size, "d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 96}
    return ModelConfig(**{**values, **overrides})


def fit(model: torch.nn.Module, loss: Callable[[], torch.Tensor], steps: int = 150) -> torch.nn.Module:
    """Adam steps on `loss()` until a tiny model has learnt its line; returns it in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    with single_thread():
        for _ in range(steps):
            value = loss()
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    return model.eval()


def memorised_model(tokenizer: Tokenizer, **overrides) -> Transformer:
    """A model that continues PROMPT with CONTINUATION and then emits <|eos|>."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(tokenizer.vocab_size, **overrides))
    ids = torch.tensor([[*tokenizer.encode(PROMPT + CONTINUATION), tokenizer.eos_id]])
    fit(model, lambda: model(ids[:, :-1], targets=ids[:, 1:]).loss)
    return model


def save_run(
    run_dir: Path, model: Transformer, tokenizer: Tokenizer, *, step: int = 150, chat: bool = False
) -> Path:
    """A run directory in the contract layout (config, tokenizer, events, checkpoints/last.pt); `chat`: a run
    fine-tuned for chat, whose config records its `finetune` section as `alm sft` writes it."""
    sections: dict = {
        "train": {"steps": step},
        "data": {"sources": [{"type": "builtin", "name": "tinyshakespeare"}]},
    }
    if chat:
        sections["finetune"] = {"mode": "sft", "data": str(run_dir / "chat.jsonl")}
    config = {"model": to_dict(model.config), **sections}
    command = ["/some/venv/bin/alm", "train", "--run", run_dir.name]
    events = [
        {"type": "start", "run": run_dir.name, "config": config, "total_steps": step, "command": command},
        {"type": "step", "step": step // 2, "tokens": 4800, "loss": 2.5},
        {"type": "eval", "step": step // 2, "val_loss": 2.25, "val_bpb": 1.5, "best_val_loss": 2.25},
        {"type": "step", "step": step, "tokens": 9600, "loss": 0.5},
        {"type": "eval", "step": step, "val_loss": 2.5, "val_bpb": 1.625, "best_val_loss": 2.25},
        {"type": "step", "step": step * 2, "tokens": 19200, "loss": 0.25},  # after the checkpoint
    ]
    runs.save_run(
        run_dir,
        model,
        tokenizer,
        step=step,
        tokens_seen=9600,
        sections=sections,
        config_yaml=None,
        events=events,
    )
    return run_dir


def alm_greedy(model: Transformer, ids: Sequence[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
    """alm's greedy continuation (stops at eos_id, which is not included)."""
    from alm.sample import SamplingConfig, generate_tokens

    cfg = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    with single_thread():
        return list(generate_tokens(model, ids, cfg, device="cpu", eos_id=eos_id))


def hf_greedy(hf_model, ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """transformers' greedy continuation, with the eos it stopped on (if any) removed."""
    with torch.no_grad(), single_thread():
        out = hf_model.generate(
            torch.tensor([list(ids)]), max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
        )
    new = out[0, len(ids) :].tolist()
    eos = hf_model.generation_config.eos_token_id
    return new[:-1] if new and new[-1] == eos else new


def run_alm(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m alm ARGS` in `cwd`: offline, one thread, an empty Hugging Face home, no token unless given."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environment.update({"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(cwd / "hf-home")})
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "alm", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
