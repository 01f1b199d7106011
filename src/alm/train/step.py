"""One optimizer step: forward/backward over the micro-batches, clip, update — or skip a non-finite update.

The trainer and `alm bench train` both call `train_step`, so the benchmark measures exactly what training pays.
That includes one host sync per step: whether the loss and gradient norm are finite. A skipped update must be
an exact no-op (weights *and* Adam moments untouched) so that "the last good checkpoint" and bit-exact resume
keep their meaning, and that needs the answer before `optimizer.step()`. The flag is produced at the end of the
backward pass, which the optimizer kernels would wait for anyway, so the cost is the launch latency of the step
(a few µs on CUDA/MPS, nothing on the CPU) — not a stall per micro-batch. With fp16 the GradScaler makes the
same check itself (overflowing steps are its business and do not count as bad steps; a non-finite *loss* does).

After the update, a second check: the weights' largest |x| (one fused reduction and a sync once the optimizer's
kernels are done) must be finite. An absurd but finite learning rate can overflow them from finite gradients;
such an update is already applied (undoing it would need a copy of the weights and moments every step), so
`weights_finite=False` tells the trainer to stop without saving: the checkpoints on disk stay the last good ones.

What varies between objectives is the loss function and the batches it reads: `lm_loss` is next-token
prediction on (inputs, targets); supervised fine-tuning is the same with masked targets (-100); a preference
objective (DPO) brings its own batches and function, and reports its extra figures in `LossOutput.metrics`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from alm.device import PrecisionPlan, autocast_context
from alm.train.finite import max_abs
from alm.train.optim import clip_grad_norm

if TYPE_CHECKING:
    from alm.train.parallel import Parallel

Batch = Any  # whatever the loss function reads; for `lm_loss`, (inputs, targets) int64 [B, T] on the device


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # what is backpropagated (for `lm_loss`: cross-entropy + the router's aux loss)
    reported: torch.Tensor  # what is reported as the loss (detached; for `lm_loss`: the cross-entropy)
    metrics: Mapping[str, torch.Tensor] = field(default_factory=dict)  # extra figures, left on the device


LossFn = Callable[[nn.Module, Batch], LossOutput]


def lm_loss(model: nn.Module, batch: Batch) -> LossOutput:
    """Next-token cross-entropy; the router's load-balance loss trains but is not reported."""
    inputs, targets = batch
    out = model(inputs, targets=targets)
    return LossOutput(out.loss + out.aux_loss, out.loss.detach(), out.router_stats or {})


@dataclass(frozen=True)
class StepResult:
    loss: torch.Tensor  # mean reported loss over the micro-batches (a device scalar: no host sync)
    grad_norm: torch.Tensor  # global gradient norm before clipping (a device scalar)
    skipped: bool  # the loss or the gradients were not finite: weights and optimizer state are untouched
    metrics: Mapping[str, torch.Tensor]  # the last micro-batch's extra figures
    weights_finite: bool = True  # False: the update was applied and left inf/nan weights; the run must stop


def train_step(
    model: nn.Module,
    micro_batches: Sequence[Batch],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    *,
    precision: PrecisionPlan,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    parallel: Parallel | None = None,
) -> StepResult:
    """Accumulate gradients over `micro_batches` (the loss of each scaled by 1/len), clip the global norm to
    `grad_clip` (0: no clipping, the norm is still measured) and step `optimizer`, unless a value is not finite.
    Under torchrun `parallel` reduces gradients on the last micro-batch only and makes the loss (and with it the
    skip decision) global; None, or one process, makes no collective call."""
    dp = parallel if parallel is not None and parallel.distributed else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss_sum: torch.Tensor | None = None
    metrics: Mapping[str, torch.Tensor] = {}
    for i, batch in enumerate(micro_batches):
        sync = dp.grad_sync(i == len(micro_batches) - 1) if dp is not None else contextlib.nullcontext()
        with sync:  # DDP decides in the forward whether the backward reduces
            with autocast_context(precision):
                out = loss_fn(model, batch)
            loss = out.loss / len(micro_batches)
            (scaler.scale(loss) if scaler is not None else loss).backward()
        reported = out.reported.float()
        loss_sum = reported if loss_sum is None else loss_sum + reported
        metrics = out.metrics
    if loss_sum is None:
        raise ValueError("train_step needs at least one micro-batch")
    mean_loss = loss_sum / len(micro_batches)
    if dp is not None:  # every rank reports, and skips on, the global loss
        mean_loss = dp.mean(mean_loss)
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = clip_grad_norm(params, grad_clip)
    signal = mean_loss if scaler is not None else norm + mean_loss
    skipped = not bool(torch.isfinite(signal))  # the one host sync per step (see the module docstring)
    weights_finite = True
    if not skipped:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        # A finite update can still overflow the weights (an absurd lr): such a step must not count as done.
        peak = max_abs(params)
        weights_finite = bool(torch.isfinite(dp.mean(peak) if dp is not None else peak))
    optimizer.zero_grad(set_to_none=True)
    return StepResult(mean_loss.detach(), norm.detach(), skipped, metrics, weights_finite)


__all__ = ["Batch", "LossFn", "LossOutput", "StepResult", "lm_loss", "train_step"]
