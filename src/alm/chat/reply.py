"""Generating the assistant's reply: ids until <|end|> or <|eos|>, streamed as text, from a history that fits.

History policy: the prompt must leave room for the reply, `reply_room` tokens (the reply's max_new_tokens, at
most half the context). When the conversation is longer, its oldest messages are left out of the prompt (a
leading system message is kept while anything else fits), and the caller is told how many, so it can say so.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING

import torch

from alm.chat.format import ChatTokens, Message, render, render_prompt
from alm.sample import (
    CancelHook,
    GenerationInfo,
    SamplingConfig,
    StopMatcher,
    StreamDecoder,
    fit_prompt,
    generate_tokens,
)

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer

# Prompt tokens re-decoded with the first reply tokens (spacing rules may depend on the previous token).
_DECODE_CONTEXT = 4


def reply_room(cfg: SamplingConfig, max_seq_len: int) -> int:
    """Tokens of the context kept free for the reply."""
    return min(cfg.max_new_tokens, max_seq_len // 2)


def fit_history(messages: Sequence[Message], tokenizer: Tokenizer, budget: int) -> tuple[list[Message], int]:
    """(the newest messages whose generation prompt is at most `budget` tokens, how many were left out).

    A leading system message is kept unless even the last turn does not fit beside it; the kept history starts
    at a user turn when it can. If the last message alone is too long it is kept anyway (and the generator keeps
    the prompt's last max_seq_len tokens)."""
    messages = list(messages)
    # Each content is encoded on its own, so a prompt's length is a sum of per-message lengths.
    fixed = len(render_prompt([], tokenizer))
    sizes = [len(render([m], tokenizer).ids) - 1 for m in messages]
    system = 1 if messages and messages[0]["role"] == "system" else 0
    starts = [i for i in range(system, len(messages)) if messages[i]["role"] != "assistant"]
    for head in ([0], []) if system else ([],):
        for start in starts:
            if fixed + sum(sizes[i] for i in head) + sum(sizes[start:]) <= budget:
                kept = [messages[i] for i in head] + messages[start:]
                return kept, len(messages) - len(kept)
    kept = messages[-1:]
    return kept, len(messages) - len(kept)


def reply_tokens(
    model: Transformer,
    prompt_ids: Sequence[int],
    cfg: SamplingConfig,
    tokens: ChatTokens,
    *,
    device: torch.device | str,
    cancel: CancelHook | None = None,
    info: GenerationInfo | None = None,
) -> Generator[int, None, None]:
    """New ids of the reply, without the <|end|> or <|eos|> that ends it."""
    info = info if info is not None else GenerationInfo()
    stream = generate_tokens(
        model, prompt_ids, cfg, device=device, cancel=cancel, eos_id=tokens.end, info=info
    )
    try:
        for token in stream:
            if token == tokens.eos:  # a document end ends the turn too
                info.new_tokens -= 1
                info.stop_reason = "eos"
                return
            yield token
    finally:
        stream.close()  # type: ignore[attr-defined]


class ReplyStream(Iterator[str]):
    """The assistant's reply to `messages` as text pieces: never a split UTF-8 character, stop strings cut and
    not emitted, the history fitted to the context as the module doc says.

    `info` (a GenerationInfo) describes the generation, `left_out` the history messages that did not fit the
    prompt, and `text` the reply so far. `on_finish(text)` is called once when the stream ends: exhausted,
    closed, or stopped by an exception such as KeyboardInterrupt."""

    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        messages: Sequence[Message],
        cfg: SamplingConfig,
        *,
        device: torch.device | str,
        cancel: CancelHook | None = None,
        on_finish: Callable[[str], object] | None = None,
    ):
        max_seq_len = model.config.max_seq_len
        kept, self.left_out = fit_history(messages, tokenizer, max_seq_len - reply_room(cfg, max_seq_len))
        prompt_ids, dropped = fit_prompt(render_prompt(kept, tokenizer), max_seq_len)
        self.info = GenerationInfo(prompt_trimmed=dropped)
        self.text = ""
        self._on_finish = on_finish
        ids = reply_tokens(
            model, prompt_ids, cfg, ChatTokens.of(tokenizer), device=device, cancel=cancel, info=self.info
        )
        decoder = StreamDecoder(tokenizer.decode, context=prompt_ids[-_DECODE_CONTEXT:])
        self._pieces = self._run(ids, decoder, StopMatcher(cfg.stop))

    def __next__(self) -> str:
        piece = next(self._pieces)
        self.text += piece
        return piece

    def close(self) -> None:
        """Stop early (also stops the model loop)."""
        self._pieces.close()
        self._finish()  # a generator closed before its first piece never runs its `finally`

    def _finish(self) -> None:
        on_finish, self._on_finish = self._on_finish, None
        if on_finish is not None:
            on_finish(self.text)

    def _run(
        self, ids: Generator[int, None, None], decoder: StreamDecoder, stops: StopMatcher
    ) -> Generator[str, None, None]:
        try:
            for token in ids:
                piece = stops.feed(decoder.push(token))
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
            ids.close()
            self._finish()


__all__ = ["ReplyStream", "fit_history", "reply_room", "reply_tokens"]
