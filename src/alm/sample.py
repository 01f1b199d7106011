"""Sampling: logit processors, a UTF-8-safe streaming decoder and a KV-cached generator.

`generate(model, tokenizer, prompt, cfg, device=...)` returns a `TextStream`, an iterator of text pieces that the
CLI, the dashboard and the in-training samples all consume. `generate_tokens` is the same loop at the token level.

Context policy (the model sees at most `max_seq_len` tokens):

- A prompt longer than the context keeps its last `max_seq_len` tokens. The number dropped is in
  `TextStream.info.prompt_trimmed` as soon as `generate` returns, before the first token, so callers can say so.
- When the context fills up during generation, the window slides: a fresh cache is prefilled with the last
  `slide_keep(max_seq_len)` tokens (3/4 of the window, ending with the newest token) and decoding continues from
  there. Positions restart at 0, as in training, and the cost of one re-prefill is paid every max_seq_len/4 tokens.

Sampling stays on the model's device in float32 (no float64, which MPS lacks) and draws from a `torch.Generator`
seeded from `cfg.seed`, so a fixed seed reproduces a sample on the same device.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from alm.config import require
from alm.errors import UsageError

StopReason = Literal["length", "eos", "stop", "cancelled"]
CancelHook = Callable[[], bool] | threading.Event

# Tokens of the prompt re-decoded with each new piece so that spacing rules that depend on the previous token
# (e.g. a SentencePiece-style leading space) come out as they would in the full text.
_DECODE_CONTEXT_TOKENS = 5
# A UTF-8 character is at most 4 bytes; after this many tokens that still end in U+FFFD the model has produced
# genuinely invalid bytes, and holding them back longer would only stall the stream.
_MAX_HELD_TOKENS = 8


@dataclass
class SamplingConfig:
    """How to pick each next token. The processors apply in the order of the fields below."""

    repetition_penalty: float = 1.0  # >0; 1 = off. Seen tokens: positive logits /= p, negative logits *= p
    temperature: float = 0.8  # >=0; 0 means greedy
    top_k: int = 0  # keep the k most likely tokens; 0 = off (it does NOT mean greedy)
    top_p: float = 1.0  # nucleus: the smallest set with probability mass >= top_p; 1 = off
    min_p: float = 0.0  # drop tokens less likely than min_p * p(most likely); 0 = off
    greedy: bool = False  # always take the most likely token (after the repetition penalty)
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()  # stop when any of these appears; the stop string is not emitted
    seed: int | None = None  # None: a fresh random seed (reported in GenerationInfo.seed)
    ignore_eos: bool = False  # keep going past <|eos|> (a document end), which is then shown as a blank line

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)
        self.validate()

    def validate(self) -> None:
        require(
            self.temperature >= 0, "temperature", f"must be >= 0 (0 means greedy), got {self.temperature}"
        )
        require(self.top_k >= 0, "top_k", f"must be >= 0 (0 turns top-k off), got {self.top_k}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1] (1 turns top-p off), got {self.top_p}")
        require(0 <= self.min_p < 1, "min_p", f"must be in [0, 1) (0 turns min-p off), got {self.min_p}")
        require(
            self.repetition_penalty > 0,
            "repetition_penalty",
            f"must be > 0 (1 turns it off), got {self.repetition_penalty}",
        )
        require(self.max_new_tokens >= 0, "max_new_tokens", f"must be >= 0, got {self.max_new_tokens}")
        require(all(self.stop), "stop", "stop strings must not be empty")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def replace(self, **changes: object) -> SamplingConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class GenerationInfo:
    """What happened during one generation; filled in as it runs."""

    prompt_tokens: int = 0  # tokens of the prompt actually fed to the model
    prompt_trimmed: int = 0  # tokens dropped from the start of a prompt longer than the context
    new_tokens: int = 0
    slides: int = 0  # times the window slid (a fresh cache re-prefilled) because the context was full
    stop_reason: StopReason | None = None
    seed: int | None = None  # the seed actually used, so a random sample can be reproduced


# --- logit processors: pure functions on [..., V] float logits --------------------------------------------


def presence_mask(token_ids: Sequence[int] | torch.Tensor, vocab_size: int, device=None) -> torch.Tensor:
    """Bool [V] mask of the tokens that occur in `token_ids` (what the repetition penalty looks at)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=device)
    if ids.numel():
        mask[ids] = True
    return mask


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make seen tokens less likely whatever their sign: positive logits are divided, negative ones multiplied."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature == 1.0 else logits / temperature


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits (ties with the k-th are kept too); k = 0 or k >= V is a no-op."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches p (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times that of the most likely token."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process_logits(
    logits: torch.Tensor, cfg: SamplingConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """All of cfg's processors in order; the result's softmax is the distribution `sample_token` draws from."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
    if cfg.is_greedy:
        return logits
    logits = apply_temperature(logits, cfg.temperature)
    logits = apply_top_k(logits, cfg.top_k)
    logits = apply_top_p(logits, cfg.top_p)
    return apply_min_p(logits, cfg.min_p)


def sample_token(
    logits: torch.Tensor,
    cfg: SamplingConfig,
    *,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of [..., V] logits; returns int64 [...] on the logits' device (no host sync)."""
    logits = process_logits(logits, cfg, seen)
    if cfg.is_greedy:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    # argmax(p / E) with E ~ Exp(1) is an exact draw from p (the "exponential race"); unlike torch.multinomial it
    # needs no host sync and behaves the same on CPU, CUDA and MPS.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    race.clamp_min_(torch.finfo(race.dtype).tiny)  # a 0 draw would turn a masked token's 0/0 into NaN
    return (probs / race).argmax(dim=-1)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


# --- streaming text -------------------------------------------------------------------------------------


class StreamDecoder:
    """Turns token ids into text pieces, never splitting a multi-byte character.

    Decoding a token alone is wrong (byte tokens, leading-space rules), and decoding everything each step is
    quadratic. So it decodes a short tail: the tokens since the last emitted piece plus the ones just before
    them, and emits what that text gained over the same tail without the new tokens. Byte-level decoders turn an
    incomplete UTF-8 sequence into U+FFFD; while the tail ends in one the text waits for the rest of the bytes.
    """

    def __init__(self, decode: Callable[[list[int]], str], context: Sequence[int] = ()):
        self._decode = decode
        self._ids = list(context)
        self._prefix = 0  # start of the decoded tail
        self._read = len(self._ids)  # tokens before this index have been emitted

    def push(self, token_id: int) -> str:
        self._ids.append(int(token_id))
        return self._emit(final=False)

    def flush(self) -> str:
        """Whatever is still held back (at the end of generation), even if incomplete."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        pending = len(self._ids) - self._read
        if pending == 0:
            return ""
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        complete = len(text) > len(prefix_text) and not text.endswith("\ufffd")
        if not (complete or final or pending >= _MAX_HELD_TOKENS):
            return ""
        piece = text[len(prefix_text) :]
        self._ids = self._ids[self._read :]  # the emitted tail becomes the next decode's context
        self._prefix, self._read = 0, len(self._ids)
        return piece


class StopMatcher:
    """Cuts a text stream at the first stop string, holding back any tail that could be the start of one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buffer = self._held + text
        hits = [i for i in (buffer.find(stop) for stop in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buffer[: min(hits)]
        hold = self._partial_stop_len(buffer)
        self._held = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_stop_len(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:n]):
                    best = n
                    break
        return best


# --- the generation loop --------------------------------------------------------------------------------


def slide_keep(max_seq_len: int) -> int:
    """Tokens kept (re-prefilled) when the window slides: 3/4 of the context, at least 1."""
    return max(1, max_seq_len - max_seq_len // 4)


def fit_prompt(prompt_ids: Sequence[int], max_seq_len: int) -> tuple[list[int], int]:
    """Left-trim a prompt to the context; returns (kept ids, number dropped)."""
    ids = list(prompt_ids)
    dropped = max(0, len(ids) - max_seq_len)
    return ids[dropped:], dropped


def _cancel_check(cancel: CancelHook | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


def generate_tokens(
    model: torch.nn.Module,
    prompt_ids: Sequence[int],
    cfg: SamplingConfig,
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
    eos_id: int | None = None,
    info: GenerationInfo | None = None,
) -> Iterator[int]:
    """Yield new token ids one at a time, decoding with the model's KV cache (see the module doc for policy).

    `cancel` (a callable or threading.Event) is checked before each token. `eos_id` ends generation without
    being yielded. `info`, if given, is filled in as generation proceeds.
    """
    if not prompt_ids:
        raise UsageError("cannot generate from an empty prompt", hint="give at least one token of prompt")
    return _generate_tokens(
        model,
        list(prompt_ids),
        cfg,
        torch.device(device),
        _cancel_check(cancel),
        eos_id,
        info or GenerationInfo(),
    )


@torch.inference_mode()  # the decorator re-enters the mode around each step, so it never leaks to the caller
def _generate_tokens(
    model: torch.nn.Module,
    prompt_ids: list[int],
    cfg: SamplingConfig,
    device: torch.device,
    cancelled: Callable[[], bool],
    eos_id: int | None,
    info: GenerationInfo,
) -> Iterator[int]:
    max_seq_len = model.config.max_seq_len
    ids, dropped = fit_prompt(prompt_ids, max_seq_len)
    info.prompt_tokens = len(ids)
    info.prompt_trimmed += dropped
    generator = make_generator(cfg.seed, device)
    info.seed = generator.initial_seed()
    seen = None
    if cfg.repetition_penalty != 1.0:
        seen = presence_mask(ids, model.config.vocab_size, device)

    def prefill(tokens: list[int]):
        cache = model.new_cache(1, device=device)
        idx = torch.tensor([tokens], dtype=torch.long, device=device)
        return cache, model(idx, cache=cache, logits_to_keep=1).logits[:, -1]

    was_training = model.training
    model.eval()
    try:
        cache, logits = prefill(ids)
        for step in range(cfg.max_new_tokens):
            if cancelled():
                info.stop_reason = "cancelled"
                return
            next_id = sample_token(logits, cfg, seen=seen, generator=generator)  # [1]
            token = int(next_id.item())
            if token == eos_id:
                info.stop_reason = "eos"
                return
            ids.append(token)
            info.new_tokens += 1
            yield token
            if step == cfg.max_new_tokens - 1:
                break  # the logits after the last token are never used
            if seen is not None:
                seen[next_id] = True
            if cache.length >= max_seq_len:
                cache, logits = prefill(ids[-slide_keep(max_seq_len) :])
                info.slides += 1
            else:
                logits = model(next_id.view(1, 1), cache=cache, logits_to_keep=1).logits[:, -1]
        info.stop_reason = "length"
    finally:
        model.train(was_training)


class TextStream(Iterator[str]):
    """Text pieces of one generation, safe to print as they come; `info` describes it (see GenerationInfo)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        prompt: str,
        cfg: SamplingConfig,
        *,
        device: torch.device | str,
        cancel: CancelHook | None = None,
    ):
        # An empty prompt starts a fresh document: packing puts <|eos|> before every document but the first.
        prompt_ids = tokenizer.encode(prompt) if prompt else [tokenizer.eos_id]
        prompt_ids, dropped = fit_prompt(prompt_ids, model.config.max_seq_len)
        self.info = GenerationInfo(prompt_trimmed=dropped)
        eos_id = None if cfg.ignore_eos else tokenizer.eos_id
        tokens = generate_tokens(
            model, prompt_ids, cfg, device=device, cancel=cancel, eos_id=eos_id, info=self.info
        )
        self._decode = tokenizer.decode
        self._boundary_id = tokenizer.eos_id if cfg.ignore_eos else None
        decoder = StreamDecoder(tokenizer.decode, context=prompt_ids[-_DECODE_CONTEXT_TOKENS:])
        self._pieces = self._run(tokens, decoder, StopMatcher(cfg.stop))

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop early (also stops the model loop and restores its train/eval mode)."""
        self._pieces.close()

    def text(self) -> str:
        """Consume the rest of the stream and return it as one string."""
        return "".join(self)

    def _run(self, tokens: Iterator[int], decoder: StreamDecoder, stops: StopMatcher) -> Iterator[str]:
        try:
            for token in tokens:
                # With ignore_eos a document end is shown as a blank line, and decoding starts afresh.
                if token == self._boundary_id:
                    text = decoder.flush() + "\n\n"
                    decoder = StreamDecoder(self._decode)
                else:
                    text = decoder.push(token)
                piece = stops.feed(text)
                if piece:
                    yield piece
                if stops.stopped:
                    self.info.stop_reason = "stop"
                    return
            tail = stops.feed(decoder.flush())
            if stops.stopped:
                self.info.stop_reason = "stop"
            tail += stops.flush()
            if tail:
                yield tail
        finally:
            tokens.close()  # type: ignore[attr-defined]


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompt: str,
    cfg: SamplingConfig,
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
) -> TextStream:
    """Stream the continuation of `prompt` as text pieces (an Iterator[str] with an `info` attribute).

    The prompt is encoded and trimmed right away (so `info.prompt_trimmed` is known before iterating); tokens
    are generated lazily as the stream is consumed. An empty prompt starts a new document (from <|eos|>).
    """
    return TextStream(model, tokenizer, prompt, cfg, device=device, cancel=cancel)


__all__ = [
    "GenerationInfo",
    "SamplingConfig",
    "StopMatcher",
    "StreamDecoder",
    "TextStream",
    "apply_min_p",
    "apply_repetition_penalty",
    "apply_temperature",
    "apply_top_k",
    "apply_top_p",
    "fit_prompt",
    "generate",
    "generate_tokens",
    "make_generator",
    "presence_mask",
    "process_logits",
    "sample_token",
    "slide_keep",
]
