"""Learning-rate schedules as pure functions of the step, plus a tiny stateful wrapper for checkpoints.

- `cosine`: linear warmup to `lr`, then half-cosine down to `min_lr` at the last step.
- `wsd` (warmup-stable-decay): warmup, hold `lr`, then decay linearly to `min_lr` over the final
  `decay_fraction` of the run. Extending a run keeps the stable phase; only the tail moves.
- `constant`: warmup, then `lr`.
Steps count from 1 (the first optimizer step is step 1), so warmup never uses lr = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from alm.train.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate for optimizer step `step` (1-based) of a `cfg.steps`-step run."""
    total, warmup = cfg.steps, cfg.warmup_steps
    if warmup > 0 and step <= warmup:
        return cfg.lr * step / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        span = max(1, total - warmup)
        progress = min(1.0, (step - warmup) / span)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    decay_steps = max(1, round(cfg.decay_fraction * total))
    decay_start = total - decay_steps
    if step <= decay_start:
        return cfg.lr
    progress = min(1.0, (step - decay_start) / decay_steps)
    return cfg.lr + (cfg.min_lr - cfg.lr) * progress


@dataclass
class LRScheduler:
    """Sets each param group's lr for the next step; its state is the last step it set."""

    optimizer: Any
    cfg: TrainConfig
    last_step: int = 0

    def step(self, step: int) -> float:
        lr = lr_at(step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_step = step
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}  # the rest is the run's config, which the checkpoint holds

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", 0))
