"""Training-step throughput of our model against transformers' `LlamaForCausalLM`, measured in the same run.

Both contenders get the same architecture (the peer's config comes from `alm.model.hf.hf_llama_config`), the
same initial weights (copied through the HF mapping, so their step-0 losses must agree), the same batches, dtype
and autocast, the trainer's optimizer recipe (`alm.train.optim`: AdamW with the same param groups and fused
kernel, global-norm clipping) and the same number of warm-up steps. A step is the trainer's own step
(`alm.train.step.train_step`): forward + loss, backward, clip, the non-finite check, the optimizer step and
zero_grad. The device is synchronized around each step.

Other processes share the machine, so the measured steps are interleaved: step i of each contender runs back to
back (the order alternates, ABBA...), which makes each pair see nearly the same load. Each contender's figures
are medians over its steps; the speed ratio is the median of the per-pair ratios, reported with their
interquartile range. On the CPU the process CPU time of each step is recorded too: it is what the step costs
regardless of how much of the machine other processes take (OpenMP spin-waits included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

from alm.bench.peaks import Peak, device_peak, mfu
from alm.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from alm.device import PrecisionPlan
    from alm.model import ModelConfig, Transformer
    from alm.train.step import LossFn, LossOutput

DEFAULT_SEQ = 256
NOISY_SPREAD = 1.5  # slowest / fastest measured step above which the figures carry a warning
STEP0_LOSS_TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 2e-2}


@dataclass(frozen=True)
class TrainBenchSettings:
    model: str = "micro"  # preset name or YAML file
    overrides: tuple[str, ...] = ()  # `--set` items: model.key=value (or key=value)
    device: str = "auto"
    precision: str = "auto"
    batch: int = 16
    seq: int | None = None  # None: min(256, max_seq_len)
    vocab_size: int | None = None  # None: the preset's, else the vocab its parameter count assumes
    steps: int = 10  # measured steps per contender
    warmup: int = 2  # unmeasured steps per contender, before the first measured pair
    compile: bool = False  # torch.compile both contenders' models
    peer: bool = True
    threads: int | None = None  # CPU: torch.set_num_threads; None keeps torch's default
    profile: bool = False  # after timing, profile one more step per contender and keep its top ops
    seed: int = 0

    def check(self) -> None:
        for name in ("batch", "steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise UsageError(f"--warmup must not be negative, got {self.warmup}")
        if self.seq is not None and self.seq < 2:
            raise UsageError(f"--seq must be at least 2, got {self.seq}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")


class Throughput:
    """Median step time and tokens per second of measured steps (for the benchmarks' result records)."""

    step_times: list[float]  # seconds per measured step
    tokens_per_step: int

    @property
    def median_step(self) -> float:
        return statistics.median(self.step_times)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_step / self.median_step


@dataclass
class ContenderResult(Throughput):
    name: str
    step_times: list[float]  # seconds per measured step, in the order taken
    tokens_per_step: int
    flops_per_token: float
    peak: Peak
    step0_loss: float
    final_loss: float
    cpu_times: list[float]  # process CPU seconds per measured step
    peak_memory: int | None = None  # bytes (see TrainBenchResult.memory_kind)

    @property
    def mfu(self) -> float | None:
        return mfu(self.tokens_per_second, self.flops_per_token, self.peak)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tokens_per_second": self.tokens_per_second,
            "median_step_ms": self.median_step * 1e3,
            "min_step_ms": min(self.step_times) * 1e3,
            "max_step_ms": max(self.step_times) * 1e3,
            "step_times_ms": [t * 1e3 for t in self.step_times],
            "median_cpu_ms": statistics.median(self.cpu_times) * 1e3,
            "mfu": self.mfu,
            "step0_loss": self.step0_loss,
            "final_loss": self.final_loss,
            "peak_memory_bytes": self.peak_memory,
        }


@dataclass
class TrainBenchResult:
    settings: TrainBenchSettings
    model_config: dict[str, Any]
    params: int
    seq: int
    device: dict[str, Any]
    versions: dict[str, str]
    flops_per_token: float
    peak: Peak
    memory_kind: str
    ours: ContenderResult
    peer: ContenderResult | None = None
    peer_skipped: str | None = None  # why there is no peer, when there is none
    warnings: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)  # contender name -> torch.profiler top-ops table

    @property
    def pair_ratios(self) -> list[float]:
        """Per interleaved pair of steps: the peer's step time over ours (> 1: we are faster)."""
        if not self.peer:
            return []
        return [p / o for o, p in zip(self.ours.step_times, self.peer.step_times, strict=True)]

    @property
    def ratio(self) -> float | None:
        """Our speed over the peer's: the median of the per-pair ratios."""
        return statistics.median(self.pair_ratios) if self.peer else None

    @property
    def tokens_per_second_ratio(self) -> float | None:
        """Our median tok/s over the peer's (equals `ratio` on a quiet machine; far from it on a busy one)."""
        return self.ours.tokens_per_second / self.peer.tokens_per_second if self.peer else None

    @property
    def ratio_iqr(self) -> tuple[float, float] | None:
        """Interquartile range of the per-pair ratios: how much the figure moves with the machine's load."""
        return _quartiles(self.pair_ratios) if self.peer else None

    @property
    def cpu_ratio(self) -> float | None:
        """The peer's median CPU time per step over ours (CPU only; None elsewhere)."""
        if not self.peer or self.device.get("type") != "cpu":
            return None
        return statistics.median(self.peer.cpu_times) / statistics.median(self.ours.cpu_times)

    @property
    def step0_loss_diff(self) -> float | None:
        return abs(self.ours.step0_loss - self.peer.step0_loss) if self.peer else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "settings": asdict(self.settings),
            "model_config": self.model_config,
            "params": self.params,
            "batch": self.settings.batch,
            "seq": self.seq,
            "tokens_per_step": self.ours.tokens_per_step,
            "device": self.device,
            "versions": self.versions,
            "flops_per_token": self.flops_per_token,
            "peak_flops": self.peak.flops,
            "peak_source": self.peak.source,
            "memory_kind": self.memory_kind,
            "ours": self.ours.as_dict(),
            "peer": self.peer.as_dict() if self.peer else None,
            "peer_skipped": self.peer_skipped,
            "ratio": self.ratio,
            "ratio_iqr": list(self.ratio_iqr) if self.ratio_iqr else None,
            "tokens_per_second_ratio": self.tokens_per_second_ratio,
            "cpu_ratio": self.cpu_ratio,
            "step0_loss_diff": self.step0_loss_diff,
            "warnings": self.warnings,
            "profiles": self.profiles or None,
        }


# -- the contenders ------------------------------------------------------------------------------------------


@dataclass
class Contender:
    """One model and how its library computes the training loss (`alm.train.step.LossFn`); `forward` is the
    module the step calls: the model, or its torch.compile wrapper."""

    name: str
    model: nn.Module
    loss_fn: LossFn
    forward: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    step_times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    losses: list[torch.Tensor] = field(default_factory=list)
    peak_memory: int | None = None


def hf_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> LossOutput:
    """transformers' own causal-LM loss; `shift_labels` hands it targets that are already shifted, like ours."""
    from alm.train.step import LossOutput

    x, y = batch
    loss = model(input_ids=x, labels=y, shift_labels=y).loss
    return LossOutput(loss, loss.detach())


def build_peer(our_model: Transformer, cfg: ModelConfig, device: torch.device) -> nn.Module:
    """transformers' LlamaForCausalLM with our config and our weights, SDPA attention, in training mode."""
    from alm.model.hf import hf_llama_config, to_hf_llama_state_dict

    try:
        from transformers import LlamaForCausalLM
    except ImportError:
        raise UsageError(
            "the peer needs the transformers package, which is not installed",
            hint="pip install transformers (a dev extra), or pass --no-peer",
        ) from None
    hf_cfg = hf_llama_config(cfg)
    hf_cfg._attn_implementation = "sdpa"
    peer = LlamaForCausalLM(hf_cfg).to(device)  # pyright: ignore[reportArgumentType] (transformers' typing)
    state = to_hf_llama_state_dict(our_model)
    missing, unexpected = peer.load_state_dict(state, strict=False)
    # A tied lm_head is not in the mapped state dict: it is the embedding, shared after loading.
    missing = [k for k in missing if not (k == "lm_head.weight" and hf_cfg.tie_word_embeddings)]
    if missing or unexpected:
        raise UsageError(
            f"the HF mapping does not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}"
        )
    if hf_cfg.tie_word_embeddings:
        peer.tie_weights()
    return peer.train()


# -- timing ----------------------------------------------------------------------------------------------------


def make_step(
    contender: Contender, plan: PrecisionPlan, clip: float, scaler: Any
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The trainer's step (`train_step`) on one micro-batch; returns the reported loss as a device tensor."""
    from alm.train.step import train_step

    optimizer = contender.optimizer
    assert optimizer is not None
    # Not `forward or model`: a compiled module raises on truth tests (it forwards __len__ to the model).
    forward = contender.forward if contender.forward is not None else contender.model

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        result = train_step(
            forward, [(x, y)], contender.loss_fn, optimizer, precision=plan, scaler=scaler, grad_clip=clip
        )
        return result.loss

    return step


def _peak_memory(device: torch.device) -> int:
    from alm.device import memory_stats

    if device.type == "cpu":  # the process's high-water mark (shared by both contenders in this process)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    stats = memory_stats(device)
    return int(stats.get("peak", stats.get("driver", stats.get("allocated", 0))))


def _reset_peak_memory(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _memory_kind(device: torch.device) -> str:
    return {
        "cuda": "peak allocated (torch.cuda.max_memory_allocated)",
        "mps": "MPS driver-allocated memory after the steps",
    }.get(device.type, "process peak RSS (both contenders share the process)")


def run_interleaved(
    contenders: list[tuple[Contender, Callable[..., torch.Tensor]]],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: TrainBenchSettings,
    device: torch.device,
) -> None:
    """Warm every contender up, then time their steps in interleaved pairs whose order alternates."""
    from alm.device import synchronize

    def take(i: int, contender: Contender, step: Callable[..., torch.Tensor], timed: bool) -> None:
        x, y = batches[i % len(batches)]  # every contender sees the same batch sequence
        _reset_peak_memory(device)
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step(x, y)
        synchronize(device)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        contender.losses.append(loss)
        if timed:
            contender.step_times.append(elapsed)
            contender.cpu_times.append(cpu)
            contender.peak_memory = max(contender.peak_memory or 0, _peak_memory(device))

    for contender, step in contenders:
        for i in range(settings.warmup):
            take(i, contender, step, timed=False)
    for i in range(settings.warmup, settings.warmup + settings.steps):
        for contender, step in contenders if i % 2 == 0 else contenders[::-1]:
            take(i, contender, step, timed=True)


def profile_top_ops(
    step: Callable[..., torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    rows: int = 15,
) -> str:
    """torch.profiler's table of the ops that took the most self time in one (already warm) step."""
    from torch.profiler import ProfilerActivity, profile

    from alm.device import synchronize

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step(*batch)
        synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=rows)


# -- the benchmark ---------------------------------------------------------------------------------------------


def resolve_model_config(settings: TrainBenchSettings) -> ModelConfig:
    from alm.model.presets import load_model_config, reference_vocab

    cfg = load_model_config(settings.model, list(settings.overrides))
    if settings.vocab_size is not None:
        if settings.vocab_size < 2:
            raise UsageError(f"--vocab-size must be at least 2, got {settings.vocab_size}")
        cfg.vocab_size = settings.vocab_size
    elif cfg.vocab_size is None:  # the vocabulary the preset's quoted parameter count assumes
        cfg.vocab_size = reference_vocab(settings.model)
    return cfg


def flops_per_token(cfg: ModelConfig, seq: int) -> float:
    """Training FLOPs per token from the model's own formula (6N + attention) at sequence length `seq`."""
    from alm.model.info import model_summary

    # model_summary counts attention at full context; the benchmark's context is `seq`.
    return float(model_summary(dataclasses.replace(cfg, max_seq_len=seq))["flops_per_token"])


def random_batches(
    n: int, batch: int, seq: int, vocab: int, seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Uniform random token batches: throughput does not depend on the token values, and ln(V) is the loss."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=gen)
        # contiguous, as the data loader's batches are
        batches.append((tokens[:, :-1].contiguous().to(device), tokens[:, 1:].contiguous().to(device)))
    return batches


def step0_loss(contender: Contender, batch: tuple[torch.Tensor, torch.Tensor], plan: PrecisionPlan) -> float:
    """The training loss on `batch` before any update: equal for both when the weights are equal.

    Grad mode stays on so that our model takes its training route (the fused head + loss); eval mode only
    turns dropout off. Nothing is backpropagated."""
    from alm.device import autocast_context

    contender.model.eval()
    with autocast_context(plan):
        loss = contender.loss_fn(contender.model, batch).loss
    contender.model.train()
    return float(loss.detach())


def run_train_bench(
    settings: TrainBenchSettings, log: Callable[[str], None] = lambda _msg: None
) -> TrainBenchResult:
    """Measure our training step and, unless `settings.peer` is off, transformers' on the same model."""
    settings.check()
    with _cpu_threads(settings.threads):
        return _run_train_bench(settings, log)


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `n` for the duration (restored after: it is process-global)."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_train_bench(settings: TrainBenchSettings, log: Callable[[str], None]) -> TrainBenchResult:
    import torch

    from alm.device import describe, make_grad_scaler, setup_device
    from alm.model import Transformer
    from alm.train.config import TrainConfig
    from alm.train.optim import build_optimizer
    from alm.train.step import lm_loss

    device, plan = setup_device(settings.device, settings.precision)
    warnings = list(plan.warnings)

    cfg = resolve_model_config(settings)
    seq = settings.seq if settings.seq is not None else min(DEFAULT_SEQ, cfg.max_seq_len)
    if seq > cfg.max_seq_len:
        raise UsageError(
            f"--seq {seq} exceeds the model's max_seq_len ({cfg.max_seq_len})",
            hint=f"use --seq {cfg.max_seq_len} or less, or --set model.max_seq_len={seq}",
        )
    train_cfg = TrainConfig()  # the trainer's optimizer defaults (lr, betas, weight decay, clipping)

    torch.manual_seed(settings.seed)
    our_model = Transformer(cfg).to(device)
    ours = Contender("alm", our_model, lm_loss)
    params = sum(p.numel() for p in ours.model.parameters())
    contenders = [ours]

    peer: Contender | None = None
    peer_skipped = None
    if settings.peer:
        try:
            peer_model = build_peer(our_model, cfg, device)
            peer = Contender("transformers", peer_model, hf_loss)
            contenders.append(peer)
        except UsageError as exc:  # e.g. the dual-FFN router has no Llama equivalent: still measure ours
            peer_skipped = exc.message
            warnings.append(f"no peer: {exc.message}")
    else:
        peer_skipped = "--no-peer"

    batches = random_batches(4, settings.batch, seq, cfg.require_vocab(), settings.seed, device)
    step0 = {c.name: step0_loss(c, batches[0], plan) for c in contenders}
    if peer is not None:
        diff = abs(step0["alm"] - step0["transformers"])
        if diff > STEP0_LOSS_TOLERANCE[plan.precision]:
            warnings.append(
                f"step-0 losses differ by {diff:.2e} (alm {step0['alm']:.5f}, transformers "
                f"{step0['transformers']:.5f}): the two models are not computing the same function"
            )

    steps = []
    for contender in contenders:
        contender.optimizer = build_optimizer(contender.model, train_cfg)
        if settings.compile:
            log(f"compiling {contender.name} (torch.compile; the first steps include the compile time)")
            contender.forward = cast("nn.Module", torch.compile(contender.model))
        steps.append(make_step(contender, plan, train_cfg.grad_clip, make_grad_scaler(plan)))

    log(f"warm-up {settings.warmup} step(s), then {settings.steps} measured step(s) per model")
    run_interleaved(list(zip(contenders, steps, strict=True)), batches, settings, device)

    profiles = {}
    if settings.profile:
        for contender, step in zip(contenders, steps, strict=True):
            log(f"profiling one step of {contender.name}")
            profiles[contender.name] = profile_top_ops(step, batches[0], device)

    fpt = flops_per_token(cfg, seq)
    peak = device_peak(device, describe(device, plan)["name"], plan.precision, plan.matmul_precision)

    def result_of(c: Contender) -> ContenderResult:
        final = float(c.losses[-1])
        if not math.isfinite(final):
            warnings.append(f"{c.name}: the loss became {final} during the benchmark")
        spread = max(c.step_times) / min(c.step_times)
        if spread > NOISY_SPREAD:
            warnings.append(
                f"{c.name}: step times varied {spread:.1f}× between steps, so other processes were competing "
                "for the machine; trust the paired ratio over the tok/s columns, or rerun with --threads 1"
            )
        return ContenderResult(
            name=c.name,
            step_times=c.step_times,
            tokens_per_step=settings.batch * seq,
            flops_per_token=fpt,
            peak=peak,
            step0_loss=step0[c.name],
            final_loss=final,
            cpu_times=c.cpu_times,
            peak_memory=c.peak_memory,
        )

    return TrainBenchResult(
        settings=settings,
        model_config=_config_dict(cfg),
        params=params,
        seq=seq,
        device={**describe(device, plan), "threads": torch.get_num_threads(), "machine": platform.machine()},
        versions=_versions(),
        flops_per_token=fpt,
        peak=peak,
        memory_kind=_memory_kind(device),
        ours=result_of(ours),
        peer=result_of(peer) if peer else None,
        peer_skipped=peer_skipped,
        warnings=warnings,
        profiles=profiles,
    )


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _config_dict(cfg: ModelConfig) -> dict[str, Any]:
    from alm.config import to_dict

    return to_dict(cfg)


def _versions() -> dict[str, str]:
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    with contextlib.suppress(ImportError):
        import transformers

        versions["transformers"] = transformers.__version__
    return versions
