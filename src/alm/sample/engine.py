"""The generation engine: sequences join and leave between steps, and each step decodes one token for every
active sequence in one forward pass (continuous batching over a `Decoder`'s slots).

```python
engine = Engine(model, device=dev, slots=8, tokenizer=tok)       # model in eval mode
seq = engine.submit("ROMEO:", SamplingConfig(...), cancel=event)  # or token ids; queued until a slot is free
while engine.busy:
    for event in engine.step():                                  # Event(sequence, token | None, text)
        ...
seq.info                                                          # GenerationInfo: tokens, stop reason, seed
```

Each sequence has its own sampling config, random generator (so a seed reproduces its sample whatever else is
in the batch), repetition-penalty mask, stop strings, token budget and cancel hook. Greedy rows are picked with
one argmax over the batch; the others are drawn row by row. The host waits for the device once per step, for
the sampled tokens.

Context policy (the model sees at most `max_seq_len` tokens):
- A prompt longer than the context keeps its last `max_seq_len` tokens; the number dropped is in
  `info.prompt_trimmed` from `submit` on.
- When a sequence's context is full, its window slides: its slot is prefilled again with the last
  `slide_keep(max_seq_len)` tokens (3/4 of the window, ending with the newest token) and decoding continues.
  Positions restart at 0, as in training; the cost of one re-prefill is paid every max_seq_len/4 tokens.

A sequence's tokens depend only on its own prompt, config and seed: rows never interact (the dual FFN's capacity
limit is a training-mode rule), so it generates the same tokens alone or batched — exactly, when the batch
shape is the same; across batch sizes up to float rounding of the batched matmuls, which can flip a near-tie.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch

from alm.errors import UsageError
from alm.sample.decoder import CompileMode, Decoder
from alm.sample.options import SamplingConfig
from alm.sample.processors import make_generator, presence_mask, sample_token
from alm.sample.text import DECODE_CONTEXT_TOKENS, StopMatcher, StreamDecoder, check_text

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

StopReason = Literal["length", "eos", "stop", "cancelled"]
CancelHook = Callable[[], bool] | threading.Event


@dataclass
class GenerationInfo:
    """What happened during one generation; filled in as it runs."""

    prompt_tokens: int = 0  # tokens of the prompt actually fed to the model
    prompt_trimmed: int = 0  # tokens dropped from the start of a prompt longer than the context
    new_tokens: int = 0
    slides: int = 0  # times the window slid (a fresh cache re-prefilled) because the context was full
    stop_reason: StopReason | None = None
    seed: int | None = None  # the seed actually used, so a random sample can be reproduced


def slide_keep(max_seq_len: int) -> int:
    """Tokens kept (re-prefilled) when the window slides: 3/4 of the context, at least 1."""
    return max(1, max_seq_len - max_seq_len // 4)


def fit_prompt(prompt_ids: Sequence[int], max_seq_len: int) -> tuple[list[int], int]:
    """Left-trim a prompt to the context; returns (kept ids, number dropped)."""
    ids = list(prompt_ids)
    dropped = max(0, len(ids) - max_seq_len)
    return ids[dropped:], dropped


def cancel_check(cancel: CancelHook | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


class TextState:
    """A sequence's text: UTF-8-safe pieces, stop strings cut out, and (with ignore_eos) document ends shown as
    blank lines."""

    def __init__(
        self, decode: Callable[[list[int]], str], context: Sequence[int], cfg: SamplingConfig, eos_id
    ):
        self._decode = decode
        self._boundary_id = eos_id if cfg.ignore_eos else None
        self.decoder = StreamDecoder(decode, context=list(context)[-DECODE_CONTEXT_TOKENS:])
        self.stops = StopMatcher(cfg.stop)

    def feed(self, token: int) -> str:
        if token == self._boundary_id:  # a document end: a blank line, then decoding starts afresh
            text = self.decoder.flush() + "\n\n"
            self.decoder = StreamDecoder(self._decode)
        else:
            text = self.decoder.push(token)
        return self.stops.feed(text)

    def finish(self) -> str:
        """What is still held back when the sequence ends (nothing once a stop string has matched)."""
        tail = self.stops.feed(self.decoder.flush())
        return tail + self.stops.flush()


@dataclass(eq=False)
class GenSequence:
    """One sequence in the engine: what it was asked for, and where it stands."""

    prompt_ids: list[int]
    cfg: SamplingConfig
    eos_ids: frozenset[int]  # tokens that end the sequence, not emitted
    cancelled: Callable[[], bool]
    info: GenerationInfo
    generator: torch.Generator
    text: TextState | None = None
    ids: list[int] = field(default_factory=list)  # prompt + generated: the window that slides
    tokens: list[int] = field(default_factory=list)  # generated, as emitted
    seen: torch.Tensor | None = None  # tokens present so far, for the repetition penalty
    slot: int | None = None
    user: Any = None  # free for the caller (a request id, a sample index)

    @property
    def done(self) -> bool:
        return self.info.stop_reason is not None

    def cancel(self) -> None:
        """Stop before its next token (from any thread: takes effect at the engine's next step)."""
        self.cancelled = lambda: True


class Event(NamedTuple):
    """A step's news about one sequence: a new token (text = its piece, possibly empty while a character or a
    possible stop string is held back), or token None when the sequence has ended (text = what was held back;
    `sequence.info.stop_reason` says why)."""

    sequence: GenSequence
    token: int | None
    text: str


class Engine:
    """Continuous batching over `slots` sequence slots; see the module doc."""

    def __init__(
        self,
        model: Transformer,
        *,
        device: torch.device | str,
        slots: int = 1,
        tokenizer: Any = None,
        compile: CompileMode = "off",
    ):
        self.model = model
        self.device = torch.device(device)
        self.tokenizer = tokenizer
        self.decoder = Decoder(model, slots, device=self.device, compile=compile)
        self.max_len = self.decoder.max_len
        self.vocab_size = model.config.require_vocab()
        self._waiting: deque[GenSequence] = deque()
        self._active: list[GenSequence | None] = [None] * slots
        self._logits = torch.zeros(slots, self.vocab_size, device=self.device)  # next-token logits per slot
        self._next = torch.zeros(slots, dtype=torch.long, device=self.device)

    # -- joining ---------------------------------------------------------------------------------------------
    def submit(
        self,
        prompt: str | Sequence[int],
        cfg: SamplingConfig,
        *,
        cancel: CancelHook | None = None,
        eos_id: int | Collection[int] | None = None,
        info: GenerationInfo | None = None,
        user: Any = None,
        decode: bool = False,
    ) -> GenSequence:
        """Queue a sequence; it joins the batch at the next step with a free slot.

        A text prompt needs the engine's tokenizer: events then carry text pieces, generation stops at the
        tokenizer's end of document (unless cfg.ignore_eos) and at cfg.stop strings, and an empty prompt starts
        a fresh document. Token ids generate tokens only, stopping at `eos_id` (one id or several) if given;
        with `decode=True` their events carry text pieces too, cut at cfg.stop strings (a chat prompt, rendered
        as ids). `info`, if given, is the GenerationInfo to fill in (else a new one: `sequence.info`)."""
        text = None
        if (isinstance(prompt, str) or decode) and self.tokenizer is None:
            raise UsageError("a text prompt (or decode=True) needs an engine made with a tokenizer")
        if isinstance(prompt, str):
            check_text(prompt)
            # An empty prompt starts a fresh document: packing puts <|eos|> before every document but the first.
            ids = self.tokenizer.encode(prompt) if prompt else [self.tokenizer.eos_id]
            eos_id = None if cfg.ignore_eos else self.tokenizer.eos_id
        else:
            ids = list(prompt)
        if not ids:
            raise UsageError("cannot generate from an empty prompt", hint="give at least one token of prompt")
        ids, dropped = fit_prompt(ids, self.max_len)
        generator = make_generator(cfg.seed, self.device)
        info = info if info is not None else GenerationInfo()
        info.prompt_tokens, info.prompt_trimmed, info.seed = len(ids), dropped, generator.initial_seed()
        if isinstance(prompt, str) or decode:
            text = TextState(self.tokenizer.decode, ids, cfg, self.tokenizer.eos_id)
        eos_ids = frozenset([eos_id] if isinstance(eos_id, int) else eos_id or ())
        seq = GenSequence(
            ids, cfg, eos_ids, cancel_check(cancel), info, generator, text, ids=list(ids), user=user
        )
        self._waiting.append(seq)
        return seq

    @property
    def busy(self) -> bool:
        """Whether any sequence is running or waiting."""
        return bool(self._waiting) or any(s is not None for s in self._active)

    @property
    def active(self) -> list[GenSequence]:
        return [s for s in self._active if s is not None]

    # -- one step --------------------------------------------------------------------------------------------
    def step(self) -> list[Event]:
        """Admit waiting sequences into free slots, pick a token for every running sequence, retire the ones
        that finished, and run one forward for the rest."""
        if self.model.training:
            raise UsageError("the engine decodes in eval mode", hint="call model.eval() first")
        events: list[Event] = []
        with torch.inference_mode():
            self._admit(events)
            running = [s for s in self._active if s is not None]
            for seq in running:
                if seq.cancelled():
                    self._finish(seq, "cancelled", events)
            running = [s for s in running if not s.done]
            if not running:
                return events
            tokens = self._sample(running)
            advancing = []
            for seq, token in zip(running, tokens, strict=True):
                if self._emit(seq, token, events):
                    advancing.append(seq)
            self._advance(advancing)
        return events

    def _admit(self, events: list[Event]) -> None:
        for seq in [s for s in self._waiting if s.cancelled()]:
            self._waiting.remove(seq)
            self._finish(seq, "cancelled", events)
        admitted: list[GenSequence] = []
        for slot, occupant in enumerate(self._active):
            while occupant is None and self._waiting:
                seq = self._waiting.popleft()
                if seq.cfg.max_new_tokens == 0:
                    self._finish(seq, "length", events)
                    continue
                seq.slot, self._active[slot], occupant = slot, seq, seq
                admitted.append(seq)
                if seq.cfg.repetition_penalty != 1.0:
                    seq.seen = presence_mask(seq.ids, self.vocab_size, self.device)
        if admitted:  # together: neighbouring prompts share a forward
            slots = [_slot(seq) for seq in admitted]
            logits = self.decoder.prefill_many(slots, [seq.ids for seq in admitted])
            self._logits[slots] = logits.float()  # a model in another dtype still samples from fp32 logits

    def _sample(self, running: list[GenSequence]) -> list[int]:
        """One token per running sequence, read back to the host together (the step's only sync)."""
        plain_greedy = [s for s in running if s.cfg.is_greedy and s.seen is None]
        if plain_greedy:
            self._next.copy_(self._logits.argmax(dim=-1))
        slots = [_slot(seq) for seq in running]
        for seq, slot in zip(running, slots, strict=True):
            if seq not in plain_greedy:
                rows = slice(slot, slot + 1)
                self._next[rows] = sample_token(
                    self._logits[rows], seq.cfg, seen=seq.seen, generator=seq.generator
                )
        chosen = self._next.tolist()
        return [chosen[slot] for slot in slots]

    def _emit(self, seq: GenSequence, token: int, events: list[Event]) -> bool:
        """Record one sampled token; whether the sequence goes on."""
        if token in seq.eos_ids:
            self._finish(seq, "eos", events)
            return False
        seq.ids.append(token)
        seq.tokens.append(token)
        seq.info.new_tokens += 1
        piece = seq.text.feed(token) if seq.text is not None else ""
        events.append(Event(seq, token, piece))
        if seq.text is not None and seq.text.stops.stopped:
            self._finish(seq, "stop", events)
            return False
        if seq.info.new_tokens >= seq.cfg.max_new_tokens:
            self._finish(seq, "length", events)  # the logits after the last token are never needed
            return False
        if seq.seen is not None:
            seq.seen[token] = True
        return True

    def _advance(self, advancing: list[GenSequence]) -> None:
        """Feed each continuing sequence its newest token: by sliding its window if its context is full, else
        in one batched decode step."""
        slid, decoding = {}, []
        for seq in advancing:
            slot = _slot(seq)
            if self.decoder.is_full(slot):  # slide first: a full row has no position left to decode at
                slid[slot] = self.decoder.prefill(slot, seq.ids[-slide_keep(self.max_len) :])[0]
                seq.info.slides += 1
            else:
                decoding.append(slot)
        if decoding:
            self._logits.copy_(self.decoder.step(self._next, decoding))
        for slot, logits in slid.items():
            self._logits[slot] = logits

    def _finish(self, seq: GenSequence, reason: StopReason, events: list[Event]) -> None:
        tail = ""
        if seq.text is not None and reason != "stop":
            tail = seq.text.finish()
            if seq.text.stops.stopped:  # the held-back tail completed a stop string
                reason = "stop"
        seq.info.stop_reason = reason
        events.append(Event(seq, None, tail))
        if seq.slot is not None:
            self._active[seq.slot] = None
            self.decoder.release(seq.slot)
            seq.slot = None


def _slot(seq: GenSequence) -> int:
    assert seq.slot is not None, "only a running sequence holds a slot"
    return seq.slot
