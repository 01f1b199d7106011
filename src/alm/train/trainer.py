"""The training loop: one `Trainer` per run, built from a `RunPlan` (`alm.train.launch`).

`__init__` builds everything; `run()` loops over `train_step` (`alm.train.step`, which also owns the one host
sync per step: whether the update is finite) and hands each step to components that decide for themselves when
they are due — the step log, validation, samples and the checkpointer. Every output goes through one call,
`report(event)`: events.jsonl and the terminal renderer on rank 0 (`alm.train.report`).

Interrupts. SIGINT/SIGTERM only set a flag (`alm.train.signals`); the loop notices it between optimizer steps, so
a half-accumulated step is never saved as complete: it saves last.pt, reports `stop` (reason `interrupted`) with
the exact resume command, and returns. Bit-exact resume on the CPU follows from restoring weights, optimizer,
scheduler, sampler position and every RNG state; evals and samples never touch the global RNGs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from torch import nn

from alm.config import to_dict
from alm.device import describe, make_grad_scaler, memory_stats, setup_device
from alm.errors import AlmError, DataError
from alm.events import ErrorEvent, EventWriter, StartEvent, StopEvent, WarningEvent
from alm.fileio import atomic_write_text, remove_stale_temp_files
from alm.model import Transformer
from alm.rundir import RunDir
from alm.train import checkpoint as ckpt_io
from alm.train.checkpointer import Checkpointer
from alm.train.compiled import compile_for_training, is_compile_failure
from alm.train.guard import NonFiniteGuard
from alm.train.launch import RunPlan
from alm.train.memory import training_failure
from alm.train.objective import ObjectiveSetup, PackedObjective
from alm.train.optim import build_optimizer
from alm.train.parallel import Parallel, rank_device
from alm.train.progress import make_progress
from alm.train.report import Reporter, StepLog
from alm.train.rng import capture_rng_state, restore_rng_state, seed_everything
from alm.train.samples import Samples
from alm.train.schedule import LRScheduler
from alm.train.sharded import ShardedCheckpoints, full_model_state, restore_model_and_optimizer
from alm.train.signals import StopRequest
from alm.train.step import Batch, LossFn, StepResult, train_step
from alm.train.validation import Validation, resolve_patience


@dataclass(frozen=True)
class TrainResult:
    run: RunDir
    step: int
    total_steps: int
    reason: str  # finished | early_stop | interrupted | nan
    best_val_loss: float | None
    last_checkpoint: Path | None
    resume_command: str | None
    last_sample: str | None = None
    detail: str | None = None  # why an early or `nan` stop stopped; which step an interrupted run saved
    saved_step: int | None = None  # the step last.pt holds


class Trainer:
    def __init__(
        self,
        plan: RunPlan,
        *,
        console: Console | None = None,
        progress: str | None = None,
        stop: StopRequest | None = None,
        loss_fn: LossFn | None = None,
    ):
        tcfg = plan.config.train
        self.plan, self.tcfg = plan, tcfg
        self.parallel = Parallel.setup(tcfg.parallel)  # torchrun: DDP or FSDP2 (alm.train.parallel)
        rank, world_size = self.parallel.rank, self.parallel.world_size
        self.is_main, self.world_size = rank == 0, world_size
        self.stop = stop or StopRequest(announce=self.is_main)  # one rank tells the terminal
        self.device, self.precision = setup_device(rank_device(tcfg.device, world_size), tcfg.precision)
        seed_everything(tcfg.seed)
        self.model = Transformer(plan.config.model).to(self.device).train()
        if plan.initial_weights is not None and plan.resume_from is None:  # a parent's (alm.train.parent)
            self.model.load_state_dict(plan.initial_weights)
        setup = ObjectiveSetup(plan, self.model, self.device, self.precision, rank, world_size)
        self.objective = (plan.objective or PackedObjective)(setup)
        self.forward = self.parallel.wrap(self.model, self.device, self.precision.precision)
        self.optimizer = build_optimizer(self.model, tcfg)  # after wrapping: FSDP2 makes parameters shards
        self.scheduler = LRScheduler(self.optimizer, tcfg)
        self.scaler = make_grad_scaler(self.precision)
        self.loss_fn = loss_fn or self.objective.loss_fn
        sinks = (EventWriter(plan.run.events_path), make_progress(progress or tcfg.progress, console))
        self.report = Reporter(*sinks) if self.is_main else Reporter()
        train_tokens = self.objective.train_tokens
        gather = self.parallel.gather
        self.log = StepLog(self.report, tcfg, self.device, gather=gather, train_tokens=train_tokens)
        self.planned_epochs = self.objective.planned_epochs(tcfg.steps)
        patience = resolve_patience(tcfg, self.planned_epochs)
        self.validation = Validation(self.objective.measure, tcfg, self.report, patience=patience)
        self.samples = Samples(self.model, plan.tokenizer_path, tcfg, self.device, self.report)
        shards = (  # FSDP2: every rank saves its shards through DCP
            ShardedCheckpoints(plan.run.checkpoints_dir, self.model, self.optimizer, writes=self.is_main)
            if self.parallel.sharded
            else None
        )
        self.checkpointer = Checkpointer(
            plan.run, tcfg, self.stop, self.report, writes=self.is_main, sharded=shards
        )
        self.step, self.tokens = 0, 0
        self.guard = NonFiniteGuard(self.report, tcfg.max_bad_steps)
        if plan.resume_from is not None:
            self._restore(ckpt_io.load_checkpoint(plan.resume_from))
        self.eager: nn.Module | None = None  # the uncompiled forward while a compiled one is in use
        self.compile_note: str | None = None  # why train.compile is not used, for a warning at the start
        if tcfg.compile:
            compiled, self.compile_note = compile_for_training(self.forward, self.device)
            if compiled is not self.forward:
                self.eager, self.forward = self.forward, compiled

    def _restore(self, ckpt: dict[str, Any]) -> None:
        fingerprint = (ckpt.get("tokenizer") or {}).get("fingerprint")
        if fingerprint and fingerprint != self.objective.tokenizer_fingerprint:
            raise DataError(
                "the training data was tokenized with a different tokenizer than this run",
                hint="resume with the data the run was trained on, or start a new run",
            )
        try:
            start = Path(self.plan.resume_from or "")
            restore_model_and_optimizer(
                start, ckpt, self.model, self.optimizer, sharded=self.parallel.sharded
            )
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(f"{self.plan.resume_from} does not fit this model: {str(exc)[:300]}") from None
        self.scheduler.load_state_dict(ckpt.get("scheduler") or {})
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.objective.load_state_dict(ckpt["loader"])
        restore_rng_state(ckpt["rng"], self.device)
        metrics = ckpt.get("metrics") or {}
        if metrics.get("loss_ema") is not None:
            self.log.ema = torch.tensor(float(metrics["loss_ema"]), device=self.device)
        self.validation.load_state_dict(metrics)
        self.step, self.tokens = int(ckpt["step"]), int(ckpt.get("tokens_seen", 0))
        self.checkpointer.saved_step = self.step

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        reason = "error"
        try:
            with self.stop.installed():
                self._start()
                reason = self._loop()
                self.log.flush()  # a run that stops between log steps still reports where it stopped
                if reason != "nan":
                    self.checkpointer.finish(self.step, self._checkpoint)
        except KeyboardInterrupt:  # a second Ctrl+C: stop now; the checkpoints on disk are complete files
            reason = "interrupted"
        except BaseException as exc:
            failure = (
                exc
                if isinstance(exc, AlmError)
                else training_failure(exc, self.step) or self.parallel.failure(exc)  # torchrun: a rank died
            )
            self.report(ErrorEvent(message=str(failure) if failure else f"{type(exc).__name__}: {exc}"))
            if failure is not None and failure is not exc:  # out of memory, a full disk: a message
                raise failure from None
            raise
        finally:
            resume = self._resume_command(reason)
            detail = self._stop_detail(reason)
            self.report(StopEvent(step=self.step, reason=reason, resume_command=resume, detail=detail))
            self.report.close()
            if self.is_main:
                with contextlib.suppress(OSError):
                    self.plan.run.pid_path.unlink()
        last = self.plan.run.checkpoint("last")
        return TrainResult(
            run=self.plan.run,
            step=self.step,
            total_steps=self.tcfg.steps,
            reason=reason,
            best_val_loss=self.validation.best_val_loss,
            last_checkpoint=last if last.is_file() else None,
            resume_command=self._resume_command(reason),
            last_sample=self.samples.last,
            detail=self._stop_detail(reason) or None,
            saved_step=self.checkpointer.saved_step,
        )

    def _loop(self) -> str:
        self.log.begin(self.step, self.tokens)
        while self.step < self.tcfg.steps:
            if self.parallel.any(self.stop.requested):  # every rank stops at the same step
                return "interrupted"
            self.step += 1
            lr = self.scheduler.step(self.step)
            result = self._train_step(self._micro_batches())
            diverged = self.guard.after_step(self.step, result)
            self.log.record(self.step, self.tokens, lr, result)
            if diverged:
                return "nan"
            with self.log.paused():
                best = self.validation.after_step(self.step)
                self.samples.after_step(self.step)
                self.checkpointer.after_step(self.step, self._checkpoint, best=best)
            if self.validation.early_stop:
                return "early_stop"
        return "nan" if self.guard.at_end(self.step) else "finished"

    def _train_step(self, batches: list[Batch]) -> StepResult:
        try:
            return train_step(
                self.forward,
                batches,
                self.loss_fn,
                self.optimizer,
                precision=self.precision,
                scaler=self.scaler,
                grad_clip=self.tcfg.grad_clip,
                parallel=self.parallel,
            )
        except Exception as exc:  # a compiled step that fails to compile is repeated eagerly, with a warning
            if self.eager is None or not is_compile_failure(exc):
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            failed = f"{type(exc).__name__}: {first_line}"
            message = f"train.compile: compiling failed ({failed}); training eagerly"
        self.report(WarningEvent(step=self.step, message=message))
        self.optimizer.zero_grad(set_to_none=True)
        self.forward, self.eager = self.eager, None
        return self._train_step(batches)

    def _micro_batches(self) -> list[Batch]:
        batches = []
        for _ in range(self.tcfg.grad_accum):
            batch, tokens = self.objective.next_batch()
            self.tokens += tokens * self.world_size  # every rank holds a batch like this one
            batches.append(tuple(t.to(self.device, non_blocking=True) for t in batch))
        return batches

    # -- start, checkpoints, stop ----------------------------------------------------------------------------
    def _start(self) -> None:
        """Write the run's files and report the start (with any precision warnings)."""
        plan, run = self.plan, self.plan.run
        if self.is_main:
            run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(run.checkpoints_dir)
            config = yaml.safe_dump(to_dict(plan.config), sort_keys=False, allow_unicode=True)
            atomic_write_text(run.config_path, config)
            # A fine-tuning plan may have written the run's tokenizer already (with chat tokens added).
            if plan.resume_from is None and plan.tokenizer_path.resolve() != run.tokenizer_path.resolve():
                shutil.copyfile(plan.tokenizer_path, run.tokenizer_path)
                meta = plan.tokenizer_path.with_name("tokenizer.meta.json")
                if meta.is_file():
                    shutil.copyfile(meta, run.path / meta.name)
            run.pid_path.write_text(f"{os.getpid()}\n")
        device = {
            **describe(self.device, self.precision),
            "dtype": self.precision.autocast_dtype or "float32",
        }
        params = {
            "total": self.model.num_params(),
            "non_embedding": self.model.num_params(exclude_embeddings=True),
        }
        self.report(
            StartEvent(
                run=run.name,
                pid=os.getpid(),
                config=to_dict(plan.config),
                device=device,
                params=params,
                total_steps=self.tcfg.steps,
                resumed_from=self.step if plan.resume_from is not None else None,
                command=list(plan.command),
                changes={key: list(change) for key, change in plan.changes.items()},
                global_batch=self.tcfg.batch_size * self.tcfg.grad_accum * self.world_size,
                ranks=self.parallel.gather(self._rank_info()),
                **self.parallel.describe(self.device),
                train_tokens=self.objective.train_tokens,
                planned_epochs=self.planned_epochs,
                early_stop_patience=self.validation.patience,
            )
        )
        for warning in (*self.precision.warnings, *filter(None, [self.compile_note])):
            self.report(WarningEvent(step=self.step, message=warning))

    def _rank_info(self) -> dict[str, Any]:
        return {"device": str(self.device), "host": socket.gethostname(), "memory": memory_stats(self.device)}

    def _checkpoint(self) -> dict[str, Any]:
        sharded = self.parallel.sharded  # FSDP2: weights gathered on rank 0, optimizer shards saved by DCP
        return ckpt_io.checkpoint_dict(
            full_model_state(self.model) if sharded else self.model.state_dict(),
            step=self.step,
            tokens_seen=self.tokens,
            config=to_dict(self.plan.config),
            tokenizer_fingerprint=self.objective.tokenizer_fingerprint,
            vocab_size=self.objective.vocab_size,
            optimizer=None if sharded else self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            loader=self.objective.state_dict(),
            rng=capture_rng_state(self.device),
            metrics={**self.validation.state_dict(), "loss_ema": self.log.ema_value()},
        )

    def _stop_detail(self, reason: str) -> str:
        """What the stop reason alone does not say."""
        saved = self.checkpointer.saved_step
        if reason == "early_stop":
            return self.validation.early_stop or ""
        if reason == "nan":
            return self.guard.detail
        if reason == "interrupted" and saved is not None and saved != self.step:
            return f"stopped before step {self.step} was saved: last.pt holds step {saved}, where a resume continues"
        return ""

    def _resume_command(self, reason: str) -> str | None:
        """The command that continues this run, when continuing makes sense (not after finishing or NaNs)."""
        if reason in ("finished", "early_stop", "nan") or not self.plan.run.checkpoint("last").is_file():
            return None
        return self.plan.resume_command


def train(plan: RunPlan, **kwargs: Any) -> TrainResult:
    """Run `plan` to completion, interruption or a NaN stop."""
    return Trainer(plan, **kwargs).run()


__all__ = ["TrainResult", "Trainer", "train"]
