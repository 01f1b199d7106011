"""The model a server answers with: weights, tokenizer, name, context, and whether it may chat.

A run may answer chat requests when its tokenizer has the chat tokens and the run was fine-tuned for chat
(`alm sft`/`alm dpo` record a `finetune` section in the run's config). Every tokenizer alm trains now reserves
the chat tokens, so a base model has them too; it has never seen a conversation, so it gets a clear 400 rather
than a reply made of noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alm.chat.format import SFT_HINT, ChatTokens, has_chat_tokens

if TYPE_CHECKING:
    import torch

    from alm.model import Transformer
    from alm.sample.engine import Engine
    from alm.tokenizer import Tokenizer


@dataclass
class ServedModel:
    name: str  # the model id clients see: the run's name
    model: Transformer
    tokenizer: Tokenizer
    step: int
    checkpoint: Path
    chat: ChatTokens | None  # None: chat requests are refused with `chat_refusal`
    chat_refusal: str = ""
    quantized: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def context(self) -> int:
        return self.model.config.max_seq_len

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def card(self) -> dict[str, Any]:
        """The `/v1/models` entry, with alm's facts under `alm` (the web page reads `chat` and `context`)."""
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "alm",
            "alm": {
                "chat": self.chat is not None,
                "context": self.context,
                "step": self.step,
                "checkpoint": str(self.checkpoint),
                "quantized": self.quantized,
                "device": str(self.device),
            },
        }

    def engine(self, slots: int, *, compile: bool = False) -> Engine:
        from alm.sample.engine import Engine

        return Engine(
            self.model.eval(),
            device=self.device,
            slots=slots,
            tokenizer=self.tokenizer,
            compile="on" if compile else "off",
        )


def chat_support(name: str, config: dict[str, Any], tokenizer: Tokenizer) -> tuple[ChatTokens | None, str]:
    """(the chat tokens, "") for a run fine-tuned for chat, else (None, why not: a message for the 400)."""
    if not has_chat_tokens(tokenizer):
        why = f"model {name} cannot chat: its tokenizer has no chat tokens"
    elif not isinstance(config.get("finetune"), dict):
        why = f"model {name} is a base model: its run was not fine-tuned for chat"
    else:
        return ChatTokens.of(tokenizer), ""
    return None, f"{why}. Use /v1/completions to continue text, or {SFT_HINT.replace('RUN', name)}"


def served_model(
    model: Transformer,
    tokenizer: Tokenizer,
    config: dict[str, Any],
    *,
    name: str,
    step: int,
    checkpoint: Path,
    quantized: str | None = None,
) -> ServedModel:
    chat, refusal = chat_support(name, config, tokenizer)
    return ServedModel(name, model, tokenizer, step, checkpoint, chat, refusal, quantized)


__all__ = ["ServedModel", "chat_support", "served_model"]
