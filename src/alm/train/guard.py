"""When non-finite numbers end a run: a streak of skipped steps (the loss or gradients were not finite), an
update that left inf/nan in the weights, or a run that reaches its last step on a skipped one.

A skipped step is an exact no-op (`alm.train.step`), so a single one costs nothing; `train.max_bad_steps` in a
row means the run has diverged. A run must also *end* on a good update to count as finished: one whose last
steps were skipped is reported as diverged (reason `nan`, exit 1) rather than "done". On any `nan` stop the
trainer saves nothing more, so the checkpoints on disk are the last good ones.
"""

from __future__ import annotations

from alm.events import WarningEvent
from alm.train.report import Reporter
from alm.train.step import StepResult


class NonFiniteGuard:
    def __init__(self, report: Reporter, max_bad_steps: int):
        self.report, self.max_bad_steps = report, max_bad_steps
        self.streak = 0  # skipped steps in a row
        self.detail = ""  # why the run must stop, once it must

    def after_step(self, step: int, result: StepResult) -> bool:
        """Report a bad step; True when the run must stop after `step`."""
        if not result.weights_finite:
            self.detail = (
                f"the update of step {step} left inf or nan in the weights (a learning rate far too high?); "
                "nothing from it was saved"
            )
            self.report(WarningEvent(step=step, message=self.detail))
            return True
        self.streak = self.streak + 1 if result.skipped else 0
        if not result.skipped:
            return False
        self.report(
            WarningEvent(
                step=step,
                message=f"step {step}: non-finite loss or gradients (loss {result.loss.item():.4g}, grad norm "
                f"{result.grad_norm.item():.4g}); update skipped ({self.streak}/{self.max_bad_steps} in a row)",
            )
        )
        if self.streak < self.max_bad_steps:
            return False
        self.detail = (
            f"the loss or gradients were not finite for {self.streak} steps in a row "
            f"(steps {step - self.streak + 1}-{step})"
        )
        return True

    def at_end(self, step: int) -> bool:
        """True when a run that reached its last step still ends diverged: on skipped steps."""
        if not self.streak:
            return False
        first = step - self.streak + 1
        steps = f"step {step} was" if self.streak == 1 else f"steps {first}-{step} were"
        self.detail = f"the run ended on skipped updates: {steps} not finite (loss or gradients)"
        return True


__all__ = ["NonFiniteGuard"]
