"""Perplexity and bits per byte: strided windows, a known uniform case, and the packed validation split."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sample_helpers import tiny_model

from alm.data.loader import PackedDataset, iter_eval_batches
from alm.errors import DataError, UsageError
from alm.evaluate import evaluate_split, evaluate_text, strided_windows

TEXT = "Friends, Romans, countrymen, lend me your ears; 漢字 🙂\nI come to bury Caesar, not to praise him.\n"


@pytest.mark.parametrize(
    ("n", "window", "stride"), [(11, 4, 2), (11, 4, 4), (50, 8, 3), (5, 16, 8), (9, 4, 1)]
)
def test_strided_windows_score_every_token_once_with_enough_context(n, window, stride):
    ids = list(range(100, 100 + n))
    scored = []
    for inputs, targets in strided_windows(ids, window, stride):
        assert 1 <= len(inputs) <= window and len(targets) == len(inputs)
        begin = inputs[0] - 100
        for j, target in enumerate(targets):
            if target == -100:
                continue
            position = target - 100
            assert position == begin + 1 + j  # targets are the next tokens
            assert position - begin >= min(position, window - stride)  # context seen before this token
            scored.append(position)
    assert scored == list(range(1, n))


def test_uniform_logits_give_the_textbook_bits_per_byte(tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=16)
    with torch.no_grad():
        model.head.weight.zero_()  # every logit 0: each token costs exactly ln(V) nats
    result = evaluate_text(model, tokenizer, TEXT, stride=8, device="cpu")
    tokens = len(tokenizer.encode(TEXT)) - 1
    n_bytes = len(TEXT.encode("utf-8"))
    vocab = tokenizer.vocab_size
    assert (result.tokens, result.bytes) == (tokens, n_bytes)
    assert result.mean_loss == pytest.approx(math.log(vocab), rel=1e-6)
    assert result.perplexity == pytest.approx(vocab, rel=1e-5)
    assert result.bits_per_byte == pytest.approx(math.log(vocab) * tokens / (math.log(2) * n_bytes), rel=1e-6)


@torch.no_grad()
def reference_nats(model, ids: list[int], window: int, stride: int) -> float:
    """Token by token: target t is predicted from ids[b:t], b the start of the first window that reaches t."""
    total = 0.0
    for t in range(1, len(ids)):
        b = 0
        while min(b + window, len(ids) - 1) < t:
            b += stride
        logits = model(torch.tensor([ids[b:t]])).logits[0, -1]
        total -= float(F.log_softmax(logits.double(), -1)[ids[t]])
    return total


@pytest.mark.parametrize("stride", [16, 5])
def test_strided_loss_matches_a_token_by_token_reference(tokenizer, stride):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=16)
    ids = tokenizer.encode(TEXT)
    assert len(ids) > 40  # several windows
    result = evaluate_text(model, tokenizer, TEXT, stride=stride, batch_size=3, device="cpu")
    assert result.mean_loss * result.tokens == pytest.approx(reference_nats(model, ids, 16, stride), rel=1e-5)


def test_batch_size_does_not_change_the_result(tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=16)
    one = evaluate_text(model, tokenizer, TEXT, stride=6, batch_size=1, device="cpu")
    many = evaluate_text(model, tokenizer, TEXT, stride=6, batch_size=64, device="cpu")
    assert one.mean_loss == pytest.approx(many.mean_loss, rel=1e-6)


def test_bad_arguments_are_usage_errors(tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=16)
    with pytest.raises(UsageError, match="stride"):
        evaluate_text(model, tokenizer, TEXT, stride=0, device="cpu")
    with pytest.raises(UsageError, match="stride"):
        evaluate_text(model, tokenizer, TEXT, stride=17, device="cpu")
    with pytest.raises(UsageError, match="too short"):
        evaluate_text(model, tokenizer, "a", device="cpu")


def test_split_loss_matches_the_model_loss_and_uses_manifest_bytes(dataset, tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=32)
    result = evaluate_split(
        model,
        dataset.packed_dir,
        "val",
        batch_size=4,
        tokenizer_fingerprint=tokenizer.fingerprint,
        device="cpu",
    )
    ds = PackedDataset.open(dataset.packed_dir, split="val")
    with torch.no_grad():
        batches = list(iter_eval_batches(ds, batch_size=4, seq_len=32))
        nats = sum(float(model(x, targets=y).loss) * y.numel() for x, y in batches)
        tokens = sum(y.numel() for _, y in batches)
    assert result.tokens == tokens
    assert result.mean_loss == pytest.approx(nats / tokens, rel=1e-5)
    expected_bytes = round(ds.source_bytes * tokens / ds.num_tokens)
    assert result.bytes == expected_bytes
    assert result.bits_per_byte == pytest.approx(nats / (math.log(2) * expected_bytes), rel=1e-5)


def test_split_made_with_another_tokenizer_is_refused(dataset, tokenizer):
    model = tiny_model(tokenizer.vocab_size, max_seq_len=32)
    with pytest.raises(DataError, match="tokenizer"):
        evaluate_split(model, dataset.packed_dir, tokenizer_fingerprint="0" * 64, device="cpu")
