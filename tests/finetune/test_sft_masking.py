"""SFT trains on assistant tokens only, through the objective `alm sft` builds and the loss the trainer runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_helpers import write_jsonl

from alm.chat.batches import Example, collate
from alm.device import setup_device
from alm.finetune.launch import plan_finetune
from alm.model import Transformer
from alm.train.objective import ObjectiveSetup

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 12 + 30?"},
        {"role": "assistant", "content": "42, I think."},
        {"role": "user", "content": "Sure?"},
        {"role": "assistant", "content": "Yes."},
    ]
}


@pytest.fixture
def objective(parent: Path, work: Path):
    data = write_jsonl(work / "data" / "one.jsonl", [CONVERSATION] * 2)
    plan = plan_finetune(
        "sft", "base", data, overrides=["train.batch_size=1", "train.device=cpu"], val_fraction=0
    )
    device, precision = setup_device("cpu", "fp32")
    model = Transformer(plan.config.model)
    assert plan.objective is not None
    return plan.objective(ObjectiveSetup(plan, model, device, precision)), model


def _loss(objective, model, example: Example, targets_from: Example) -> float:
    """The trainer's loss on `example`'s inputs with the targets of `targets_from` (same length)."""
    x, _ = collate([example], objective.sampler.pad_id, example.inputs)
    _, y = collate([targets_from], objective.sampler.pad_id, example.inputs)
    return objective.loss_fn(model, (x, y)).reported.item()


def _with_token(example: Example, position: int, token: int) -> Example:
    ids = example.ids.copy()
    ids[position] = token
    return Example(ids, example.mask, example.line)


def test_only_assistant_targets_change_the_loss(objective) -> None:
    objective, model = objective
    (example,) = objective.sampler.groups[0]
    base = _loss(objective, model, example, example)
    replacement = 100  # an ordinary token id in every tokenizer here
    trained = np.flatnonzero(example.mask)
    untrained = [i for i in range(1, example.ids.size) if not example.mask[i]]
    assert len(trained) >= 4 and len(untrained) >= 10  # system, user turns, role tokens
    for position in untrained:
        assert _loss(objective, model, example, _with_token(example, position, replacement)) == base
    for position in trained:
        if example.ids[position] != replacement:
            assert _loss(objective, model, example, _with_token(example, position, replacement)) != base


def test_the_objectives_batches_mask_everything_but_assistant_turns(objective) -> None:
    objective, _ = objective
    (x, y), tokens = objective.next_batch()
    (example,) = objective.sampler.groups[0]
    assert tokens == example.inputs
    assert torch.equal(x[0, : example.inputs], torch.from_numpy(example.ids[:-1]))
    expected = torch.from_numpy(np.where(example.mask[1:], example.ids[1:], -100))
    assert torch.equal(y[0, : example.inputs], expected)
    assert (y[0, example.inputs :] == -100).all()
