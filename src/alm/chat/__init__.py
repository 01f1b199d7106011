"""Chat: the conversation format, chat datasets and batches, DPO, task evals and multi-turn generation.

Importing `alm.chat` loads only the format (no torch): `CHAT_TEMPLATE`, `render`, `render_prompt`, `ChatTokens`.
The rest lives in submodules: `data` (JSONL formats), `batches` (padded SFT/DPO batches), `dpo`, `vocab`
(adding chat tokens to an older run), `reply` and `session` (generation), `tasks`, `synthetic`, `chatterbot`,
`examples`.
"""

from alm.chat.format import (
    CHAT_TEMPLATE,
    ROLES,
    ChatTokens,
    Message,
    Rendered,
    has_chat_tokens,
    render,
    render_prompt,
)

__all__ = [
    "CHAT_TEMPLATE",
    "ROLES",
    "ChatTokens",
    "Message",
    "Rendered",
    "has_chat_tokens",
    "render",
    "render_prompt",
]
