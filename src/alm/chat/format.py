"""The chat format: one renderer from messages to token ids plus a loss mask, and the same format as Jinja.

A conversation renders as

    <|eos|> <|system|> text <|end|> <|user|> text <|end|> <|assistant|> text <|end|> ...

built from ids: each content is encoded on its own and the role and end ids go between. It is never built by
encoding template text, because alm's tokenizer encodes special-token text inside a document as plain bytes.
The leading <|eos|> is alm's document boundary (packing puts it before every document but the first, and
`alm sample` starts an empty prompt from it), so a conversation starts where a pretrained model expects a document.

The loss mask is 1 on the content of trained assistant turns and on their <|end|> (the model learns to answer
and to stop) and 0 elsewhere; the <|assistant|> role token is 0 because the prompt always supplies it. A reply is
generated after `render_prompt` (the conversation then <|assistant|>) and ends at <|end|> or <|eos|>.
`CHAT_TEMPLATE` is the same format in Jinja for exported tokenizers (transformers, llama.cpp, mlx-lm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from alm.errors import UsageError
from alm.tokenizer.special import CHAT_TOKENS

if TYPE_CHECKING:
    from alm.tokenizer import Tokenizer

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")
Message = Mapping[str, str]  # {"role": one of ROLES, "content": text}, as in TRL and the OpenAI API

SFT_HINT = "fine-tune the run for chat with `alm sft RUN --data FILE.jsonl`, which adds the chat tokens"


# The renderer below in Jinja, for exported tokenizers; a test checks transformers renders the same ids.
# `eos_token` must be the tokenizer's eos (alm's <|eos|>, or an imported tokenizer's own, e.g. </s>).
CHAT_TEMPLATE = (
    "{{- eos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{- '<|system|>' -}}"
    "{%- elif message['role'] == 'user' -%}{{- '<|user|>' -}}"
    "{%- elif message['role'] == 'assistant' -%}{{- '<|assistant|>' -}}"
    "{%- else -%}{{- raise_exception('unknown chat role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{{- message['content'] + '<|end|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|assistant|>' -}}{%- endif -%}"
)


@dataclass(frozen=True)
class ChatTokens:
    """The ids of the chat control tokens in one tokenizer (ids 3-6 when reserved at training, else appended)."""

    system: int
    user: int
    assistant: int
    end: int
    eos: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> ChatTokens:
        """The tokenizer's chat ids; a UsageError naming `alm sft` if it has none (a base model's tokenizer)."""
        found = [tokenizer.token_id(token) for token in CHAT_TOKENS]
        missing = [token for token, i in zip(CHAT_TOKENS, found, strict=True) if i is None]
        if missing:
            raise UsageError(
                f"tokenizer {tokenizer.path or ''} has no chat tokens ({', '.join(missing)}), so it cannot "
                "render a conversation",
                hint=SFT_HINT,
            )
        system, user, assistant, end = (int(i) for i in found if i is not None)
        return cls(system=system, user=user, assistant=assistant, end=end, eos=int(tokenizer.eos_id))

    def role(self, role: str) -> int:
        if role not in ROLES:
            raise UsageError(f"unknown chat role {role!r}; roles are {', '.join(ROLES)}")
        return getattr(self, role)

    @property
    def stop_ids(self) -> tuple[int, int]:
        """A reply ends at <|end|> (end of turn) or <|eos|> (end of document)."""
        return (self.end, self.eos)


def has_chat_tokens(tokenizer: Tokenizer) -> bool:
    return all(tokenizer.token_id(token) is not None for token in CHAT_TOKENS)


@dataclass(frozen=True)
class Rendered:
    """A conversation as token ids, and mask[i] = 1 where ids[i] is a training target (predicted from ids[:i])."""

    ids: list[int]
    mask: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(self.mask)


def render(messages: Sequence[Message], tokenizer: Tokenizer, *, train_from: int = 0) -> Rendered:
    """Render `messages` (see the module doc). Assistant turns before message `train_from` are context (mask 0):
    a prompt's own assistant turns in prompt/completion and preference data."""
    tokens = ChatTokens.of(tokenizer)
    ids, mask = [tokens.eos], [0]
    for index, message in enumerate(messages):
        role_id = tokens.role(message["role"])
        content = message["content"]
        body = tokenizer.encode(content) if content else []
        trained = int(message["role"] == "assistant" and index >= train_from)
        ids += [role_id, *body, tokens.end]
        mask += [0] + [trained] * (len(body) + 1)
    return Rendered(ids, mask)


def render_prompt(messages: Sequence[Message], tokenizer: Tokenizer) -> list[int]:
    """The ids a reply is generated after: the conversation, then <|assistant|>."""
    return [*render(messages, tokenizer).ids, ChatTokens.of(tokenizer).assistant]


__all__ = [
    "CHAT_TEMPLATE",
    "ROLES",
    "SFT_HINT",
    "ChatTokens",
    "Message",
    "Rendered",
    "Role",
    "has_chat_tokens",
    "render",
    "render_prompt",
]
