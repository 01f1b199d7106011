"""A conversation with a model: the history, a system prompt, and each reply added to the history as it ends.
Used by `alm chat`; a front end (terminal, dashboard) only reads text and calls these methods."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alm.chat.data import write_jsonl
from alm.chat.format import ChatTokens, Message
from alm.chat.reply import ReplyStream
from alm.sample import CancelHook, SamplingConfig

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer


class ChatSession:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        cfg: SamplingConfig,
        *,
        device: torch.device | str,
        system: str | None = None,
    ):
        ChatTokens.of(tokenizer)  # a tokenizer without chat tokens fails here, naming `alm sft`
        self.model, self.tokenizer, self.cfg, self.device = model, tokenizer, cfg, device
        self.system = system or None
        self.turns: list[Message] = []  # user and assistant messages, oldest first
        self.left_out = 0  # history messages the last prompt had no room for

    @property
    def messages(self) -> list[Message]:
        """The whole conversation, system prompt first."""
        system: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.turns.clear()
        self.left_out = 0

    def set_system(self, text: str | None) -> None:
        """Set (or, with empty text, remove) the system prompt for the rest of the conversation."""
        self.system = text or None

    def reply(self, text: str, *, cancel: CancelHook | None = None) -> ReplyStream:
        """Add the user's message and stream the reply; the reply joins the history when the stream ends,
        also when it is stopped early (with the text produced so far)."""
        self.turns.append({"role": "user", "content": text})
        stream = ReplyStream(
            self.model,
            self.tokenizer,
            self.messages,
            self.cfg,
            device=self.device,
            cancel=cancel,
            on_finish=lambda reply: self.turns.append({"role": "assistant", "content": reply}),
        )
        self.left_out = stream.left_out
        return stream

    def save(self, path: str | Path) -> Path:
        """Write the conversation as one line of `{"messages": [...]}` JSONL (the fine-tuning format)."""
        return write_jsonl(path, [{"messages": self.messages}])


__all__ = ["ChatSession"]
