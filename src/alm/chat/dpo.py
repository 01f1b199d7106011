"""Direct Preference Optimization (Rafailov et al., 2023): the sigmoid loss and its metrics.

With summed log-probabilities of each completion under the policy (π) and the frozen reference (ref),

    reward(y) = beta · (log π(y|x) − log ref(y|x))
    loss      = −log σ(reward(chosen) − reward(rejected))            (mean over pairs)

At the start (π = ref) every reward is 0 and the loss is ln 2. Log-probabilities are summed over the completion's
tokens only (the targets `alm.chat.batches` leaves unmasked: the assistant's answer and its <|end|>).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from alm.chat.batches import IGNORE


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each row's targets ([B, T, V] logits, [B, T] targets; IGNORE skipped) -> [B]."""
    logits = logits.float()  # log-softmax in fp32 under autocast; sums of many small terms need it
    keep = targets != IGNORE
    picked = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    token_logprobs = picked - torch.logsumexp(logits, dim=-1)
    return (token_logprobs * keep).sum(dim=-1)


def model_logprobs(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """`sequence_logprobs` of a batch under `model` -> [B]."""
    return sequence_logprobs(model(inputs).logits, targets)


@dataclass
class DPOOutput:
    """The loss to backpropagate and detached metrics (tensors on the device: read them at log intervals)."""

    loss: torch.Tensor
    reward_margin: torch.Tensor  # mean of reward(chosen) − reward(rejected)
    reward_accuracy: torch.Tensor  # fraction of pairs with reward(chosen) > reward(rejected)
    chosen_reward: torch.Tensor  # means over the batch
    rejected_reward: torch.Tensor
    chosen_logps: torch.Tensor  # mean policy log-prob of the chosen / rejected completions
    rejected_logps: torch.Tensor

    def metrics(self) -> dict[str, torch.Tensor]:
        """Everything but the loss, named as events carry them."""
        return {
            "reward_margin": self.reward_margin,
            "reward_accuracy": self.reward_accuracy,
            "chosen_reward": self.chosen_reward,
            "rejected_reward": self.rejected_reward,
            "chosen_logps": self.chosen_logps,
            "rejected_logps": self.rejected_logps,
        }


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """The sigmoid DPO loss from summed completion log-probs, each [B]."""
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    margin, chosen_reward, rejected_reward = margin.detach(), chosen_reward.detach(), rejected_reward.detach()
    return DPOOutput(
        loss=loss,
        reward_margin=margin.mean(),
        reward_accuracy=(margin > 0).float().mean(),
        chosen_reward=chosen_reward.mean(),
        rejected_reward=rejected_reward.mean(),
        chosen_logps=policy_chosen.detach().mean(),
        rejected_logps=policy_rejected.detach().mean(),
    )


def dpo_step_loss(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    beta: float = 0.1,
) -> DPOOutput:
    """DPO on one batch from `ChatBatchSampler` over (chosen, rejected) pairs: rows [0, B) chosen, [B, 2B)
    rejected. The reference runs without gradients."""
    policy_chosen, policy_rejected = model_logprobs(policy, inputs, targets).chunk(2)
    with torch.no_grad():
        reference_chosen, reference_rejected = model_logprobs(reference, inputs, targets).chunk(2)
    return dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)


__all__ = ["DPOOutput", "dpo_loss", "dpo_step_loss", "model_logprobs", "sequence_logprobs"]
