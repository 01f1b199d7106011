"""DPO: log-probs over completion tokens only, ln 2 at the start, and learning to prefer the chosen answers."""

from __future__ import annotations

import copy
import math

import torch

from alm.chat.batches import IGNORE, ChatBatchSampler, tokenize_preferences
from alm.chat.data import PreferencePair
from alm.chat.dpo import dpo_loss, dpo_step_loss, model_logprobs, sequence_logprobs
from testkit.chat import assistant, user
from testkit.models import tiny_model

PAIRS = [
    PreferencePair((user(f"What is {a} + {b}?"),), (assistant(str(a + b)),), (assistant(str(a + b + 1)),), i)
    for i, (a, b) in enumerate([(2, 3), (4, 4), (1, 7), (6, 2), (3, 3), (5, 1)], 1)
]


def _batch(chat_tokenizer):
    items = tokenize_preferences(PAIRS, chat_tokenizer, 64)
    return ChatBatchSampler(items, len(items), 64, pad_id=chat_tokenizer.pad_id).next_batch()


def test_sequence_logprobs_sum_the_unmasked_targets_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    targets = torch.tensor([[3, IGNORE, 4, IGNORE, 0], [IGNORE, IGNORE, IGNORE, 10, IGNORE]])
    logp = logits.log_softmax(-1)
    expected = torch.stack([logp[0, 0, 3] + logp[0, 2, 4] + logp[0, 4, 0], logp[1, 3, 10]])
    torch.testing.assert_close(sequence_logprobs(logits, targets), expected)


def test_prompt_tokens_do_not_count(chat_tokenizer):
    """Only the completion is scored: its tokens and its <|end|>, never the prompt's."""
    _, y = _batch(chat_tokenizer)
    scored = (y != IGNORE).sum(dim=1)
    completions = [len(chat_tokenizer.encode(p.chosen[0]["content"])) + 1 for p in PAIRS]
    assert scored[: len(PAIRS)].tolist() == completions


def test_at_the_start_the_loss_is_ln2_and_the_margin_is_0(chat_tokenizer):
    policy = tiny_model(chat_tokenizer.vocab_size)
    reference = copy.deepcopy(policy).requires_grad_(False)
    x, y = _batch(chat_tokenizer)
    out = dpo_step_loss(policy, reference, x, y, beta=0.1)
    assert abs(out.loss.item() - math.log(2)) < 1e-6
    assert out.reward_margin.item() == 0.0
    assert out.chosen_reward.item() == out.rejected_reward.item() == 0.0
    assert set(out.metrics()) == {
        "reward_margin",
        "reward_accuracy",
        "chosen_reward",
        "rejected_reward",
        "chosen_logps",
        "rejected_logps",
    }
    chosen, rejected = model_logprobs(policy, x, y).detach().chunk(2)
    torch.testing.assert_close(out.chosen_logps, chosen.mean())
    torch.testing.assert_close(out.rejected_logps, rejected.mean())


def test_the_loss_matches_the_formula():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-2.0, -2.0])
    out = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margins = 0.5 * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(out.loss, -torch.nn.functional.logsigmoid(margins).mean())
    assert out.reward_accuracy.item() == 0.5  # margins 0.75 and -0.5
    torch.testing.assert_close(out.reward_margin, margins.mean())


def test_a_few_steps_raise_reward_accuracy_above_half(chat_tokenizer):
    policy = tiny_model(chat_tokenizer.vocab_size)
    reference = copy.deepcopy(policy).requires_grad_(False)
    x, y = _batch(chat_tokenizer)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    for _ in range(10):
        out = dpo_step_loss(policy, reference, x, y, beta=0.1)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    policy.eval()
    with torch.no_grad():
        after = dpo_step_loss(policy, reference, x, y, beta=0.1)
    assert after.reward_accuracy.item() > 0.5
    assert after.reward_margin.item() > 0 and after.loss.item() < math.log(2)
