"""Helpers for fine-tuning tests: parent runs in the contract layout (tiny real models with real tokenizers, with
and without the chat tokens), chat data files, and the tiny train settings `alm sft` / `alm dpo` run with.
The tokenizers, models and runs come from `testkit`."""

from __future__ import annotations

import json
from pathlib import Path

from alm.events import Event, StepEvent, read_events
from alm.tokenizer import Tokenizer
from testkit.chat import EXCHANGES
from testkit.models import tiny_model
from testkit.runs import save_run

# Tiny, fast, deterministic: log every step so step-by-step comparisons see every loss.
TINY = {
    "steps": 8,
    "batch_size": 4,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "warmup_steps": 1,
    "eval_interval": 4,
    "eval_batches": 2,
    "log_interval": 1,
    "ckpt_interval": 4,
    "progress": "none",
    "device": "cpu",
}


def tiny_sets(**changes: object) -> list[str]:
    values = {**TINY, **changes}
    return [arg for key, value in values.items() for arg in ("--set", f"train.{key}={value}")]


def make_parent(run_dir: Path, tokenizer: Tokenizer, *, seed: int = 0, best_step: int | None = 5) -> Path:
    """A trained-looking run: last.pt at step 7 and, unless best_step is None, best.pt at `best_step` (other
    weights, so which one a fine-tuning run started from shows)."""
    from alm.fileio import atomic_link

    last = save_run(run_dir, tiny_model(tokenizer.vocab_size, seed=seed), tokenizer, step=7)
    if best_step is not None:
        best = save_run(run_dir, tiny_model(tokenizer.vocab_size, seed=seed + 1), tokenizer, step=best_step)
        atomic_link(best, run_dir / "checkpoints" / "best.pt")
        atomic_link(last, run_dir / "checkpoints" / "last.pt")  # save_run pointed last.pt at best_step
    return run_dir


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def conversations(n: int = 24) -> list[dict]:
    """Short question/answer conversations (the chat fixtures' exchanges and arithmetic)."""
    records = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in EXCHANGES
    ]
    records += [
        {"prompt": f"What is {i} + {i + 1}?", "completion": str(2 * i + 1)} for i in range(n - len(records))
    ]
    return records


def preferences(n: int = 16) -> list[dict]:
    return [
        {"prompt": f"What is {i} + {i}?", "chosen": str(2 * i), "rejected": str(2 * i + 1)} for i in range(n)
    ]


def step_events(run: Path) -> list[StepEvent]:
    return [e for e in read_events(run / "events.jsonl") if isinstance(e, StepEvent)]


def events_of(run: Path, kind: type[Event]) -> list:
    return [e for e in read_events(run / "events.jsonl") if isinstance(e, kind)]
