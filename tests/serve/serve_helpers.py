"""Helpers for server tests: runs in the contract layout (a chat run and a base run), a live server on a free
localhost port, and small HTTP clients. The chat model and tokenizer come from `testkit`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import torch

from alm.serve.config import ServeConfig
from alm.serve.model import ServedModel, served_model
from alm.serve.server import Server
from testkit.runs import save_run


def save_chat_run(run_dir: Path, model, tokenizer, *, finetune: bool) -> Path:
    """A run directory (its checkpoints/last.pt returned); `finetune` marks it as `alm sft` does (a `finetune`
    section in its config)."""
    sections = {"finetune": {"mode": "sft", "parent": "base"}} if finetune else None
    save_run(run_dir, model, tokenizer, sections=sections)
    return run_dir / "checkpoints" / "last.pt"


def load_served(checkpoint: Path, name: str) -> ServedModel:
    from alm.train.checkpoint import load_model

    model, tokenizer, config, step = load_model(checkpoint, device="cpu")
    return served_model(model, tokenizer, config, name=name, step=step, checkpoint=checkpoint)


def never_ends(model, tokenizer) -> None:
    """Zero the head's <|eos|> and <|end|> rows: their logit is then 0 while the top logit of a random model is
    large, so greedy decoding never picks them and a long generation runs to its token budget."""
    with torch.no_grad():
        for token in (tokenizer.eos_id, tokenizer.token_id("<|end|>")):
            model.head.weight[token].zero_()


@contextlib.contextmanager
def serving(served: ServedModel, **settings) -> Iterator[Server]:
    cfg = ServeConfig(**{"port": 0, "drain_seconds": 2.0, **settings})
    cfg.validate()
    server = Server(served, cfg).start()
    try:
        yield server
    finally:
        server.stop()


def post(server: Server, path: str, body, *, headers=None, timeout: float = 60.0) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"Content-Type": "application/json", **(headers or {})}
    return httpx.post(server.url + path, content=content, headers=headers, timeout=timeout)


def sse_events(lines: Iterator[str]) -> Iterator[dict | str]:
    """The `data:` payloads of a server-sent event stream (JSON objects, or the final "[DONE]")."""
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            yield data if data == "[DONE]" else json.loads(data)


def health(server: Server) -> dict:
    return httpx.get(server.url + "/health", timeout=10).json()
