"""Fine-tuning batches: loss only on assistant tokens, no leakage between rows, a resumable seeded order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm.chat.batches import (
    IGNORE,
    PAD_MULTIPLE,
    ChatBatchSampler,
    Example,
    collate,
    tokenize_conversations,
    tokenize_preferences,
)
from alm.chat.data import Conversation, PreferencePair
from alm.errors import DataError
from testkit.chat import assistant, sft_loss, system, user
from testkit.models import tiny_model

CONVERSATIONS = [
    Conversation((user("Hi"), assistant("Hello there!")), 0, 1),
    Conversation((system("Be brief."), user("What is 2 + 3?"), assistant("5")), 0, 2),
    Conversation((user("Hi"), assistant("Hello."), user("Name a colour."), assistant("Blue.")), 0, 3),
    Conversation((user("Once upon a time"), assistant("there was a king.")), 0, 4),
    Conversation((user("Bye"), assistant("Farewell!")), 0, 5),
]


@pytest.fixture(scope="module")
def examples(chat_tokenizer):
    return tokenize_conversations(CONVERSATIONS, chat_tokenizer, 64)


def test_collate_pads_right_and_keeps_targets_only_where_the_mask_is_1(examples):
    x, y = collate(examples[:2], pad_id=2, length=40)
    for row, ex in enumerate(examples[:2]):
        n = ex.inputs
        assert x[row, :n].tolist() == ex.ids[:-1].tolist()
        assert (x[row, n:] == 2).all() and (y[row, n:] == IGNORE).all()
        expected = np.where(ex.mask[1:], ex.ids[1:], IGNORE)
        assert y[row, :n].tolist() == expected.tolist()
    assert x.dtype == y.dtype == torch.int64


def _with_id_changed(example: Example, position: int, chat_tokenizer) -> Example:
    ids = example.ids.copy()
    ids[position] = (ids[position] + 17) % chat_tokenizer.vocab_size
    return Example(ids, example.mask, example.line)


def test_the_loss_reads_only_assistant_targets(examples, chat_tokenizer):
    """Changing a non-assistant token's target never changes the loss; changing an assistant token's does."""
    model = tiny_model(chat_tokenizer.vocab_size)
    example = examples[2]
    x, y = collate([example], chat_tokenizer.pad_id, example.inputs)
    loss = sft_loss(model, x, y)
    for position in range(1, example.ids.size):
        _, y_changed = collate([_with_id_changed(example, position, chat_tokenizer)], 2, example.inputs)
        changed = sft_loss(model, x, y_changed)
        if example.mask[position]:
            assert not torch.equal(changed, loss), f"assistant target at {position} ignored"
        else:
            assert torch.equal(changed, loss), f"non-assistant target at {position} counted"


def test_no_leakage_between_rows_or_from_padding(examples, chat_tokenizer):
    """Each row's logits equal those of the example alone; perturbing one example moves no other row."""
    model = tiny_model(chat_tokenizer.vocab_size)
    x, _ = collate(examples, chat_tokenizer.pad_id, 64)
    with torch.no_grad():
        batched = model(x).logits
        for row, ex in enumerate(examples):
            alone = model(torch.from_numpy(ex.ids[:-1]).unsqueeze(0)).logits[0]
            torch.testing.assert_close(batched[row, : ex.inputs], alone, rtol=1e-5, atol=1e-5)
        perturbed = list(examples)
        perturbed[1] = Example(np.flip(examples[1].ids).copy(), examples[1].mask, 2)
        moved = model(collate(perturbed, chat_tokenizer.pad_id, 64)[0]).logits
    for row, ex in enumerate(examples):
        if row != 1:
            torch.testing.assert_close(
                moved[row, : ex.inputs], batched[row, : ex.inputs], rtol=1e-5, atol=1e-5
            )


def test_rows_pad_to_a_multiple_of_16_or_to_seq_len(examples, chat_tokenizer):
    sampler = ChatBatchSampler(examples, 2, 64, pad_id=chat_tokenizer.pad_id)
    for _ in range(5):
        x, _ = sampler.next_batch()
        assert x.shape[1] % PAD_MULTIPLE == 0 and x.shape[1] <= 64
    fixed = ChatBatchSampler(examples, 2, 64, pad_id=chat_tokenizer.pad_id, fixed_length=True)
    assert fixed.next_batch()[0].shape == (2, 64)


def test_every_example_once_per_epoch_in_a_seeded_order(examples, chat_tokenizer):
    sampler = ChatBatchSampler(examples, 1, 64, pad_id=chat_tokenizer.pad_id, seed=3)
    first = [sampler.next_indices()[0] for _ in range(len(examples))]
    second = [sampler.next_indices()[0] for _ in range(len(examples))]
    assert sorted(first) == sorted(second) == list(range(len(examples)))
    assert first != second  # a fresh permutation each epoch
    again = ChatBatchSampler(examples, 1, 64, pad_id=chat_tokenizer.pad_id, seed=3)
    assert [again.next_indices()[0] for _ in range(len(examples))] == first
    other = ChatBatchSampler(examples, 1, 64, pad_id=chat_tokenizer.pad_id, seed=4)
    assert [other.next_indices()[0] for _ in range(2 * len(examples))] != first + second


def test_resume_continues_exactly(examples, chat_tokenizer):
    sampler = ChatBatchSampler(examples, 2, 64, pad_id=chat_tokenizer.pad_id, seed=1)
    for _ in range(3):  # crosses an epoch boundary (5 examples, 2 a batch)
        sampler.next_batch()
    state = sampler.state_dict()
    expected = [sampler.next_batch() for _ in range(4)]
    resumed = ChatBatchSampler(examples, 2, 64, pad_id=chat_tokenizer.pad_id, seed=99)
    resumed.load_state_dict(state)
    for (x, y), (xr, yr) in zip(expected, (resumed.next_batch() for _ in range(4)), strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)


def test_a_state_from_other_data_is_refused(examples, chat_tokenizer):
    state = ChatBatchSampler(examples, 2, 64, pad_id=0).state_dict()
    other = ChatBatchSampler(examples[:4], 2, 64, pad_id=0)
    with pytest.raises(DataError, match="fine-tuning data changed"):
        other.load_state_dict(state)
    changed = list(examples)
    changed[0] = Example(examples[0].ids, ~examples[0].mask, 1)
    with pytest.raises(DataError, match="digest"):
        ChatBatchSampler(changed, 2, 64, pad_id=0).load_state_dict(state)


def test_ranks_take_their_slice_of_the_global_batch(examples):
    single = ChatBatchSampler(examples, 4, 64, pad_id=0, seed=2)
    ranks = [ChatBatchSampler(examples, 2, 64, pad_id=0, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        assert single.next_indices() == ranks[0].next_indices() + ranks[1].next_indices()


def test_preference_batches_put_chosen_rows_first(chat_tokenizer):
    pairs = [
        PreferencePair((user("2 + 2?"),), (assistant("4"),), (assistant("5"),), 1),
        PreferencePair((user("Hi"),), (assistant("Hello!"),), (assistant("Go away."),), 2),
    ]
    items = tokenize_preferences(pairs, chat_tokenizer, 64)
    sampler = ChatBatchSampler(items, 2, 64, pad_id=chat_tokenizer.pad_id)
    order = sampler.next_indices()
    sampler.load_state_dict({**sampler.state_dict(), "position": 0})
    x, y = sampler.next_batch()
    assert x.shape[0] == 4
    for slot, index in enumerate(order):
        chosen, rejected = items[index]
        assert x[slot, : chosen.inputs].tolist() == chosen.ids[:-1].tolist()
        assert x[2 + slot, : rejected.inputs].tolist() == rejected.ids[:-1].tolist()
    # Only completion tokens (the answer and its <|end|>) are targets.
    trained = (y != IGNORE).sum(dim=1).tolist()
    expected = [int(items[i][k].mask.sum()) for k in range(2) for i in order]
    assert trained == expected


def test_bad_sampler_arguments(examples):
    with pytest.raises(DataError, match="no examples"):
        ChatBatchSampler([], 2, 64, pad_id=0)
    with pytest.raises(DataError, match="batch_size"):
        ChatBatchSampler(examples, 0, 64, pad_id=0)
    with pytest.raises(DataError, match="more than seq_len=8"):
        ChatBatchSampler(examples, 2, 8, pad_id=0)
