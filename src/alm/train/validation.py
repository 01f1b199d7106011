"""Periodic validation during training, and what its history says: the best val loss, early stopping and the
"val loss rising" warning.

Due every `eval_interval` steps and at the last step, the objective measures itself on held-out data
(`Objective.measure`; pretraining: `alm.evaluate` on a fixed subset of the val split). A new best val loss
decides `best.pt`. Two rules read the history:

- Early stopping: `patience` evals in a row without a new best stop the run (reason `early_stop`); best.pt
  already holds the best. `train.early_stop_patience: null` (auto) turns it on, with `AUTO_PATIENCE`, for runs
  planned to see more than `AUTO_EPOCHS` epochs of the training data — where a small corpus gets memorised —
  and leaves shorter runs alone.
- Memorising: val loss higher than at the eval before, `RISING_EVALS` evals in a row, is reported once per rise
  as a warning that names the step the rise began at and best.pt.

Both rules' counters travel in checkpoints (`state_dict`), so a resumed run continues them exactly: a run resumed
after an early stop stops again at its next eval without a new best, unless the resume raises
`train.early_stop_patience` or sets it to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alm.events import EvalEvent, WarningEvent
from alm.format import number
from alm.train.config import TrainConfig
from alm.train.report import Reporter

if TYPE_CHECKING:
    from alm.evaluate import EvalResult

AUTO_PATIENCE = 4  # evals without a new best; at the presets' eval_interval, 1,000 steps of no progress
AUTO_EPOCHS = 3.0  # auto early stopping is on for runs planned to see more epochs than this
RISING_EVALS = 3  # consecutive rises that mean memorising rather than noise


def resolve_patience(cfg: TrainConfig, planned_epochs: float | None) -> int:
    """The early-stopping patience in evals (0: off), with `null` (auto) decided by the epochs the run plans to
    see (None: unknown, off)."""
    if cfg.early_stop_patience is not None:
        return cfg.early_stop_patience
    if not cfg.eval_interval or planned_epochs is None:
        return 0
    return AUTO_PATIENCE if planned_epochs > AUTO_EPOCHS else 0


@dataclass(frozen=True)
class Measurement:
    """One validation of any objective: the loss that decides best.pt, and the figures reported with it."""

    loss: float
    perplexity: float | None = None
    bits_per_byte: float | None = None
    # The objective's own figures (DPO: reward_accuracy, ...).
    metrics: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, result: EvalResult) -> Measurement:
        return cls(result.mean_loss, result.perplexity, result.bits_per_byte)


class Validation:
    """Runs the objective's `measure()` when due and keeps the history (see the module docstring)."""

    def __init__(
        self,
        measure: Callable[[], Measurement | str],  # a string says why there is nothing to measure
        cfg: TrainConfig,
        report: Reporter,
        *,
        patience: int = 0,
    ):
        self.measure, self.cfg, self.report = measure, cfg, report
        self.patience = patience  # 0: no early stopping
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.evals_since_best = 0
        self.last_eval: tuple[int, float] | None = None  # (step, val loss) of the latest eval
        self.rises, self.rise_from = 0, 0  # consecutive rises, and the step of the eval they rise from
        self.early_stop: str | None = None  # why the run should stop now, once an eval decided it

    def due(self, step: int) -> bool:
        interval = self.cfg.eval_interval
        return bool(interval) and (step % interval == 0 or step == self.cfg.steps)

    def after_step(self, step: int) -> bool:
        """Evaluate if due; True when that set a new best val loss."""
        if not self.due(step):
            return False
        result = self.measure()
        if isinstance(result, str):
            self.report(WarningEvent(step=step, message=f"no evaluation: {result}"))
            return False
        loss = result.loss
        improved = math.isfinite(loss) and (self.best_val_loss is None or loss < self.best_val_loss)
        if improved:
            self.best_val_loss, self.best_step, self.evals_since_best = loss, step, 0
        else:
            self.evals_since_best += 1
        self.report(
            EvalEvent(
                step=step,
                val_loss=loss,
                val_ppl=result.perplexity,
                val_bpb=result.bits_per_byte,
                best_val_loss=self.best_val_loss,
                metrics=dict(result.metrics) or None,
            )
        )
        self._read_history(step, loss)
        return improved

    def _read_history(self, step: int, loss: float) -> None:
        previous = self.last_eval
        if previous is not None and not loss <= previous[1]:  # a NaN counts as a rise
            if self.rises == 0:
                self.rise_from = previous[0]
            self.rises += 1
        else:
            self.rises = 0
        self.last_eval = (step, loss)
        best = f"best.pt (step {self.best_step}, val loss {number(self.best_val_loss)})"
        if self.rises == RISING_EVALS:
            message = f"val loss rising since step {self.rise_from}: the model is memorising — see {best}"
            self.report(WarningEvent(step=step, message=message))
        if self.patience and self.evals_since_best >= self.patience and step < self.cfg.steps:
            self.early_stop = (
                f"val loss has not improved for {self.evals_since_best} evals; {best} keeps the best"
            )

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint's `metrics` keep of the history."""
        return {
            "best_val_loss": self.best_val_loss,
            "best_val_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "last_val": list(self.last_eval) if self.last_eval is not None else None,
            "val_rises": [self.rises, self.rise_from],
        }

    def load_state_dict(self, metrics: dict[str, Any]) -> None:
        """Continue the history from a checkpoint's `metrics` (older checkpoints hold the best val loss only)."""
        self.best_val_loss = metrics.get("best_val_loss")
        self.best_step = metrics.get("best_val_step")
        self.evals_since_best = int(metrics.get("evals_since_best") or 0)
        last = metrics.get("last_val")
        self.last_eval = (int(last[0]), float(last[1])) if last else None
        self.rises, self.rise_from = (int(v) for v in metrics.get("val_rises") or (0, 0))
