"""What a run optimizes — its batches, its loss and its validation: the part of a run that differs between
pretraining and fine-tuning, behind one small interface so that all of them share the trainer's loop.

The trainer (`alm.train.trainer`) asks its `Objective` for `grad_accum` batches a step and hands them to
`train_step` with `loss_fn`; it saves `state_dict()` (the data order and whatever else resuming needs) in every
checkpoint under "loader" and validates through `measure()`. A `RunPlan` names the factory that builds the
objective (`RunPlan.objective`); None is pretraining on packed shards (`PackedObjective`). The fine-tuning
objectives (SFT, DPO) live in `alm.finetune`.

A factory runs after the model is built (holding a parent run's weights when the plan names them,
`RunPlan.initial_weights`) and before the optimizer is; on a resume the trainer then restores the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from alm.data.loader import BatchSampler, PackedDataset, check_compatible
from alm.device import PrecisionPlan
from alm.evaluate import evaluate_packed
from alm.model import Transformer
from alm.train.step import Batch, LossFn, lm_loss
from alm.train.validation import Measurement

if TYPE_CHECKING:
    from alm.train.launch import RunPlan


class Objective(Protocol):
    loss_fn: LossFn
    tokenizer_fingerprint: str  # the tokenizer its data is in: checked on resume, saved in checkpoints
    vocab_size: int  # that tokenizer's vocabulary
    train_tokens: int | None  # tokens in one pass over the training data (epochs seen = tokens / this)

    def next_batch(self) -> tuple[Batch, int]:
        """This rank's next micro-batch (a tuple of CPU tensors) and the tokens it holds, padding excluded."""
        ...

    def measure(self) -> Measurement | str:
        """Validation on held-out data; a string says why there is nothing to measure."""
        ...

    def planned_epochs(self, steps: int) -> float | None:
        """Passes over the training data that `steps` optimizer steps make (auto early stopping reads it)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class ObjectiveSetup:
    """What a factory builds an objective from: the plan, and the trainer's model, device and ranks."""

    plan: RunPlan
    model: Transformer
    device: torch.device
    precision: PrecisionPlan
    rank: int = 0
    world_size: int = 1

    @property
    def seq_len(self) -> int:
        return self.plan.config.train.seq_len or self.plan.config.model.max_seq_len


ObjectiveFactory = Callable[[ObjectiveSetup], Objective]


class PackedObjective:
    """Pretraining: next-token prediction on packed shards, validated on the packed val split."""

    def __init__(self, setup: ObjectiveSetup):
        plan, cfg = setup.plan, setup.plan.config.train
        if plan.packed_dir is None:
            raise ValueError("pretraining needs RunPlan.packed_dir")  # a programming error: plans set it
        self.setup, self.cfg, self.seq_len, self.loss_fn = setup, cfg, setup.seq_len, lm_loss
        self.train_ds = PackedDataset.open(plan.packed_dir, split="train")
        check_compatible(self.train_ds, plan.config.model.require_vocab())
        self.val_ds = PackedDataset.open(plan.packed_dir, split="val")
        self.tokenizer_fingerprint = self.train_ds.tokenizer_fingerprint
        self.vocab_size = self.train_ds.vocab_size
        self.train_tokens = self.train_ds.num_tokens
        self.sampler = BatchSampler(
            self.train_ds,
            cfg.batch_size,
            self.seq_len,
            cfg.seed,
            rank=setup.rank,
            world_size=setup.world_size,
        )

    def next_batch(self) -> tuple[Batch, int]:
        x, y = self.sampler.next_batch()
        return (x, y), x.numel()

    def measure(self) -> Measurement | str:
        if self.val_ds.num_tokens <= self.seq_len:
            return f"the val split has fewer than {self.seq_len + 1} tokens"
        result = evaluate_packed(
            self.setup.model,  # not the compiled forward: evaluation would compile a second graph for little gain
            self.val_ds,
            batch_size=self.cfg.batch_size,
            seq_len=self.seq_len,
            max_batches=self.cfg.eval_batches,
            device=self.setup.device,
            precision=self.setup.precision,
            shard=(self.setup.rank, self.setup.world_size),  # torchrun: each rank scores its share
        )
        return Measurement.of(result)

    def planned_epochs(self, steps: int) -> float | None:
        setup = self.setup  # every batch is full: batch_size windows of seq_len tokens on every rank
        planned = steps * self.cfg.grad_accum * self.cfg.batch_size * self.seq_len * setup.world_size
        return planned / self.train_tokens if self.train_tokens else None

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


__all__ = ["Objective", "ObjectiveFactory", "ObjectiveSetup", "PackedObjective"]
