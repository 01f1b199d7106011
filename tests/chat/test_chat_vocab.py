"""Adding chat tokens to a tokenizer that predates them, and growing the model's rows for them."""

from __future__ import annotations

import json

import pytest
import torch

from alm.chat import ChatTokens, has_chat_tokens, render
from alm.chat.vocab import ensure_chat_vocab, resize_token_rows, with_chat_tokens
from alm.tokenizer import Tokenizer
from alm.tokenizer.special import CHAT_TOKENS
from testkit.chat import assistant, user
from testkit.models import tiny_model

TEXT = "ROMEO: What light through yonder window breaks?"


def test_chat_tokens_are_appended_after_the_vocabulary(base_tokenizer):
    text, added = with_chat_tokens(base_tokenizer.backend.to_str())
    assert added == CHAT_TOKENS
    entries = {e["content"]: e for e in json.loads(text)["added_tokens"]}
    ids = [entries[token]["id"] for token in CHAT_TOKENS]
    assert ids == list(range(base_tokenizer.vocab_size, base_tokenizer.vocab_size + 4))
    assert all(entries[token]["special"] and not entries[token]["normalized"] for token in CHAT_TOKENS)


def test_a_tokenizer_with_chat_tokens_is_left_as_it_is(chat_tokenizer):
    original = chat_tokenizer.backend.to_str()
    assert with_chat_tokens(original) == (original, ())


def test_ensure_chat_vocab_extends_tokenizer_and_model(base_tokenizer, tmp_path):
    model = tiny_model(base_tokenizer.vocab_size)
    old_emb, old_head = model.tok_emb.weight.detach().clone(), model.head.weight.detach().clone()
    idx = torch.tensor([base_tokenizer.encode(TEXT)])
    before = model(idx).logits
    tokenizer, resize = ensure_chat_vocab(model, base_tokenizer, tmp_path / "tokenizer.json")

    assert has_chat_tokens(tokenizer) and not has_chat_tokens(base_tokenizer)
    assert tokenizer.encode(TEXT) == base_tokenizer.encode(TEXT)  # ordinary text encodes as before
    n = base_tokenizer.vocab_size
    assert resize is not None
    assert resize.to_dict() == {
        "added_tokens": list(CHAT_TOKENS),
        "new_ids": [n, n + 1, n + 2, n + 3],
        "old_rows": n,
        "new_rows": n + 4,
        "init": "mean",
    }
    assert model.config.vocab_size == model.tok_emb.weight.size(0) == model.head.weight.size(0) == n + 4
    assert torch.equal(model.tok_emb.weight[:n], old_emb) and torch.equal(model.head.weight[:n], old_head)
    for weight, old in ((model.tok_emb.weight, old_emb), (model.head.weight, old_head)):
        for i in resize.new_ids:
            torch.testing.assert_close(weight[i], old.mean(dim=0))
    after = model(idx).logits
    torch.testing.assert_close(after[..., :n], before)  # the model's predictions over old tokens do not move
    # A new token's logit is the mean logit: neutral, not a random spike.
    torch.testing.assert_close(after[..., n], before.mean(dim=-1))
    # The extended run can render and train on conversations.
    ids = render([user("Hi"), assistant("Hello")], tokenizer).ids
    assert model(torch.tensor([ids])).logits.shape[-1] == n + 4


def test_tied_embeddings_stay_tied(base_tokenizer, tmp_path):
    model = tiny_model(base_tokenizer.vocab_size, tie_embeddings=True)
    _, resize = ensure_chat_vocab(model, base_tokenizer, tmp_path / "tokenizer.json")
    assert resize is not None and model.head.weight is model.tok_emb.weight
    assert model.tok_emb.weight.size(0) == base_tokenizer.vocab_size + 4


def test_padded_rows_are_reused_without_growing(base_tokenizer, tmp_path):
    """A model whose vocab was padded past the tokenizer's already has rows for the new ids: they are reset to
    the mean and the model keeps its size."""
    n = base_tokenizer.vocab_size
    model = tiny_model(n + 16)
    _, resize = ensure_chat_vocab(model, base_tokenizer, tmp_path / "tokenizer.json")
    assert resize is not None and resize.old_rows == resize.new_rows == n + 16
    torch.testing.assert_close(model.tok_emb.weight[n], model.tok_emb.weight[:n].mean(dim=0))


def test_a_tokenizer_with_chat_tokens_needs_nothing(chat_tokenizer, tmp_path):
    model = tiny_model(chat_tokenizer.vocab_size)
    tokenizer, resize = ensure_chat_vocab(model, chat_tokenizer, tmp_path / "tokenizer.json")
    assert tokenizer is chat_tokenizer and resize is None
    assert not (tmp_path / "tokenizer.json").exists()


def test_resize_never_shrinks(base_tokenizer):
    model = tiny_model(base_tokenizer.vocab_size)
    resize_token_rows(model, 10, [], known_rows=10)
    assert model.tok_emb.weight.size(0) == base_tokenizer.vocab_size


def test_the_extended_tokenizer_reloads_with_the_same_chat_ids(base_tokenizer, tmp_path):
    model = tiny_model(base_tokenizer.vocab_size)
    tokenizer, _ = ensure_chat_vocab(model, base_tokenizer, tmp_path / "tokenizer.json")
    reloaded = Tokenizer.load(tmp_path / "tokenizer.json")
    assert ChatTokens.of(reloaded) == ChatTokens.of(tokenizer)
    assert reloaded.fingerprint == tokenizer.fingerprint


@pytest.mark.parametrize("tie", [False, True])
def test_a_resized_model_trains(base_tokenizer, tmp_path, tie):
    model = tiny_model(base_tokenizer.vocab_size, tie_embeddings=tie)
    tokenizer, _ = ensure_chat_vocab(model, base_tokenizer, tmp_path / "tokenizer.json")
    ids = torch.tensor([render([user("Hi"), assistant("Hello")], tokenizer).ids])
    model.train()
    loss = model(ids[:, :-1], targets=ids[:, 1:]).loss
    loss.backward()
    assert model.tok_emb.weight.grad is not None and torch.isfinite(loss)


def test_the_meta_goes_along_and_describes_the_new_file(base_tokenizer, tmp_path):
    """An imported tokenizer's roles (here: no pad token, eos stands in) live in tokenizer.meta.json and must
    survive the extension; the new meta's fingerprint is the new file's."""
    source = tmp_path / "base"
    source.mkdir()
    (source / "tokenizer.json").write_bytes(base_tokenizer.path.read_bytes())
    roles = {"bos": "<|bos|>", "eos": "<|eos|>", "pad": "<|eos|>"}
    (source / "tokenizer.meta.json").write_text(json.dumps({"roles": roles}))
    imported = Tokenizer.load(source / "tokenizer.json")
    assert imported.pad_id == imported.eos_id
    out = tmp_path / "run" / "tokenizer.json"
    tokenizer, _ = ensure_chat_vocab(tiny_model(imported.vocab_size), imported, out)
    reloaded = Tokenizer.load(out)
    assert reloaded.pad_id == reloaded.eos_id == tokenizer.pad_id
    meta = json.loads((tmp_path / "run" / "tokenizer.meta.json").read_text())
    assert meta["roles"] == roles and meta["chat_tokens_added"] == list(CHAT_TOKENS)
    assert meta["fingerprint"] == reloaded.fingerprint == tokenizer.fingerprint
    assert meta["vocab_size"] == reloaded.vocab_size == imported.vocab_size + 4
