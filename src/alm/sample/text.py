"""Text from a token stream: a UTF-8-safe incremental decoder, a stop-string matcher, and the prompt check.

No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alm.errors import UsageError

# Tokens of the prompt re-decoded with each new piece so that spacing rules that depend on the previous token
# (e.g. a SentencePiece-style leading space) come out as they would in the full text.
DECODE_CONTEXT_TOKENS = 5
# A UTF-8 character is at most 4 bytes; after this many tokens that still end in U+FFFD the model has produced
# genuinely invalid bytes, and holding them back longer would only stall the stream.
_MAX_HELD_TOKENS = 8


def check_text(text: str, what: str = "the prompt") -> str:
    """`text` if it is valid Unicode; a UsageError naming the offending character otherwise.

    Python hands undecodable command-line bytes over as lone surrogates (U+DC80..U+DCFF), and JSON can carry
    them too; a tokenizer cannot encode them, so they are refused here with the byte that caused them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        code = ord(char)
        what_it_is = (
            f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
        )
        raise UsageError(
            f"{what} is not valid UTF-8 text: {what_it_is} at character {exc.start}",
            hint="pass UTF-8 text (check the terminal's locale, e.g. LANG=C.UTF-8, or the file's encoding)",
        ) from None
    return text


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
