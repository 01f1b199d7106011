"""Data parallelism under torchrun: the process group, DDP or FSDP2 around the model, and the few collectives the
training loop needs.

torchrun starts one process per device, each running the same `alm train`; they join one default process group
(gloo carries CPU tensors, NCCL CUDA ones; MPS has no multi-process backend). `train.parallel` picks how the model
is replicated: `ddp` (DistributedDataParallel: a full copy per rank, gradients all-reduced in buckets during the
backward pass) or `fsdp` (FSDP2's `fully_shard` per transformer block: parameters, gradients and optimizer state
sharded, each block's weights gathered for its forward and backward). `auto` is ddp for several processes.

`train.batch_size` is per rank and rank r takes its slice of each global batch (`alm.data.loader.BatchSampler`),
so N processes with grad_accum G see the tokens one process with grad_accum G×N sees, in the same order, and with
gradients averaged over ranks they take the same steps. What the loop asks of this module is a no-op in one
process, so the single-process path has no collective calls:
- `grad_sync(last)`: gradients are reduced on the last micro-batch of a step only (DDP `no_sync`, FSDP2
  `set_requires_gradient_sync`), not on every one;
- `mean(loss)`: the reported loss is the global mean, and so is the non-finite check `train_step` makes with it:
  every rank skips the same steps (the gradient norm is global already: DDP's gradients are reduced, FSDP2's norm
  is reduced in `alm.train.optim.clip_grad_norm`);
- `any(flag)`: a stop request seen by any rank stops every rank at the same step boundary.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn

from alm.errors import AlmError, UsageError
from alm.train.dist import local_rank, nodes, rank_info

Mode = Literal["none", "ddp", "fsdp"]
T = TypeVar("T")

TIMEOUT_ENV = "ALM_DIST_TIMEOUT"
# How long a rank waits in a collective (and for rank 0's data build) before failing: torch's gloo default; NCCL's
# own 10 minutes would fail ranks waiting for rank 0 to tokenize a large corpus.
DEFAULT_TIMEOUT_S = 1800


def timeout_seconds() -> int:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    if not raw.strip().isdigit() or int(raw) < 1:
        raise UsageError(
            f"{TIMEOUT_ENV}={raw!r}: must be a whole number of seconds, at least 1",
            hint=f"e.g. {TIMEOUT_ENV}=3600, or unset it for {DEFAULT_TIMEOUT_S}",
        )
    return int(raw)


def init_backend() -> str:
    """gloo for CPU tensors, and NCCL for CUDA tensors where there is CUDA (one group carries both)."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def backend_for(device: torch.device) -> str:
    """The backend that carries the training tensors of `device`."""
    return "nccl" if device.type == "cuda" else "gloo"


def ensure_process_group() -> bool:
    """Join torchrun's process group once, if this is one of several processes; True when distributed."""
    rank, world_size = rank_info()
    if world_size <= 1:
        return False
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend=init_backend(), timeout=timedelta(seconds=timeout_seconds()))
        except (ValueError, RuntimeError) as exc:
            raise UsageError(
                f"WORLD_SIZE={world_size}, but rank {rank} could not join the process group: {_first_line(exc)}",
                hint="launch several processes with `alm train --nproc N` (one node) or torchrun",
            ) from None
    return True


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """A command's distributed scope: the process group joined at the start (under torchrun) and left at the end."""
    joined = not dist.is_initialized() and ensure_process_group()
    try:
        yield
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def resolve_mode(requested: str, world_size: int) -> Mode:
    """`train.parallel` for this launch: auto is ddp for several processes and none for one."""
    if requested == "auto":
        return "ddp" if world_size > 1 else "none"
    if world_size <= 1 and requested != "none":
        raise UsageError(
            f"train.parallel={requested} needs several processes, and this is a single one",
            hint="launch it with `alm train --nproc N` (N >= 2) or torchrun, or set train.parallel=auto",
        )
    if world_size > 1 and requested == "none":
        raise UsageError(
            f"train.parallel=none under torchrun (WORLD_SIZE={world_size}): every process would train a copy "
            "of its own",
            hint="set train.parallel=auto, ddp or fsdp",
        )
    return cast(Mode, requested)


def check_device(name: str, processes_per_node: int) -> torch.device:
    """The device `name` resolves to, if `processes_per_node` processes can share this node's: MPS cannot be
    shared, and each process needs a CUDA device of its own."""
    from alm.device import resolve_device

    device = resolve_device(name)
    if processes_per_node > 1 and device.type == "mps":
        raise UsageError(
            "MPS has no multi-process backend (neither NCCL nor gloo moves MPS tensors), so several processes "
            "cannot train on it",
            hint="train in one process (leave out --nproc), or on the CPU with --device cpu",
        )
    if processes_per_node > 1 and device.type == "cuda" and processes_per_node > torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UsageError(
            f"{processes_per_node} processes on this node need a CUDA device each, and torch sees {count}",
            hint=f"launch at most {count} processes per node (--nproc {count}), or train on the CPU with --device cpu",
        )
    return device


def check_launch(requested: str, device: str, processes: int) -> None:
    """What `--nproc N` checks before starting N processes that would each fail the same way."""
    resolve_mode(requested, processes)
    check_device(device, processes)


def rank_device(name: str, world_size: int) -> str:
    """The device this rank trains on: `name` in one process; under torchrun the CUDA device LOCAL_RANK, or the
    CPU."""
    if world_size <= 1:
        return name
    device = check_device(name, nodes()[1])
    if device.type != "cuda":
        return "cpu"
    torch.cuda.set_device(local_rank())
    return f"cuda:{local_rank()}"


def from_rank_zero(value: T) -> T:
    """Rank 0's `value` on every rank (e.g. a run name made from the clock); `value` itself in one process."""
    if not ensure_process_group():
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return cast(T, box[0])


def rank_zero_first(work: Callable[[], T], what: str) -> T:
    """`work` done once, by rank 0, while the other ranks wait; its result on every rank. Used to build the data:
    the ranks share one directory, and N processes tokenizing into it at once would race."""
    if not ensure_process_group():
        return work()
    rank = rank_info()[0]
    box: list[Any] = [None]
    if rank == 0:
        try:
            result = work()
        except BaseException as exc:
            box[0] = ("error", exc.message if isinstance(exc, AlmError) else f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
            raise
        box[0] = ("ok", result)
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return result
    try:
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    except RuntimeError as exc:  # a timeout, or rank 0 gone
        raise AlmError(
            f"rank {rank}: no word from rank 0 while it was {what}: {_first_line(exc)}",
            hint=f"build the data before launching (`alm pack --config CORPUS.yaml`), or raise {TIMEOUT_ENV} "
            f"(now {timeout_seconds()} s)",
        ) from None
    status, value = box[0]
    if status != "ok":
        raise AlmError(f"rank 0 failed while {what}: {value}", hint="rank 0's error above says more")
    return cast(T, value)


class Parallel:
    """How this process takes part in training: `mode`, its `rank` among `world_size`, and the collectives."""

    def __init__(self, mode: Mode = "none", rank: int = 0, world_size: int = 1):
        self.mode, self.rank, self.world_size = mode, rank, world_size
        self.module: nn.Module | None = None  # what gradients are synchronised through (set by `wrap`)

    @classmethod
    def setup(cls, requested: str) -> Parallel:
        """This process's part per `train.parallel` and the torchrun environment (joining the group if needed)."""
        rank, world_size = rank_info()
        mode = resolve_mode(requested, world_size)
        if mode != "none":
            ensure_process_group()
        return cls(mode, rank, world_size)

    @property
    def distributed(self) -> bool:
        return self.mode != "none"

    @property
    def sharded(self) -> bool:
        """FSDP2: no rank holds the whole model or optimizer state (checkpoints go through DCP)."""
        return self.mode == "fsdp"

    def wrap(self, model: nn.Module, device: torch.device, precision: str = "fp32") -> nn.Module:
        """The module the training step calls: DDP around `model`, or `model` itself sharded in place by FSDP2
        (each transformer block, then the root, which holds the embedding and the head they may share)."""
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            # Buffers (RoPE tables) are the same on every rank: no broadcast before each forward (the keyword
            # was renamed in torch 2.13).
            params = inspect.signature(DistributedDataParallel).parameters
            no_sync: dict[str, Any] = {
                "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers": False
            }
            self.module = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, **no_sync
            )
            return self.module
        if self.mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            if precision == "fp16":  # GradScaler's inf check would see only this rank's gradient shards
                raise UsageError(
                    "train.parallel=fsdp does not support fp16 (its GradScaler checks local shards only)",
                    hint="use --set train.precision=bf16, or train.parallel=ddp",
                )
            for block in cast(nn.ModuleList, model.get_submodule("layers")):
                fully_shard(block)
            self.module = cast(nn.Module, fully_shard(model))
            return self.module
        return model

    # -- what the loop calls (no-ops in one process) -------------------------------------------------------------
    def grad_sync(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        """Around one micro-batch's forward and backward: reduce its gradients over the ranks only if `enabled`
        (the step's last micro-batch); the others accumulate locally."""
        if self.mode == "ddp" and not enabled:
            from torch.nn.parallel import DistributedDataParallel

            return cast(DistributedDataParallel, self.module).no_sync()
        if self.mode == "fsdp":
            from torch.distributed.fsdp import FSDPModule

            cast(FSDPModule, self.module).set_requires_gradient_sync(enabled)
        return contextlib.nullcontext()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over the ranks (a device tensor; no host sync)."""
        if not self.distributed:
            return value
        total = value.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (a CPU tensor through gloo: no device sync)."""
        if not self.distributed:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order (small picklable values only: per-rank figures)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return cast(list[T], out)

    def failure(self, exc: BaseException) -> AlmError | None:
        """The clear error for a collective that failed because another rank died or stopped answering (torchrun
        then stops this one too); None for anything else."""
        text = str(exc)
        lost = isinstance(exc, dist.DistError) or any(word in text for word in ("gloo", "NCCL", "timed out"))
        if not self.distributed or not isinstance(exc, RuntimeError) or not lost:
            return None
        return AlmError(
            f"rank {self.rank}: another process of this run stopped answering ({_first_line(exc)})",
            hint="the failing process's error says why; the run's checkpoints on disk are complete",
        )

    def describe(self, device: torch.device) -> dict[str, Any]:
        """What the start event records about the launch."""
        return {
            "world_size": self.world_size,
            "parallel": self.mode,
            "backend": backend_for(device) if self.distributed else None,
        }


def readiness(device: torch.device) -> list[tuple[str, str]]:
    """`alm doctor`'s rows on training with several processes: the backends torch has and what --nproc can use."""
    if not dist.is_available():
        return [("distributed", "not in this torch build: one process only")]
    nccl = dist.is_nccl_available() and torch.cuda.is_available()
    if nccl:
        from torch.cuda import nccl as nccl_library

        version = ".".join(map(str, nccl_library.version()))
    else:
        version = ""
    backends = [
        f"gloo {'yes' if dist.is_gloo_available() else 'no'}",
        f"nccl {'yes ' + version if nccl else 'no'}".strip(),
        f"mpi {'yes' if dist.is_mpi_available() else 'no'}",
    ]
    if device.type == "mps":
        nproc = "no: MPS has no multi-process backend (--device cpu trains on several processes over gloo)"
    elif device.type == "cuda":
        count = torch.cuda.device_count()
        nproc = f"up to {count} (one per CUDA device, nccl)" if nccl else "no: this torch has no NCCL"
    else:
        nproc = (
            f"yes, over gloo ({os.cpu_count() or 1} CPU cores to share)" if dist.is_gloo_available() else "no"
        )
    return [("distributed", ", ".join(backends)), ("--nproc N", nproc)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Mode",
    "Parallel",
    "backend_for",
    "check_device",
    "check_launch",
    "ensure_process_group",
    "from_rank_zero",
    "init_backend",
    "process_group",
    "rank_device",
    "rank_zero_first",
    "readiness",
    "resolve_mode",
]
