"""`alm bench train --nproc N`: how training throughput scales from one process to N under torchrun (DDP or
FSDP2), measured in the same run.

Every process trains the same model on random batches of `batch` sequences (per process, as `train.batch_size`
is) with the trainer's own step (`alm.train.step.train_step`, through `alm.train.parallel` as in training) and
times its steps; the N-process figure is global tokens per second on rank 0's clock (every step ends in
collectives, so the ranks move together). The one-process baseline does one process's share of that work with
the resources each of the N gets (on the CPU, its cores divided by N), so the efficiency — N-process tok/s over N ×
one-process tok/s — says what communication and synchronisation cost, not how many cores the machine has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from alm.bench.train import Throughput
from alm.errors import AlmError, UsageError


@dataclass(frozen=True)
class ScalingSettings:
    nproc: int = 2
    parallel: str = "ddp"  # ddp | fsdp
    model: str = "micro"
    overrides: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    batch: int = 16  # sequences per process and step
    seq: int | None = None  # None: min(256, max_seq_len)
    vocab_size: int | None = None  # None: the preset's, else the vocab its parameter count assumes
    steps: int = 10
    warmup: int = 2
    threads: int | None = None  # CPU threads per process; None: the cores divided by nproc
    seed: int = 0

    def check(self) -> None:
        if self.nproc < 2:
            raise UsageError(f"--nproc {self.nproc}: scaling needs at least 2 processes", hint="--nproc 2")
        if self.parallel not in ("ddp", "fsdp"):
            raise UsageError(f"--parallel {self.parallel}: unknown mode", hint="use ddp or fsdp")
        for name in ("batch", "steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must not be negative, got {self.warmup}")

    @property
    def threads_per_process(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.nproc)


@dataclass
class Launch(Throughput):
    """One measured launch: `processes` processes each training on `batch` sequences a step."""

    processes: int
    step_times: list[float]  # rank 0's seconds per measured step
    tokens_per_step: int  # all processes together
    final_loss: float
    device: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScalingResult:
    settings: ScalingSettings
    single: Launch
    multi: Launch

    @property
    def speedup(self) -> float:
        return self.multi.tokens_per_second / self.single.tokens_per_second

    @property
    def efficiency(self) -> float:
        return self.speedup / self.settings.nproc

    def as_dict(self) -> dict[str, Any]:
        def launch(result: Launch) -> dict[str, Any]:
            return {
                **asdict(result),
                "median_step_ms": result.median_step * 1e3,
                "tokens_per_second": result.tokens_per_second,
            }

        return {
            "settings": asdict(self.settings),
            "threads_per_process": self.settings.threads_per_process,
            "single": launch(self.single),
            "multi": launch(self.multi),
            "speedup": self.speedup,
            "efficiency": self.efficiency,
        }


def measure(settings: ScalingSettings) -> Launch:
    """Time `settings.steps` training steps in this process: alone, or as one rank under torchrun."""
    import torch

    from alm.bench.train import DEFAULT_SEQ, TrainBenchSettings, random_batches, resolve_model_config
    from alm.device import describe, make_grad_scaler, setup_device, synchronize
    from alm.model import Transformer
    from alm.train.config import TrainConfig
    from alm.train.optim import build_optimizer
    from alm.train.parallel import Parallel, rank_device
    from alm.train.step import lm_loss, train_step

    parallel = Parallel.setup(settings.parallel if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "none")
    device, plan = setup_device(rank_device(settings.device, parallel.world_size), settings.precision)
    cfg = resolve_model_config(
        TrainBenchSettings(model=settings.model, overrides=settings.overrides, vocab_size=settings.vocab_size)
    )
    seq = settings.seq or min(DEFAULT_SEQ, cfg.max_seq_len)
    torch.manual_seed(settings.seed)
    model = Transformer(cfg).to(device)
    forward = parallel.wrap(model, device, plan.precision)
    train_cfg = TrainConfig()  # the trainer's optimizer defaults
    optimizer, scaler = build_optimizer(model, train_cfg), make_grad_scaler(plan)
    vocab = cfg.require_vocab()
    batches = random_batches(4, settings.batch, seq, vocab, settings.seed + parallel.rank, device)
    times: list[float] = []
    loss = torch.zeros(())
    for i in range(settings.warmup + settings.steps):
        synchronize(device)
        start = time.perf_counter()
        result = train_step(
            forward,
            [batches[i % len(batches)]],
            lm_loss,
            optimizer,
            precision=plan,
            scaler=scaler,
            grad_clip=train_cfg.grad_clip,
            parallel=parallel,
        )
        synchronize(device)
        if i >= settings.warmup:
            times.append(time.perf_counter() - start)
        loss = result.loss
    return Launch(
        processes=parallel.world_size,
        step_times=times,
        tokens_per_step=settings.batch * seq * parallel.world_size,
        final_loss=float(loss),
        device=describe(device, plan),
    )


def run_scaling_bench(
    settings: ScalingSettings, log: Callable[[str], None] = lambda _msg: None
) -> ScalingResult:
    """The one-process baseline here, then the same work on `settings.nproc` processes under torchrun."""
    import torch

    from alm.train.torchrun import torchrun_command

    settings.check()
    threads = settings.threads_per_process
    log(f"1 process, {threads} thread(s): {settings.warmup} warm-up + {settings.steps} measured steps")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        single = measure(settings)
    finally:
        torch.set_num_threads(before)
    log(f"{settings.nproc} processes ({settings.parallel}), {threads} thread(s) each, under torchrun")
    with tempfile.TemporaryDirectory(prefix="alm-scaling-") as tmp:
        out = Path(tmp) / "launch.json"
        args = [json.dumps(asdict(settings)), str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run(torchrun_command(args, settings.nproc, module="alm.bench.scaling"), env=env)
        if done.returncode != 0 or not out.is_file():
            raise AlmError(
                f"the {settings.nproc}-process launch failed (exit status {done.returncode})",
                hint="its processes' errors are above",
            )
        multi = Launch(**json.loads(out.read_text()))
    return ScalingResult(settings, single, multi)


def _worker(settings_json: str, out: str) -> None:
    """One rank of the N-process launch; rank 0 writes the measurement to `out`."""
    from alm.train.parallel import process_group

    data = json.loads(settings_json)
    settings = replace(ScalingSettings(), **{**data, "overrides": tuple(data.get("overrides", ()))})
    with process_group():
        result = measure(settings)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps(asdict(result)))


__all__ = ["Launch", "ScalingResult", "ScalingSettings", "measure", "run_scaling_bench"]


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
