"""Sampling and chatting from the dashboard: requests (from the knobs or an `alm sample …` line) and a session
that caches the run's model and streams samples or chat replies from it.

The session runs in one worker thread of the dashboard process. That is safe because the dashboard never trains
(training is always a subprocess), and it allows one job at a time (a sample or a reply) so there is never more
than one torch workload in this process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alm.errors import UsageError
from alm.rundir import RunDir


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: which checkpoint of the run, the prompt, and `alm.sample.SamplingConfig` fields."""

    prompt: str
    checkpoint: str | None = None  # None: best.pt when the run has one, else last.pt (as `alm sample`)
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    compile: bool = False  # compile the decode step (alm sample --compile)
    quantize: str | None = None  # "int8": quantised weights (alm sample --quantize)

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in sorted(self.options.items()) if v not in (None, (), []))
        return f"[{self.checkpoint or 'best, else last'}] {opts}".strip()


def checkpoint_choices(run_dir: Path) -> list[str]:
    """The checkpoints on disk, as `alm sample --checkpoint` names them: last, best, then step-N newest first."""
    run = RunDir(run_dir)
    names = [kind for kind in ("last", "best") if run.checkpoint(kind).is_file()]
    names += [f"step-{step}" for step, _ in reversed(run.step_checkpoints())]
    return names


def default_checkpoint(choices: list[str]) -> str | None:
    """What `alm sample` picks without --checkpoint: best.pt when the run has one, else last.pt."""
    for name in ("best", "last"):
        if name in choices:
            return name
    return choices[0] if choices else None


def chat_capable(run_dir: Path) -> bool:
    """Whether the run's tokenizer has the chat tokens, so its model can be talked to (`alm chat`)."""
    from alm.chat.format import has_chat_tokens
    from alm.errors import AlmError
    from alm.tokenizer import Tokenizer

    path = RunDir(run_dir).tokenizer_path
    if not path.is_file():
        return False
    try:
        return has_chat_tokens(Tokenizer.load(path))
    except AlmError:
        return False


@dataclass
class LoadedModel:
    key: tuple[str, int, str, str | None]  # (checkpoint path, mtime_ns, device, quantize)
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
        # alm.sample.GenerationInfo of the job running or last run (tokens so far, seed, trimming, stop reason)
        self.last_info: Any = None
        self.chat: Any = None  # the alm.chat.session.ChatSession of the Chat tab, made on its first message
        self.lock = threading.Lock()

    def load(self, checkpoint: str | None, device_name: str, quantize: str | None = None) -> LoadedModel:
        from alm.device import resolve_device
        from alm.model import quant
        from alm.train.checkpoint import load_model, resolve_checkpoint

        path = resolve_checkpoint(self.run_dir, checkpoint)
        device = resolve_device(device_name)
        key = (
            str(path.resolve()),
            path.stat().st_mtime_ns,
            str(device),
            quantize and quant.check_mode(quantize),
        )
        if self.loaded is None or self.loaded.key != key:
            self.loaded = None  # drop the old weights before loading new ones
            model, tokenizer, _config, step = load_model(path, checkpoint, device)
            if quantize is not None:
                quant.quantize(model, quantize)
            self.loaded = LoadedModel(key, model, tokenizer, step, device)
        return self.loaded

    def stream(self, request: SampleRequest, cancel: threading.Event) -> Iterator[str]:
        """Yield the text as it is generated (then `last_info` describes it); UsageError if a job is running."""
        from alm.sample import generate
        from alm.sample.options import sampling_config

        if not self.lock.acquire(blocking=False):
            raise UsageError("a sample is already being generated", hint="wait for it or cancel it (ctrl+c)")
        try:
            cfg = sampling_config(request.options)
            loaded = self.load(request.checkpoint, request.device, request.quantize)
            compile = "on" if request.compile else "off"
            stream = generate(
                loaded.model,
                loaded.tokenizer,
                request.prompt,
                cfg,
                device=loaded.device,
                cancel=cancel,
                compile=compile,
            )
            self.last_info = stream.info
            yield from stream
        finally:
            self.lock.release()

    def reply(
        self, request: SampleRequest, cancel: threading.Event, system: str | None = None
    ) -> Iterator[str]:
        """The Chat tab: add `request.prompt` as the user's message and stream the model's reply; the reply joins
        the conversation when it ends (also when cancelled). A new checkpoint keeps the conversation."""
        from alm.chat.session import ChatSession
        from alm.sample.options import sampling_config

        if not self.lock.acquire(blocking=False):
            raise UsageError("a reply is already being generated", hint="wait for it or cancel it (ctrl+c)")
        try:
            cfg = sampling_config(request.options)
            loaded = self.load(request.checkpoint, request.device, request.quantize)
            if self.chat is None or self.chat.model is not loaded.model:
                turns = list(self.chat.turns) if self.chat is not None else []
                self.chat = ChatSession(loaded.model, loaded.tokenizer, cfg, device=loaded.device)
                self.chat.turns = turns
            self.chat.cfg = cfg
            self.chat.set_system(system)
            stream = self.chat.reply(request.prompt, cancel=cancel)
            self.last_info = stream.info
            try:
                yield from stream
            finally:
                stream.close()
        finally:
            self.lock.release()

    def reset_chat(self) -> None:
        if self.chat is not None:
            self.chat.reset()
