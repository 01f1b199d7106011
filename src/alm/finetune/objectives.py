"""The fine-tuning objectives the trainer runs (`alm.train.objective.Objective`): SFT and DPO.

Both draw padded chat batches (`alm.chat.batches.ChatBatchSampler`: no cross-example attention, a resumable
seeded order) from a model that, on a fresh start, holds the parent's weights (the plan's `initial_weights`).

SFT is next-token cross-entropy on the assistant tokens only (the sampler's targets are -100 elsewhere), validated
like pretraining (loss, perplexity, bits per byte) on the held-out conversations' assistant tokens.

DPO's reference is the starting checkpoint, and its log-probabilities are computed once, when the run starts, for
every train and held-out pair (TRL's `precompute_ref_log_probs`): no second model in memory, no reference forward
per step, and a resumed run keeps the same reference even if the parent run has trained on since — the numbers
travel in every checkpoint. Validation reports the DPO loss on held-out pairs with reward accuracy and margin.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from alm.chat.batches import ChatBatchSampler
from alm.chat.dpo import dpo_loss, model_logprobs
from alm.device import PrecisionPlan, autocast_context
from alm.errors import DataError
from alm.evaluate import evaluate_batches
from alm.finetune.config import FinetuneConfig
from alm.finetune.data import ChatData
from alm.train.objective import ObjectiveFactory, ObjectiveSetup
from alm.train.step import Batch, LossOutput, lm_loss
from alm.train.validation import Measurement

if TYPE_CHECKING:
    from alm.tokenizer import Tokenizer


class ChatObjective:
    """What SFT and DPO share: train batches, held-out batches, epochs counted in examples."""

    def __init__(self, setup: ObjectiveSetup, data: ChatData, tokenizer: Tokenizer):
        cfg = setup.plan.config.train
        self.setup, self.batch_size = setup, cfg.batch_size
        self.tokenizer_fingerprint, self.vocab_size = tokenizer.fingerprint, tokenizer.vocab_size
        sampler = functools.partial(
            ChatBatchSampler, batch_size=cfg.batch_size, seq_len=setup.seq_len, pad_id=tokenizer.pad_id
        )
        self.sampler = sampler(data.train, seed=cfg.seed, rank=setup.rank, world_size=setup.world_size)
        self.train_tokens: int | None = sum(
            example.inputs for group in self.sampler.groups for example in group
        )
        self.val = sampler(data.val) if data.val else None
        # Every evaluation scores the same first held-out examples, in file order (eval_batches may change on
        # resume, so what depends on the held-out data covers all of it).
        self.val_items = min(len(data.val), cfg.eval_batches * cfg.batch_size)

    def _next(self) -> tuple[list[int], torch.Tensor, torch.Tensor, int]:
        """(item indices, inputs, targets, input tokens without padding) of this rank's next batch."""
        indices = self.sampler.next_indices()
        x, y = self.sampler.batch(indices)
        tokens = sum(example.inputs for i in indices for example in self.sampler.groups[i])
        return indices, x, y, tokens

    def in_order(
        self, sampler: ChatBatchSampler, limit: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first `limit` items of `sampler` (default all), in order, `batch_size` at a time (the data order
        is not advanced)."""
        n = len(sampler.groups) if limit is None else limit
        for start in range(0, n, self.batch_size):
            yield sampler.batch(range(start, min(start + self.batch_size, n)))

    def planned_epochs(self, steps: int) -> float | None:
        """Examples drawn over examples held: a batch holds `batch_size` examples however padded it is."""
        cfg, setup = self.setup.plan.config.train, self.setup
        return steps * cfg.grad_accum * cfg.batch_size * setup.world_size / len(self.sampler.groups)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])


class SFTObjective(ChatObjective):
    """Supervised fine-tuning: cross-entropy on assistant tokens."""

    def __init__(self, setup: ObjectiveSetup, data: ChatData, tokenizer: Tokenizer):
        super().__init__(setup, data, tokenizer)
        self.loss_fn = lm_loss  # the targets are masked already: only assistant tokens count
        # Bits per byte divide by the UTF-8 bytes of the scored text: the held-out assistant turns.
        rows = self.val.groups[: self.val_items] if self.val else []
        self.val_bytes = sum(
            len(tokenizer.decode(ex.ids[ex.mask].tolist(), skip_special_tokens=True).encode())
            for (ex,) in rows
        )

    def next_batch(self) -> tuple[Batch, int]:
        _, x, y, tokens = self._next()
        return (x, y), tokens

    def measure(self) -> Measurement | str:
        if self.val is None:
            return "no held-out conversations (finetune.val_fraction is 0)"
        setup = self.setup
        result = evaluate_batches(
            setup.model,
            self.in_order(self.val, self.val_items),
            n_bytes=self.val_bytes,
            device=setup.device,
            precision=setup.precision,
        )
        return Measurement.of(result)


def dpo_batch_loss(model: torch.nn.Module, batch: Batch, *, beta: float) -> LossOutput:
    """The DPO loss on (inputs, targets, reference chosen, reference rejected): rows [0, B) of the inputs are
    the chosen completions, [B, 2B) the rejected ones; the reference log-probs are [B] each."""
    x, y, reference_chosen, reference_rejected = batch
    chosen, rejected = model_logprobs(model, x, y).chunk(2)
    out = dpo_loss(chosen, rejected, reference_chosen, reference_rejected, beta)
    return LossOutput(out.loss, out.loss.detach(), out.metrics())


class DPOObjective(ChatObjective):
    """Direct preference optimization against the starting checkpoint's precomputed log-probs."""

    def __init__(self, setup: ObjectiveSetup, data: ChatData, tokenizer: Tokenizer, *, beta: float):
        super().__init__(setup, data, tokenizer)
        self.beta = beta
        self.loss_fn = functools.partial(dpo_batch_loss, beta=beta)
        self.reference: dict[str, torch.Tensor] = {}  # "train"/"val" -> [pairs, 2] (chosen, rejected)
        if setup.plan.resume_from is None:  # the model holds the starting weights: the reference, now
            self.reference = {"train": self.logprobs(self.sampler)}
            if self.val is not None:
                self.reference["val"] = self.logprobs(self.val)

    def logprobs(self, pairs: ChatBatchSampler, limit: int | None = None) -> torch.Tensor:
        """Summed completion log-probs of the first `limit` pairs (default all) under the model as it is:
        [pairs, 2], float32, CPU."""
        setup, out = self.setup, []
        with _inference(setup.model, setup.precision):
            for x, y in self.in_order(pairs, limit):
                scores = model_logprobs(setup.model, x.to(setup.device), y.to(setup.device)).float()
                out.append(torch.stack(scores.chunk(2), dim=1).cpu())
        return torch.cat(out)

    def next_batch(self) -> tuple[Batch, int]:
        indices, x, y, tokens = self._next()
        reference = self.reference["train"][indices]
        return (x, y, reference[:, 0].contiguous(), reference[:, 1].contiguous()), tokens

    def measure(self) -> Measurement | str:
        if self.val is None:
            return "no held-out preference pairs (finetune.val_fraction is 0)"
        policy, reference = self.logprobs(self.val, self.val_items), self.reference["val"][: self.val_items]
        out = dpo_loss(policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], self.beta)
        return Measurement(float(out.loss), metrics={k: float(v) for k, v in out.metrics().items()})

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reference": self.reference}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # refuses other data (the sampler's digest)
        reference = state.get("reference") or {}
        expected = {"train": len(self.sampler.groups), "val": len(self.val.groups) if self.val else 0}
        found = {split: len(reference[split]) if split in reference else 0 for split in expected}
        if found != expected:
            raise DataError(
                f"the checkpoint's reference log-probs cover {found} pairs, the data {expected}",
                hint="resume with the preference data the run started with, or start a new run",
            )
        self.reference = reference


@contextlib.contextmanager
def _inference(model: torch.nn.Module, precision: PrecisionPlan) -> Iterator[None]:
    """Eval mode, no autograd, the run's autocast; the model's mode is restored after. (`no_grad`, not
    `inference_mode`: the reference log-probs later meet the policy's in autograd.)"""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast_context(precision):
            yield
    finally:
        model.train(was_training)


def objective_factory(cfg: FinetuneConfig, data: ChatData, tokenizer: Tokenizer) -> ObjectiveFactory:
    """What `RunPlan.objective` holds for a fine-tuning run."""
    if cfg.mode == "sft":
        return functools.partial(SFTObjective, data=data, tokenizer=tokenizer)
    return functools.partial(DPOObjective, data=data, tokenizer=tokenizer, beta=cfg.beta)


__all__ = ["ChatObjective", "DPOObjective", "SFTObjective", "dpo_batch_loss", "objective_factory"]
