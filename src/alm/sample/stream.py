"""Generation as iterators, over the `Engine`: tokens, text pieces of one sample, or several samples at once.

`generate(model, tokenizer, prompt, cfg, device=...)` returns a `TextStream`, an iterator of text pieces that the
CLI, the dashboard and the in-training samples consume; `generate_tokens` is the same at the token level;
`generate_many` draws several samples as one batch. The model is switched to eval mode while they run and put
back as it was when they end or are closed; between tokens, the caller's code runs outside inference mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from alm.errors import UsageError
from alm.sample.decoder import CompileMode
from alm.sample.engine import CancelHook, Engine, Event, GenerationInfo, GenSequence
from alm.sample.options import SamplingConfig

if TYPE_CHECKING:
    from alm.model.transformer import Transformer


def _run(model: Transformer, engine: Engine) -> Generator[Event]:
    """Step `engine` until it is idle, the model in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        while engine.busy:
            yield from engine.step()
    finally:
        model.train(was_training)


def generate_tokens(
    model: Transformer,
    prompt_ids: Sequence[int],
    cfg: SamplingConfig,
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
    eos_id: int | None = None,
    info: GenerationInfo | None = None,
    compile: CompileMode = "off",
) -> Iterator[int]:
    """Yield new token ids one at a time (see alm.sample.engine for the context policy).

    `cancel` (a callable or threading.Event) is checked before each token. `eos_id` ends generation without
    being yielded. `info`, if given, is filled in as generation proceeds.
    """
    if not prompt_ids:
        raise UsageError("cannot generate from an empty prompt", hint="give at least one token of prompt")
    return _tokens(model, list(prompt_ids), cfg, torch.device(device), cancel, eos_id, info, compile)


def _tokens(model, prompt_ids, cfg, device, cancel, eos_id, info, compile) -> Iterator[int]:
    engine = Engine(model, device=device, compile=compile)
    engine.submit(prompt_ids, cfg, cancel=cancel, eos_id=eos_id, info=info)
    with contextlib.closing(_run(model, engine)) as events:
        for event in events:
            if event.token is not None:
                yield event.token


def _texts(model: Transformer, engine: Engine) -> Generator[tuple[int, str, bool]]:
    """(the sequence's `user` value, text piece, whether the sequence ended with it), for every non-empty piece
    and every end."""
    with contextlib.closing(_run(model, engine)) as events:
        for event in events:
            ended = event.token is None
            if event.text or ended:
                yield event.sequence.user, event.text, ended


def _pieces(texts: Generator[tuple[int, str, bool]]) -> Generator[str]:
    with contextlib.closing(texts):  # closing the generator stops the engine and restores the model's mode
        for _, text, _ in texts:
            if text:
                yield text


class TextStream(Iterator[str]):
    """Text pieces of one generation, safe to print as they come; `info` describes it (see GenerationInfo)."""

    def __init__(self, model: Transformer, engine: Engine, sequence: GenSequence):
        self.engine = engine
        self.sequence = sequence
        self.info = sequence.info
        self._pieces = _pieces(_texts(model, engine))

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop early (also stops the model loop and restores its train/eval mode)."""
        self._pieces.close()

    def text(self) -> str:
        """Consume the rest of the stream and return it as one string."""
        return "".join(self)


def generate(
    model: Transformer,
    tokenizer,
    prompt: str,
    cfg: SamplingConfig,
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
    compile: CompileMode = "off",
) -> TextStream:
    """Stream the continuation of `prompt` as text pieces (an Iterator[str] with an `info` attribute).

    The prompt is encoded and trimmed right away (so `info.prompt_trimmed` is known before iterating); tokens
    are generated lazily as the stream is consumed. An empty prompt starts a new document (from <|eos|>).
    """
    engine = Engine(model, device=device, tokenizer=tokenizer, compile=compile)
    return TextStream(model, engine, engine.submit(prompt, cfg, cancel=cancel))


class BatchStream(Iterator[tuple[int, str, bool]]):
    """Several samples decoded together, as (sample index, text piece, whether that sample has ended) for every
    piece and every end; `infos[i]` describes sample i."""

    def __init__(self, model: Transformer, engine: Engine, sequences: list[GenSequence]):
        self.engine = engine
        self.sequences = sequences
        self.infos = [seq.info for seq in sequences]
        self._pieces = _texts(model, engine)

    def __next__(self) -> tuple[int, str, bool]:
        return next(self._pieces)

    def close(self) -> None:
        self._pieces.close()


def generate_many(
    model: Transformer,
    tokenizer,
    prompt: str,
    cfgs: Sequence[SamplingConfig],
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
    compile: CompileMode = "off",
) -> BatchStream:
    """One sample of `prompt` per config, all decoded in one batch (`alm sample --num-samples`)."""
    engine = Engine(model, device=device, slots=len(cfgs), tokenizer=tokenizer, compile=compile)
    sequences = [engine.submit(prompt, cfg, cancel=cancel, user=i) for i, cfg in enumerate(cfgs)]
    return BatchStream(model, engine, sequences)
