"""Sampling from the dashboard: requests (from the form or an `alm sample …` line) and a model-caching session.

The session runs in one worker thread of the dashboard process. That is safe because the dashboard never trains
(training is always a subprocess), and it allows one sampling job at a time so there is never more than one torch
workload in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alm.errors import UsageError
from alm.train.rundir import RunDir


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: which checkpoint of the run, the prompt, and `alm.sample.SamplingConfig` fields."""

    prompt: str
    checkpoint: str = "last"
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()) if v not in (None, (), []))
        return f"[{self.checkpoint}] {opts}".strip()


def checkpoint_choices(run_dir: Path) -> list[str]:
    """The checkpoints on disk, as `alm sample --checkpoint` names them: last, best, then step-N newest first."""
    run = RunDir(run_dir)
    names = [kind for kind in ("last", "best") if run.checkpoint(kind).is_file()]
    names += [f"step-{step}" for step, _ in reversed(run.step_checkpoints())]
    return names


@dataclass
class LoadedModel:
    key: tuple[str, int, str]  # (checkpoint path, mtime_ns, device)
    model: Any
    tokenizer: Any
    step: int
    device: Any


class SamplerSession:
    """Loads a run's checkpoint (once; again only when the file changes, e.g. last.pt during training) and
    streams text from it. One job at a time: a second `stream()` while one runs is refused."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.loaded: LoadedModel | None = None
        self.last_info: Any = (
            None  # alm.sample.GenerationInfo of the latest sample (seed, trimming, stop reason)
        )
        self.lock = threading.Lock()

    def load(self, checkpoint: str, device_name: str) -> LoadedModel:
        from alm.device import resolve_device
        from alm.train.checkpoint import load_model, resolve_checkpoint

        path = resolve_checkpoint(self.run_dir, checkpoint)
        device = resolve_device(device_name)
        key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
        if self.loaded is None or self.loaded.key != key:
            self.loaded = None  # drop the old weights before loading new ones
            model, tokenizer, _config, step = load_model(path, checkpoint, device)
            self.loaded = LoadedModel(key, model, tokenizer, step, device)
        return self.loaded

    def stream(self, request: SampleRequest, cancel: threading.Event) -> Iterator[str]:
        """Yield the text as it is generated (then `last_info` describes it); UsageError if a job is running."""
        from alm.config import from_dict
        from alm.sample import SamplingConfig, generate

        if not self.lock.acquire(blocking=False):
            raise UsageError("a sample is already being generated", hint="wait for it or cancel it (Esc)")
        try:
            cfg = from_dict(SamplingConfig, request.options, source="sampling options")
            loaded = self.load(request.checkpoint, request.device)
            stream = generate(
                loaded.model, loaded.tokenizer, request.prompt, cfg, device=loaded.device, cancel=cancel
            )
            self.last_info = stream.info
            yield from stream
        finally:
            self.lock.release()
