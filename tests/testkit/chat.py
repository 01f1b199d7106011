"""Chat building blocks shared by the chat, serve and fine-tuning tests: the exchanges a tiny model learns, message
constructors, small real tokenizers (with and without chat tokens), and a real fine-tuning loop over
`ChatBatchSampler` batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from alm.chat.batches import ChatBatchSampler, tokenize_conversations
from alm.chat.data import Conversation
from alm.model import Transformer
from alm.tokenizer import Tokenizer
from alm.tokenizer.special import CHAT_TOKENS, DOCUMENT_TOKENS
from testkit.corpus import shipped_text
from testkit.threads import single_thread

# What a model `fine_tune`d on `exchanges_as_conversations()` learns to answer (greedy), one exchange per entry.
EXCHANGES = (
    ("Hi", "Hello there!"),
    ("What is 2 + 3?", "5"),
    ("Name a colour.", "Blue, like the sea."),
)
SYSTEM_PROMPT = "Be brief."


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def train_tokenizer_file(out: Path, *, chat: bool, vocab_size: int = 400) -> Tokenizer:
    """A byte-level BPE like alm's (document specials at 0-2, chat tokens reserved at 3-6 when `chat`)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    documents = [*shipped_text(20_000).split("\n\n"), *(f"{q} {a}" for q, a in EXCHANGES)]
    specials = [*DOCUMENT_TOKENS, *CHAT_TOKENS] if chat else list(DOCUMENT_TOKENS)
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(documents, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"))
    return Tokenizer.load(out / "tokenizer.json")


def sft_loss(model: Transformer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x, targets=y).loss


def fine_tune(
    model: Transformer,
    tokenizer: Tokenizer,
    conversations: Sequence[Conversation],
    *,
    steps: int = 200,
    lr: float = 1e-2,
) -> Transformer:
    """Supervised fine-tuning with the real batches: loss on assistant tokens only."""
    examples = tokenize_conversations(conversations, tokenizer, model.config.max_seq_len)
    sampler = ChatBatchSampler(examples, len(examples), model.config.max_seq_len, pad_id=tokenizer.pad_id)
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with single_thread():
        for _ in range(steps):
            x, y = sampler.next_batch()
            loss = sft_loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def exchanges_as_conversations() -> list[Conversation]:
    """Each exchange alone, and the first two as one conversation, with and without a system prompt."""
    turns = [m for q, a in EXCHANGES[:2] for m in (user(q), assistant(a))]
    conversations = [(user(q), assistant(a)) for q, a in EXCHANGES]
    conversations += [(system(SYSTEM_PROMPT), *turns[:2]), tuple(turns), (system(SYSTEM_PROMPT), *turns)]
    return [Conversation(messages, 0, i) for i, messages in enumerate(conversations, 1)]
