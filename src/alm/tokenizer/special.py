"""Special tokens: the ids every tokenizer alm trains reserves, before any learned token.

Document control tokens come first (ids 0-2), then the chat tokens (ids 3-6) that fine-tuning renders
conversations with. Reserving the chat tokens at tokenizer training means a pretrained run can be fine-tuned for
chat without resizing its embeddings (nanochat does the same); runs whose tokenizer predates them get them added
at fine-tuning time.
"""

from __future__ import annotations

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"

DOCUMENT_TOKENS = (BOS, EOS, PAD)  # ids 0, 1, 2
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)  # ids 3, 4, 5, 6 in tokenizers trained from now on
RESERVED_TOKENS = DOCUMENT_TOKENS + CHAT_TOKENS  # what tokenizer training reserves, in id order

__all__ = [
    "ASSISTANT",
    "BOS",
    "CHAT_TOKENS",
    "DOCUMENT_TOKENS",
    "END",
    "EOS",
    "PAD",
    "RESERVED_TOKENS",
    "SYSTEM",
    "USER",
]
