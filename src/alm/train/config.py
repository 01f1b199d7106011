"""`TrainConfig`: everything about one training run except the model and the data.

Presets live in `configs/train/{micro,default}.yaml` (package data, like the model presets); `--set
train.KEY=VALUE` overrides any field. Interval fields use 0 to mean "never".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alm.config import CONFIG_DIR, Presets, require

Schedule = Literal["cosine", "wsd", "constant"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
ProgressMode = Literal["auto", "rich", "plain", "none"]
ParallelMode = Literal["auto", "none", "ddp", "fsdp"]


@dataclass
class TrainConfig:
    seed: int = 1337
    steps: int = 2000  # optimizer steps
    batch_size: int = 16  # sequences per micro-batch
    seq_len: int | None = None  # None: the model's max_seq_len
    grad_accum: int = 1  # micro-batches per optimizer step

    # AdamW
    lr: float = 6e-4
    min_lr: float = 6e-5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)

    # learning-rate schedule: linear warmup, then cosine to min_lr / warmup-stable-decay / constant
    schedule: Schedule = "cosine"
    warmup_steps: int = 100
    decay_fraction: float = 0.2  # wsd: the final fraction of steps that decays linearly to min_lr

    # evaluation, samples, logging, checkpoints
    eval_interval: int = 250
    eval_batches: int = 20
    # Evals without a new best val loss before the run stops (reason `early_stop`; best.pt keeps the best).
    # 0: off; null (auto): on for runs planned to see more than a few epochs (`alm.train.validation`).
    early_stop_patience: int | None = None
    sample_interval: int = 500
    sample_prompt: str = "\n"
    sample_tokens: int = 120
    log_interval: int = 10
    ckpt_interval: int = 500
    keep_last: int = 3  # step-N.pt files kept (last.pt and best.pt are always kept)

    # execution
    compile: bool = False
    precision: Precision = "auto"
    device: str = "auto"
    # Under torchrun (`alm train --nproc N`): ddp replicates the model, fsdp shards it (FSDP2); auto is ddp for
    # several processes and none for one. batch_size stays per process (alm.train.parallel).
    parallel: ParallelMode = "auto"
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    progress: ProgressMode = "auto"

    def validate(self) -> None:
        require(0 <= self.seed < 2**64, "seed", f"must be in [0, 2**64) (torch's range), got {self.seed}")
        require(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(
            self.seq_len is None or self.seq_len >= 2, "seq_len", f"must be at least 2, got {self.seq_len}"
        )
        require(self.grad_accum >= 1, "grad_accum", f"must be at least 1, got {self.grad_accum}")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        require(self.min_lr >= 0, "min_lr", f"must not be negative, got {self.min_lr}")
        require(self.min_lr <= self.lr, "min_lr", f"({self.min_lr}) must not exceed lr ({self.lr})")
        require(self.weight_decay >= 0, "weight_decay", f"must not be negative, got {self.weight_decay}")
        require(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        require(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        require(self.eps > 0, "eps", f"must be positive, got {self.eps}")
        require(self.grad_clip >= 0, "grad_clip", f"must not be negative (0 disables), got {self.grad_clip}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must not be negative, got {self.warmup_steps}")
        require(
            self.warmup_steps <= self.steps,
            "warmup_steps",
            f"({self.warmup_steps}) must not exceed steps ({self.steps})",
        )
        require(
            0 < self.decay_fraction <= 1, "decay_fraction", f"must be in (0, 1], got {self.decay_fraction}"
        )
        if self.schedule == "wsd":
            decay_start = self.steps - round(self.decay_fraction * self.steps)
            require(
                self.warmup_steps <= decay_start,
                "warmup_steps",
                f"({self.warmup_steps}) runs into the wsd decay phase, which starts at step {decay_start}",
            )
        for key in ("eval_interval", "sample_interval", "ckpt_interval", "keep_last"):
            value = getattr(self, key)
            require(value >= 0, key, f"must not be negative (0 disables), got {value}")
        require(self.log_interval >= 1, "log_interval", f"must be at least 1, got {self.log_interval}")
        require(self.eval_batches >= 1, "eval_batches", f"must be at least 1, got {self.eval_batches}")
        patience = self.early_stop_patience
        if patience is not None:
            require(patience >= 0, "early_stop_patience", f"must not be negative (0: off), got {patience}")
            require(
                patience == 0 or self.eval_interval > 0,
                "early_stop_patience",
                f"({patience}) needs evaluations, but eval_interval is 0; set train.eval_interval",
            )
        require(self.sample_tokens >= 1, "sample_tokens", f"must be at least 1, got {self.sample_tokens}")
        require(self.max_bad_steps >= 1, "max_bad_steps", f"must be at least 1, got {self.max_bad_steps}")
        require(bool(self.device.strip()), "device", "must not be empty (use auto)")


PRESETS = Presets("train", TrainConfig, CONFIG_DIR / "train")
