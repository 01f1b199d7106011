"""The trainer's output: one reporting call for every event, and the step events made from step results.

`Reporter` hands each event to its sinks — on rank 0 the events.jsonl writer and the terminal renderer, on other
ranks none — so the trainer has one output channel and torchrun needs no second logging path. `StepLog` turns
step results into `step` events at log intervals: the only place a step's loss is read back to the host.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import torch

from alm.device import memory_stats, synchronize
from alm.events import Event, StepEvent
from alm.train.config import TrainConfig
from alm.train.step import StepResult

EMA_ALPHA = 0.1  # weight of the newest loss in the displayed moving average


class Sink(Protocol):
    def write(self, event: Event) -> None: ...

    def close(self) -> None: ...


class Reporter:
    """`report(event)` writes `event` to every sink; closing the reporter closes them."""

    def __init__(self, *sinks: Sink):
        self.sinks = sinks

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.write(event)
            except OSError:  # a full disk: drop the sink; the error and stop events still reach the others
                self.sinks = tuple(s for s in self.sinks if s is not sink)
                raise

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StepLog:
    """Keeps the latest step result and the loss EMA (on the device), and reports a `step` event when one is due.

    Throughput and `step_time` count training only: time spent inside `paused()` (evaluations, samples and
    checkpoint saves) is left out."""

    def __init__(
        self,
        report: Reporter,
        cfg: TrainConfig,
        device: torch.device,
        gather: Callable[[dict[str, int]], list[dict[str, int]]] | None = None,
        *,
        train_tokens: int | None = None,  # one pass over the training data, for epochs seen
    ):
        self.report, self.interval, self.total_steps, self.device = (
            report,
            cfg.log_interval,
            cfg.steps,
            device,
        )
        self.train_tokens = train_tokens
        self.gather = gather  # under torchrun: every rank's memory figures (a collective: all ranks flush)
        self.ema: torch.Tensor | None = None
        self.last: tuple[int, int, float, StepResult] | None = None  # step, tokens, lr, result
        self.logged_step, self.logged_tokens = 0, 0
        self.window_start, self.paused_seconds = time.perf_counter(), 0.0

    def begin(self, step: int, tokens: int) -> None:
        """Start timing at `step` with `tokens` seen (0, or where a resumed run continues from)."""
        self.logged_step, self.logged_tokens = step, tokens
        self.window_start, self.paused_seconds = time.perf_counter(), 0.0

    def record(self, step: int, tokens: int, lr: float, result: StepResult) -> None:
        if not result.skipped:  # a skipped step's loss is not finite: it would poison the average
            loss = result.loss
            self.ema = loss if self.ema is None else torch.lerp(self.ema, loss, EMA_ALPHA)
        self.last = (step, tokens, lr, result)
        if step % self.interval == 0 or step == self.total_steps:
            self.flush()

    def flush(self) -> None:
        """Report the latest step unless it was reported already (a run that stops between log steps)."""
        if self.last is None or self.last[0] == self.logged_step:
            return
        step, tokens, lr, result = self.last
        synchronize(self.device)
        now = time.perf_counter()
        elapsed = max(1e-9, now - self.window_start - self.paused_seconds)
        steps = max(1, step - self.logged_step)
        memory = memory_stats(self.device)
        ranks = self.gather(memory) if self.gather is not None else [memory]
        self.report(
            StepEvent(
                step=step,
                tokens=tokens,
                epochs=tokens / self.train_tokens if self.train_tokens else None,
                loss=result.loss.item(),
                loss_ema=self.ema_value(),
                lr=lr,
                grad_norm=result.grad_norm.item(),
                tok_per_s=(tokens - self.logged_tokens) / elapsed,  # fine-tuning batches vary in size
                step_time=elapsed / steps,
                router=_lists(result.metrics),  # `lm_loss` reports the router's statistics
                memory=memory,
                rank_memory=ranks if len(ranks) > 1 else None,
                metrics=_scalars(result.metrics),  # e.g. DPO's rewards
            )
        )
        self.logged_step, self.logged_tokens = step, tokens
        self.window_start, self.paused_seconds = now, 0.0

    def ema_value(self) -> float | None:
        return self.ema.item() if self.ema is not None else None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - started


# A loss function's figures are per-layer vectors (the router's) or scalars (an objective's, e.g. DPO's rewards).
def _lists(metrics: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    vectors = {name: value for name, value in metrics.items() if value.dim() > 0}
    if not vectors:
        return None
    return {name: value.detach().float().cpu().reshape(-1).tolist() for name, value in vectors.items()}


def _scalars(metrics: Mapping[str, torch.Tensor]) -> dict[str, float] | None:
    scalars = {name: value.item() for name, value in metrics.items() if value.dim() == 0}
    return scalars or None
