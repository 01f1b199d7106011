"""Held-out metrics: loss, perplexity and bits per byte of a model on a text or on packed validation shards.

The one evaluator: `alm eval` and the trainer's periodic validation both use it. Bits per byte (total nats /
(ln 2 × UTF-8 bytes)) is the number to compare across tokenizers: perplexity per token rewards a tokenizer that
makes more, easier tokens, while bits per byte charges for every byte of text. Pass the run's precision plan to
evaluate under the same autocast the model trains with, and a `progress(done, total)` callable to hear how many of
the tokens to score are done (after each batch, counted on the host: no device sync).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from alm.device import PrecisionPlan, autocast_context
from alm.errors import DataError, UsageError

if TYPE_CHECKING:
    from alm.data.loader import PackedDataset
    from alm.model import Transformer

IGNORE_INDEX = -100
EvalProgress = Callable[[int, int], object]  # (tokens scored so far, tokens to score)


@dataclass(frozen=True)
class EvalResult:
    tokens: int  # tokens scored (each predicted from the ones before it)
    bytes: int  # UTF-8 bytes of the evaluated text (bits per byte divides by these)
    mean_loss: float  # nats per scored token
    perplexity: float
    bits_per_byte: float

    @classmethod
    def from_totals(cls, total_nats: float, tokens: int, n_bytes: int) -> EvalResult:
        mean_loss = total_nats / tokens
        return cls(
            tokens=tokens,
            bytes=n_bytes,
            mean_loss=mean_loss,
            perplexity=math.exp(min(mean_loss, 700.0)),  # exp overflows a float past ~709
            bits_per_byte=total_nats / (math.log(2) * n_bytes),
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def strided_windows(ids: list[int], max_seq_len: int, stride: int) -> Iterator[tuple[list[int], list[int]]]:
    """Input/target windows that score every token after the first exactly once (HF's "strided" perplexity).

    Each window holds up to `max_seq_len` inputs; it starts `stride` tokens after the previous one and scores
    only the targets the previous windows have not, so every scored token sees at least max_seq_len - stride
    tokens of context (all of them, up to the context length, near the start). Already-scored targets are -100.
    """
    last = len(ids) - 1  # index of the last target
    scored_until = 0  # targets with index <= this are done (index 0 has no context and is never scored)
    begin = 0
    while scored_until < last:
        end = min(begin + max_seq_len, last)  # inputs ids[begin:end], targets ids[begin+1:end+1]
        targets = ids[begin + 1 : end + 1]
        fresh_from = scored_until - begin  # local index of the first target not yet scored
        targets = [IGNORE_INDEX] * fresh_from + targets[fresh_from:]
        yield ids[begin:end], targets
        scored_until = end
        begin += stride


@torch.inference_mode()
def _sum_nats(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    precision: PrecisionPlan | None,
    progress: tuple[EvalProgress, int] | None = None,
) -> tuple[float, int]:
    """Total cross-entropy (nats, in float32) and number of scored targets over (inputs, targets) batches.

    Both sums stay on the device and are read once at the end; the model's train/eval mode is restored.
    `progress` is (callable, tokens to score): told after each batch, from the targets still on the host."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float32, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    done = 0
    try:
        for x, y in batches:
            if progress is not None:
                done += int((y != IGNORE_INDEX).sum())
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast_context(precision) if precision is not None else contextlib.nullcontext():
                logits = model(x).logits
            total += F.cross_entropy(
                logits.float().view(-1, logits.size(-1)),
                y.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            count += (y != IGNORE_INDEX).sum()
            if progress is not None:
                progress[0](done, progress[1])
    finally:
        model.train(was_training)
    return float(total), int(count)


def _batched(
    windows: Iterable[tuple[list[int], list[int]]], batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stack consecutive windows of equal length (all but the last are full) into [B, T] tensors."""
    xs: list[list[int]] = []
    ys: list[list[int]] = []
    for x, y in windows:
        if xs and (len(xs) == batch_size or len(x) != len(xs[0])):
            yield torch.tensor(xs), torch.tensor(ys)
            xs, ys = [], []
        xs.append(x)
        ys.append(y)
    if xs:
        yield torch.tensor(xs), torch.tensor(ys)


def _round_robin(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], rank: int, world_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rank r's batches r, r + world_size, ... In a last round with fewer batches than ranks, the ranks left over
    score a fully masked copy of one (nothing counted), so every rank runs the same forwards: FSDP2 gathers the
    weights collectively in each."""
    rows: list[tuple[torch.Tensor, torch.Tensor]] = []
    for batch in batches:
        rows.append(batch)
        if len(rows) == world_size:
            yield rows[rank]
            rows = []
    if rows:
        x, y = rows[rank] if rank < len(rows) else (rows[0][0], torch.full_like(rows[0][1], IGNORE_INDEX))
        yield x, y


def _sum_over_ranks(total_nats: float, tokens: int) -> tuple[float, int]:
    import torch.distributed as dist

    totals = torch.tensor([total_nats, float(tokens)], dtype=torch.float64)  # a CPU tensor: gloo carries it
    dist.all_reduce(totals)
    return float(totals[0]), int(totals[1])


def evaluate_text(
    model: Transformer,
    tokenizer,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int = 8,
    device: torch.device | str,
    precision: PrecisionPlan | None = None,
    progress: EvalProgress | None = None,
) -> EvalResult:
    """Sliding-window loss of `model` on `text`. stride defaults to half the context (each scored token then
    sees at least half a context of history); stride = max_seq_len is faster and scores with less context."""
    max_seq_len = model.config.max_seq_len
    step = max(1, max_seq_len // 2) if stride is None else stride
    if not 1 <= step <= max_seq_len:
        raise UsageError(f"stride must be between 1 and the context length {max_seq_len}, got {step}")
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise UsageError(
            f"the text is too short to evaluate ({len(ids)} token(s)); it needs at least 2",
            hint="give a longer text; perplexity is measured on every token after the first",
        )
    windows = strided_windows(ids, max_seq_len, step)
    track = (progress, len(ids) - 1) if progress is not None else None  # every token after the first, once
    total_nats, tokens = _sum_nats(
        model, _batched(windows, batch_size), torch.device(device), precision, track
    )
    return EvalResult.from_totals(total_nats, tokens, len(text.encode("utf-8")))


def evaluate_packed(
    model: Transformer,
    dataset: PackedDataset,
    *,
    batch_size: int = 8,
    seq_len: int | None = None,
    max_batches: int | None = None,
    device: torch.device | str,
    precision: PrecisionPlan | None = None,
    shard: tuple[int, int] = (0, 1),
    progress: EvalProgress | None = None,
) -> EvalResult:
    """Loss on an open packed split in non-overlapping windows of `seq_len` tokens (default: the model's
    context), always the same ones: the first `max_batches` batches of the split.

    Bits per byte use the manifest's source bytes, in proportion to the tokens scored (exact when the whole
    split is read). `shard=(rank, world_size)` under torchrun: each rank scores its share of the batches and the
    totals are summed over the ranks (every rank gets the same result; `progress` counts this rank's share)."""
    from alm.data.loader import iter_eval_batches

    window = seq_len or model.config.max_seq_len
    batches = iter_eval_batches(dataset, batch_size=batch_size, seq_len=window, max_batches=max_batches)
    rank, world_size = shard
    if world_size > 1:
        batches = _round_robin(batches, rank, world_size)
    track = None
    if progress is not None:  # whole windows from the start of the split, at most max_batches of them
        windows = (dataset.num_tokens - 1) // window
        if max_batches is not None:
            windows = min(windows, max_batches * batch_size)
        track = (progress, windows * window)
    total_nats, tokens = _sum_nats(model, batches, torch.device(device), precision, track)
    if world_size > 1:
        total_nats, tokens = _sum_over_ranks(total_nats, tokens)
    if tokens == 0:
        raise DataError(
            f"the {dataset.split} split in {dataset.path} is too small to evaluate (no full window)"
        )
    n_bytes = round(dataset.source_bytes * tokens / dataset.num_tokens)
    return EvalResult.from_totals(total_nats, tokens, max(1, n_bytes))


def evaluate_batches(
    model: Transformer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    n_bytes: int,
    device: torch.device | str,
    precision: PrecisionPlan | None = None,
) -> EvalResult:
    """Loss on (inputs, targets) batches whose unscored targets are -100 (fine-tuning's held-out conversations:
    assistant tokens only); `n_bytes` are the UTF-8 bytes of the scored text."""
    total_nats, tokens = _sum_nats(model, batches, torch.device(device), precision)
    if tokens == 0:
        raise DataError("nothing to evaluate: the batches hold no scored targets")
    return EvalResult.from_totals(total_nats, tokens, max(1, n_bytes))


def evaluate_split(
    model: Transformer,
    packed_dir: str | Path,
    split: str = "val",
    *,
    batch_size: int = 8,
    max_batches: int | None = None,
    tokenizer_fingerprint: str | None = None,
    device: torch.device | str,
    precision: PrecisionPlan | None = None,
    progress: EvalProgress | None = None,
) -> EvalResult:
    """`evaluate_packed` on a split of the shards in `packed_dir`, in context-length windows. Pass the model's
    `tokenizer_fingerprint` to refuse shards made with another tokenizer."""
    from alm.data.loader import PackedDataset, check_compatible

    dataset = PackedDataset.open(Path(packed_dir), split=split)
    check_compatible(dataset, model.config.require_vocab(), tokenizer_fingerprint)
    return evaluate_packed(
        model,
        dataset,
        batch_size=batch_size,
        max_batches=max_batches,
        device=device,
        precision=precision,
        progress=progress,
    )


__all__ = [
    "EvalProgress",
    "EvalResult",
    "evaluate_batches",
    "evaluate_packed",
    "evaluate_split",
    "evaluate_text",
    "strided_windows",
]
