"""The training loop: one `Trainer` per run, driven by a `RunPlan` from `alm.train.launch`.

Host syncs. The loss and its EMA stay on the device; they are read (`.item()`) only at log intervals, evals and
samples. One scalar is read per optimizer step: whether the gradient norm is finite. A skipped update must be an
exact no-op (weights *and* Adam moments untouched) so that "the last good checkpoint" and bit-exact resume keep
their meaning, and that needs the answer before `optimizer.step()`. The flag is produced at the end of the
backward pass, which the optimizer kernels would wait for anyway, so the cost is the launch latency of the step
(a few µs on CUDA/MPS, nothing on the CPU) — not a stall per micro-batch. With fp16 the GradScaler makes the same
check itself (overflowing steps are its business and do not count as bad steps; a non-finite *loss* does).

Interrupts. SIGINT/SIGTERM only set a flag (`alm.train.signals`); the loop notices it between optimizer steps, so
a half-accumulated step is never saved as complete: it saves last.pt, emits `stop` (reason `interrupted`) with the
exact resume command, and returns. Bit-exact resume on the CPU follows from restoring weights, optimizer,
scheduler, sampler position and every RNG state; evals and samples never touch the global RNGs.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.markup import escape

from alm.device import (
    apply_matmul_precision,
    autocast_context,
    choose_precision,
    describe,
    make_grad_scaler,
    memory_stats,
    probe_capabilities,
    resolve_device,
    synchronize,
)
from alm.errors import AlmError, DataError, UsageError
from alm.fileio import atomic_link, atomic_write_text, remove_stale_temp_files
from alm.train import checkpoint as ckpt_io
from alm.train.evaluation import bytes_per_token, evaluate
from alm.train.events import EventWriter
from alm.train.optim import build_optimizer, clip_grad_norm, optimizer_kernel
from alm.train.progress import NullProgress, make_progress
from alm.train.rng import capture_rng_state, restore_rng_state, seed_everything
from alm.train.rundir import DEFAULT_RUNS_ROOT, RunDir, rank_info
from alm.train.schedule import LRScheduler
from alm.train.session import RunConfig
from alm.train.signals import StopRequest

EMA_ALPHA = 0.1  # weight of the newest loss in the displayed moving average


@dataclass
class RunPlan:
    """Everything decided before the loop starts (see `alm.train.launch`)."""

    run: RunDir
    config: RunConfig  # finalized: vocab_size and seq_len are set
    tokenizer_path: Path
    packed_dir: Path
    resume_from: Path | None = None  # last.pt when resuming
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # config changes on resume
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    runs_root: Path = DEFAULT_RUNS_ROOT

    @property
    def run_ref(self) -> str:
        """How commands name this run: its name when it lives under the runs root, else its path."""
        in_root = self.run.path.resolve().parent == Path(self.runs_root).resolve()
        return shlex.quote(self.run.name if in_root else str(self.run.path))

    @property
    def resume_command(self) -> str:
        return f"alm resume {self.run_ref}"


@dataclass
class TrainResult:
    run: RunDir
    step: int
    total_steps: int
    reason: str  # finished | interrupted | nan
    best_val_loss: float | None
    last_checkpoint: Path | None
    resume_command: str | None
    last_sample: str | None = None


def training_loss(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, cross-entropy to report): the router's aux loss trains but is not reported."""
    aux = getattr(out, "aux_loss", None)
    return (out.loss + aux if aux is not None else out.loss), out.loss.detach()


@dataclass
class _State:
    step: int = 0
    tokens: int = 0
    best_val_loss: float | None = None
    bad_streak: int = 0
    last_saved_step: int | None = None
    last_sample: str | None = None


class Trainer:
    def __init__(
        self,
        plan: RunPlan,
        *,
        console: Console | None = None,
        progress: str | None = None,
        stop: StopRequest | None = None,
    ):
        self.plan = plan
        self.cfg = plan.config
        self.tcfg = plan.config.train
        self.rank, self.world_size = rank_info()
        self.is_main = self.rank == 0
        self.console = console or Console(highlight=False)
        self.progress_mode = progress or self.tcfg.progress
        self.stop = stop or StopRequest()
        self.state = _State()
        self.loss_ema: torch.Tensor | None = None  # on the device: no sync per step

    # -- set-up ----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        from alm.data.loader import BatchSampler, PackedDataset, check_compatible
        from alm.model import Transformer

        tcfg = self.tcfg
        if self.world_size > 1:  # files and prints are already rank-aware; gradient sync is not built yet
            raise UsageError(
                f"WORLD_SIZE={self.world_size}: multi-process (torchrun) training is not supported yet",
                hint="run `alm train` as a single process",
            )
        self.device = resolve_device(tcfg.device)
        self.precision = choose_precision(probe_capabilities(self.device), tcfg.precision)
        apply_matmul_precision(self.precision)
        seed_everything(tcfg.seed)
        self.model = Transformer(self.cfg.model).to(self.device)
        self.model.train()
        self.optimizer = build_optimizer(self.model, tcfg, self.device)
        self.scheduler = LRScheduler(self.optimizer, tcfg)
        self.scaler = make_grad_scaler(self.precision)
        self.train_ds = PackedDataset.open(self.plan.packed_dir, split="train")
        self.val_ds = PackedDataset.open(self.plan.packed_dir, split="val")
        check_compatible(self.train_ds, self.cfg.model.require_vocab())
        self.sampler = BatchSampler(
            self.train_ds,
            batch_size=tcfg.batch_size,
            seq_len=tcfg.seq_len,
            seed=tcfg.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        self.tokens_per_step = tcfg.batch_size * tcfg.seq_len * tcfg.grad_accum * self.world_size
        if self.plan.resume_from is not None:
            self._restore(ckpt_io.load_checkpoint(self.plan.resume_from))
        self.forward = torch.compile(self.model) if tcfg.compile else self.model

    def _restore(self, ckpt: dict[str, Any]) -> None:
        fingerprint = (ckpt.get("tokenizer") or {}).get("fingerprint")
        if fingerprint and fingerprint != self.train_ds.tokenizer_fingerprint:
            raise DataError(
                f"the dataset in {self.plan.packed_dir} was tokenized with a different tokenizer than this run",
                hint="resume with the data the run was trained on, or start a new run",
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(f"{self.plan.resume_from} does not fit this model: {str(exc)[:300]}") from None
        for group in self.optimizer.param_groups:  # the saved flags name the device it was written on
            group.update({"fused": None, "foreach": None, **optimizer_kernel(self.device)})
        self.scheduler.load_state_dict(ckpt.get("scheduler") or {})
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.sampler.load_state_dict(ckpt["loader"])
        restore_rng_state(ckpt["rng"], self.device)
        metrics = ckpt.get("metrics") or {}
        if metrics.get("loss_ema") is not None:
            self.loss_ema = torch.tensor(float(metrics["loss_ema"]), device=self.device)
        self.state = _State(
            step=int(ckpt["step"]),
            tokens=int(ckpt.get("tokens_seen", 0)),
            best_val_loss=metrics.get("best_val_loss"),
            last_saved_step=int(ckpt["step"]),
        )

    def _write_run_files(self) -> None:
        run = self.plan.run
        run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(run.checkpoints_dir)
        text = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False, allow_unicode=True)
        atomic_write_text(run.config_path, text)
        if self.plan.resume_from is None:
            shutil.copyfile(self.plan.tokenizer_path, run.tokenizer_path)
            meta = self.plan.tokenizer_path.with_name("tokenizer.meta.json")
            if meta.is_file():
                shutil.copyfile(meta, run.path / meta.name)
        run.pid_path.write_text(f"{os.getpid()}\n")

    # -- one optimizer step ----------------------------------------------------------------------------------
    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor, bool, Any]:
        """Forward/backward over grad_accum micro-batches, then clip and step (or skip a non-finite update)."""
        tcfg, device = self.tcfg, self.device
        loss_sum = torch.zeros((), device=device)
        out = None
        for _ in range(tcfg.grad_accum):
            x, y = self.sampler.next_batch()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_context(self.precision):
                out = self.forward(x, targets=y)
                loss, reported = training_loss(out)
            loss = loss / tcfg.grad_accum
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += reported.float()
        mean_loss = loss_sum / tcfg.grad_accum
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = clip_grad_norm(list(self.model.parameters()), tcfg.grad_clip)
        bad_signal = mean_loss if self.scaler is not None else norm + mean_loss
        bad = not bool(torch.isfinite(bad_signal))  # the one host sync per step (see the module docstring)
        if not bad:  # a bad step leaves weights and optimizer state exactly as they were
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        router = getattr(out, "router_stats", None)
        return mean_loss.detach(), norm.detach(), bad, router

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self._build()
        run, tcfg = self.plan.run, self.tcfg
        events = EventWriter(run.events_path, enabled=self.is_main)
        if self.is_main:
            self._write_run_files()
        progress = make_progress(
            self.progress_mode,
            tcfg.steps,
            console=self.console,
            title=f"{run.name} · {self.device} · {self.precision.precision}",
            enabled=self.is_main,
        )
        reason = "error"
        try:
            with self.stop.installed(), progress:
                self._emit_start(events, progress)
                reason = self._loop(events, progress)
                if reason != "nan" and self.state.last_saved_step != self.state.step:
                    self._save(events, progress, kinds=())
        except KeyboardInterrupt:  # a second Ctrl+C: stop now; the checkpoints on disk are complete files
            reason = "interrupted"
        except BaseException as exc:
            message = str(exc) if isinstance(exc, AlmError) else f"{type(exc).__name__}: {exc}"
            events.emit("error", message=message)
            events.emit(
                "stop", step=self.state.step, reason="error", resume_command=self._resume_command("error")
            )
            raise
        finally:
            if reason != "error":
                events.emit(
                    "stop", step=self.state.step, reason=reason, resume_command=self._resume_command(reason)
                )
            events.close()
            if self.is_main:
                with contextlib.suppress(OSError):
                    run.pid_path.unlink()
        last = run.checkpoint("last")
        return TrainResult(
            run=run,
            step=self.state.step,
            total_steps=tcfg.steps,
            reason=reason,
            best_val_loss=self.state.best_val_loss,
            last_checkpoint=last if last.is_file() else None,
            resume_command=self._resume_command(reason),
            last_sample=self.state.last_sample,
        )

    def _resume_command(self, reason: str) -> str | None:
        """The command that continues this run, when continuing makes sense (not after finishing or NaNs)."""
        if reason in ("finished", "nan") or not self.plan.run.checkpoint("last").is_file():
            return None
        return self.plan.resume_command

    def _emit_start(self, events: EventWriter, progress: NullProgress) -> None:
        model = self.model
        events.emit(
            "start",
            run=self.plan.run.name,
            pid=os.getpid(),
            config=self.cfg.to_dict(),
            device={
                **describe(self.device, self.precision),
                "dtype": self.precision.autocast_dtype or "float32",
            },
            params={"total": model.num_params(), "non_embedding": model.num_params(exclude_embeddings=True)},
            total_steps=self.tcfg.steps,
            resumed_from=self.state.step if self.plan.resume_from is not None else None,
            command=self.plan.command,
            changes={k: list(v) for k, v in self.plan.changes.items()},
            world_size=self.world_size,
        )
        for warning in self.precision.warnings:
            self._warn(events, progress, warning)
        if self.plan.resume_from is not None:
            changed = ", ".join(f"{k}={v[1]}" for k, v in self.plan.changes.items())
            progress.note(f"resuming from step {self.state.step}" + (f" with {changed}" if changed else ""))

    def _loop(self, events: EventWriter, progress: NullProgress) -> str:
        tcfg, state = self.tcfg, self.state
        progress.start(state.step, state.tokens)
        last_log_time, last_log_step, paused = time.perf_counter(), state.step, 0.0
        while state.step < tcfg.steps:
            if self.stop.requested:
                return "interrupted"
            step = state.step + 1
            lr = self.scheduler.step(step)
            loss, norm, bad, router = self._train_step()
            state.step, state.tokens = step, state.tokens + self.tokens_per_step
            if bad:
                state.bad_streak += 1
                self._warn(
                    events,
                    progress,
                    f"step {step}: non-finite loss or gradients (loss {loss.item():.4g}, grad norm "
                    f"{norm.item():.4g}); update skipped ({state.bad_streak}/{tcfg.max_bad_steps} in a row)",
                    step=step,
                )
                if state.bad_streak >= tcfg.max_bad_steps:
                    return "nan"
            else:
                state.bad_streak = 0
                self.loss_ema = loss if self.loss_ema is None else torch.lerp(self.loss_ema, loss, EMA_ALPHA)

            if step % tcfg.log_interval == 0 or step == tcfg.steps:
                synchronize(self.device)
                now = time.perf_counter()
                elapsed = max(1e-9, now - last_log_time - paused)
                steps_done = max(1, step - last_log_step)
                metrics = {
                    "step": step,
                    "tokens": state.tokens,
                    "loss": loss.item(),
                    "loss_ema": self.loss_ema.item() if self.loss_ema is not None else None,
                    "lr": lr,
                    "grad_norm": norm.item(),
                    "tok_per_s": steps_done * self.tokens_per_step / elapsed,
                    "step_time": elapsed / steps_done,
                    "router": _router_lists(router),
                    "memory": memory_stats(self.device),
                }
                events.emit("step", **metrics)
                progress.update({**metrics, "best_val_loss": state.best_val_loss})
                last_log_time, last_log_step, paused = now, step, 0.0
            progress.advance(step, state.tokens)  # after a log line, so plain output does not repeat it

            started = time.perf_counter()
            kinds = self._periodic(step, events, progress)
            if kinds is not None:
                self._save(events, progress, kinds=kinds)
            paused += time.perf_counter() - started
        return "finished"

    def _periodic(self, step: int, events: EventWriter, progress: NullProgress) -> tuple[str, ...] | None:
        """Evals and samples due at `step`; returns the checkpoint kinds to save now (None: no save)."""
        tcfg, final = self.tcfg, step == self.tcfg.steps
        kinds: list[str] = []
        if (
            tcfg.eval_interval
            and (step % tcfg.eval_interval == 0 or final)
            and self._evaluate(step, events, progress)
        ):
            kinds.append("best")
        if tcfg.sample_interval and (step % tcfg.sample_interval == 0 or final):
            self._sample(step, events, progress)
        if tcfg.ckpt_interval and step % tcfg.ckpt_interval == 0:
            kinds.append("step")
        return tuple(kinds) if kinds else None

    # -- eval, samples, checkpoints --------------------------------------------------------------------------
    def _evaluate(self, step: int, events: EventWriter, progress: NullProgress) -> bool:
        """Run validation; True when it set a new best val loss."""
        from alm.data.loader import iter_eval_batches

        tcfg = self.tcfg
        if self.val_ds.num_tokens <= tcfg.seq_len:
            self._warn(
                events, progress, f"no evaluation: the val split has fewer than {tcfg.seq_len + 1} tokens"
            )
            return False
        batches = iter_eval_batches(
            self.val_ds, batch_size=tcfg.batch_size, seq_len=tcfg.seq_len, max_batches=tcfg.eval_batches
        )
        result = evaluate(
            self.forward,
            batches,
            device=self.device,
            plan=self.precision,
            bytes_per_token=bytes_per_token(self.val_ds),
        )
        if result is None:
            return False
        state = self.state
        improved = math.isfinite(result.loss) and (
            state.best_val_loss is None or result.loss < state.best_val_loss
        )
        if improved:
            state.best_val_loss = result.loss
            progress.set(best_val_loss=result.loss)
        events.emit(
            "eval",
            step=step,
            val_loss=result.loss,
            val_ppl=result.perplexity,
            val_bpb=result.bits_per_byte,
            best_val_loss=state.best_val_loss,
        )
        bpb = f"  bpb {result.bits_per_byte:.3f}" if result.bits_per_byte is not None else ""
        progress.note(
            f"[cyan]eval[/] step {step}: val loss {result.loss:.4f}  ppl {result.perplexity:.2f}{bpb}"
            + ("  [green](best)[/]" if improved else "")
        )
        return improved

    def _sample(self, step: int, events: EventWriter, progress: NullProgress) -> None:
        from alm.sample import SamplingConfig, generate
        from alm.tokenizer import Tokenizer

        if not hasattr(self, "tokenizer"):
            self.tokenizer = Tokenizer.load(self.plan.tokenizer_path)
        tcfg = self.tcfg
        sampling = SamplingConfig(
            temperature=0.8, top_k=50, max_new_tokens=tcfg.sample_tokens, seed=tcfg.seed + step
        )
        with _eval_mode(self.model):
            text = "".join(
                generate(self.model, self.tokenizer, tcfg.sample_prompt, sampling, device=self.device)
            )
        self.state.last_sample = tcfg.sample_prompt + text
        events.emit("sample", step=step, prompt=tcfg.sample_prompt, text=text)
        progress.note(f"[magenta]sample[/] step {step}:\n{escape((tcfg.sample_prompt + text).strip())}")

    def _checkpoint_dict(self) -> dict[str, Any]:
        state = self.state
        return ckpt_io.checkpoint_dict(
            self.model.state_dict(),
            step=state.step,
            tokens_seen=state.tokens,
            config=self.cfg.to_dict(),
            tokenizer_fingerprint=self.train_ds.tokenizer_fingerprint,
            vocab_size=self.train_ds.vocab_size,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            loader=self.sampler.state_dict(),
            rng=capture_rng_state(self.device),
            metrics={
                "best_val_loss": state.best_val_loss,
                "loss_ema": self.loss_ema.item() if self.loss_ema is not None else None,
            },
        )

    def _save(self, events: EventWriter, progress: NullProgress, kinds: tuple[str, ...]) -> None:
        """Write last.pt (always) and link the other `kinds` (best, step) to it; a second signal waits."""
        state, run = self.state, self.plan.run
        state.last_saved_step = state.step
        if not self.is_main:
            return
        ckpt = self._checkpoint_dict()
        with self.stop.critical():
            last = ckpt_io.atomic_save(ckpt, run.checkpoint("last"))
            written = [("last", last)]
            if "best" in kinds:
                written.append(("best", atomic_link(last, run.checkpoint("best"))))
            if "step" in kinds:
                written.append(("step", atomic_link(last, run.checkpoint(state.step))))
                self._prune_step_checkpoints()
        for kind, path in written:
            events.emit("checkpoint", step=state.step, path=str(path), kind=kind)
        names = ", ".join(p.name for _, p in written)
        progress.note(f"[dim]checkpoint step {state.step}: {names}[/]")

    def _prune_step_checkpoints(self) -> None:
        steps = self.plan.run.step_checkpoints()
        excess = len(steps) - self.tcfg.keep_last
        for _, path in steps[: max(0, excess)]:
            with contextlib.suppress(OSError):
                path.unlink()

    def _warn(
        self, events: EventWriter, progress: NullProgress, message: str, step: int | None = None
    ) -> None:
        events.emit("warning", step=self.state.step if step is None else step, message=message)
        progress.note(f"[yellow]warning:[/] {escape(message)}")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _router_lists(router: Any) -> dict[str, list[float]] | None:
    if not router:
        return None
    return {name: value.detach().float().cpu().reshape(-1).tolist() for name, value in router.items()}


def train(plan: RunPlan, **kwargs: Any) -> TrainResult:
    """Run `plan` to completion, interruption or a NaN stop."""
    return Trainer(plan, **kwargs).run()


__all__ = ["RunPlan", "TrainResult", "Trainer", "train", "training_loss"]
