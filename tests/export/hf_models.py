"""Tiny Hugging Face models saved to disk as transformers saves them (their own special-token ids, not alm's
0/1/2): the sources `alm import hf` reads, and a SentencePiece-style tokenizer like Llama 2's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_helpers import HARD_STRINGS, fit

transformers = pytest.importorskip("transformers")

PROMPT, REPLY = "Good morrow,", " sweet cousin; what news from Verona?"


def hf_tokenizer(special: list[str], bos: str | None, eos: str):
    """A byte-level BPE with `special` first, wrapped as transformers does; a Llama-style post-processor adds
    bos, which alm (which never adds special tokens) must ignore."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    text = [PROMPT + REPLY, "O Romeo, Romeo, wherefore art thou Romeo?", *HARD_STRINGS] * 20
    tok.train_from_iterator(text, trainer=trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)


def teach(model, ids: list[int]):
    """Train so the model says REPLY after PROMPT, then its eos (a trained, not random, model)."""
    batch = torch.tensor([ids])
    return fit(model, lambda: model(batch, labels=batch).loss, steps=120)


def save_llama(directory: Path) -> Path:
    tokenizer = hf_tokenizer(["<unk>", "<s>", "</s>"], bos="<s>", eos="</s>")
    config = transformers.LlamaConfig(
        vocab_size=320,  # more rows than tokens, as padded vocabularies have
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=50_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    ids = tokenizer(PROMPT + REPLY, add_special_tokens=False)["input_ids"] + [2]
    teach(transformers.LlamaForCausalLM(config), ids).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_gpt2(directory: Path) -> Path:
    tokenizer = hf_tokenizer(["<|endoftext|>"], bos=None, eos="<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    ids = tokenizer(PROMPT + REPLY)["input_ids"] + [0]
    teach(transformers.GPT2LMHeadModel(config), ids).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def sentencepiece_style_tokenizer(directory: Path, text: str) -> Path:
    """A tokenizer.json like Llama 2's (a normalizer that prepends "▁" and turns spaces into it, no
    pre-tokenizer, byte fallback) trained on `text`, with the tokenizer.meta.json `alm import hf` would write
    for it; returns the tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(text.split("\n\n"), trainer=trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    roles = {"bos": "<s>", "eos": "</s>", "pad": "</s>"}
    (directory / "tokenizer.meta.json").write_text(json.dumps({"format": "alm-tokenizer", "roles": roles}))
    return directory / "tokenizer.json"
