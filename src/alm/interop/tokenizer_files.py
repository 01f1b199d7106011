"""The tokenizer, as other runtimes want it: transformers' tokenizer_config.json / generation_config.json, and
the vocabulary arrays llama.cpp reads from GGUF metadata.

transformers 4.4x and 5.x both load `PreTrainedTokenizerFast` over the tokenizer.json itself; bos/eos/pad are
named by their token text here and by id in config.json and generation_config.json (transformers' Llama defaults
are 1/2, alm's are 0/1/2, and generation stops on whatever these files say). Only chat runs (`alm sft` / `alm
dpo`) carry alm's chat template and stop on `<|end|>` as well; base models carry neither (`chat_template`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alm.errors import UsageError
from alm.tokenizer.pieces import GPT2_PRE_TOKENIZATION, json_setting
from alm.tokenizer.special import END, EOS

if TYPE_CHECKING:
    from alm.tokenizer import Tokenizer

# llama.cpp token types (gguf.TokenType), spelled out so this module needs no gguf import.
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The three ids transformers reads from config.json and generation_config.json."""
    return {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }


def chat_template(tokenizer: Tokenizer, config: Mapping[str, Any]) -> str | None:
    """alm's chat format as Jinja, for a chat run only: one fine-tuned by `alm sft` / `alm dpo` (its resolved
    `config` records `finetune`) whose tokenizer has the chat tokens and alm's eos (the format opens with it).
    A base model gets none: it never learnt the format, and runtimes would wrap every prompt in it."""
    from alm.chat import CHAT_TEMPLATE, has_chat_tokens

    chat_run = isinstance(config.get("finetune"), dict)
    return CHAT_TEMPLATE if chat_run and has_chat_tokens(tokenizer) and tokenizer.eos_token == EOS else None


def end_of_turn_id(tokenizer: Tokenizer, config: Mapping[str, Any]) -> int | None:
    """The id of `<|end|>`, which closes a chat reply, for a chat run (where generation stops on it too)."""
    return tokenizer.token_id(END) if chat_template(tokenizer, config) is not None else None


def tokenizer_config(tokenizer: Tokenizer, config: Mapping[str, Any], max_seq_len: int) -> dict[str, Any]:
    files: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",  # a class transformers 4.4x and 5.x both resolve
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": None,
        "add_bos_token": False,  # alm never adds special tokens when encoding
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # else decode() changes " ." to "." and round trips break
        "model_max_length": max_seq_len,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    template = chat_template(tokenizer, config)
    if template is not None:
        files["chat_template"] = template
    return files


def generation_config(tokenizer: Tokenizer, config: Mapping[str, Any]) -> dict[str, Any]:
    """The special ids generate() reads; a chat run's replies end at `<|end|>`, so it stops there as well."""
    ids: dict[str, Any] = special_token_ids(tokenizer)
    end = end_of_turn_id(tokenizer, config)
    if end is not None:
        ids["eos_token_id"] = [tokenizer.eos_id, end]
    return ids


@dataclass(frozen=True)
class GGUFVocab:
    """tokenizer.ggml.{tokens, token_type, merges}: one entry per embedding row (padding rows are UNUSED)."""

    tokens: list[str]
    types: list[int]
    merges: list[str]


# What alm's byte-level BPE looks like in tokenizer.json; llama.cpp's `gpt2` model with the `gpt-2`
# pre-tokenizer (GPT-2's regex, as tokenizers' ByteLevel(use_regex=True) uses) reproduces exactly this.
_BYTE_LEVEL_BPE = {
    **GPT2_PRE_TOKENIZATION,
    "decoder.type": "ByteLevel",
    "model.type": "BPE",
    "model.byte_fallback": False,
    "model.ignore_merges": False,
    "model.continuing_subword_prefix": None,
    "model.end_of_word_suffix": None,
}


def gguf_vocab(tokenizer: Tokenizer, vocab_size: int) -> GGUFVocab:
    """The vocabulary for llama.cpp's BPE tokenizer; a UsageError for any tokenizer it would not reproduce."""
    data = json.loads(tokenizer.backend.to_str())
    for key, expected in _BYTE_LEVEL_BPE.items():
        actual = json_setting(data, key)
        if actual != expected and not (key == "model.ignore_merges" and actual is None):
            raise UsageError(
                f"GGUF export embeds byte-level BPE tokenizers with GPT-2's pre-tokenizer only; this "
                f"tokenizer.json has {key}={actual!r} (a {tokenizer.backend_type} tokenizer)",
                hint="export it with --format hf instead, or train a bpe tokenizer (data.tokenizer.type=bpe)",
            )
    added = tokenizer.backend.get_added_tokens_decoder()
    tokens, types = [], []
    for i in range(vocab_size):
        token = tokenizer.id_to_token(i)
        if token is None:  # embedding rows past the tokenizer's vocabulary
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            tokens.append(token)
            types.append(CONTROL if added[i].special else USER_DEFINED)
        else:
            tokens.append(token)
            types.append(NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return GGUFVocab(tokens, types, merges)


__all__ = [
    "GGUFVocab",
    "chat_template",
    "end_of_turn_id",
    "generation_config",
    "gguf_vocab",
    "special_token_ids",
    "tokenizer_config",
]
