"""Held-out metrics: loss, perplexity and bits per byte of a model on a text or on packed validation shards.

Bits per byte (total nats / (ln 2 × UTF-8 bytes)) is the number to compare across tokenizers: perplexity per
token rewards a tokenizer that makes more, easier tokens, while bits per byte charges for every byte of text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from alm.errors import DataError, UsageError

IGNORE_INDEX = -100


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
    model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device
) -> tuple[float, int]:
    """Total cross-entropy (nats, in float32) and number of scored targets over (inputs, targets) batches."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float32, device=device)
    count = 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x).logits.float()
            total += F.cross_entropy(
                logits.view(-1, logits.size(-1)), y.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
            )
            count += int((y != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    return float(total), count


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


def evaluate_text(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int = 8,
    device: torch.device | str,
) -> EvalResult:
    """Sliding-window loss of `model` on `text`. stride defaults to half the context (each scored token then
    sees at least half a context of history); stride = max_seq_len is faster and scores with less context."""
    max_seq_len = model.config.max_seq_len
    stride = max(1, max_seq_len // 2) if stride is None else stride
    if not 1 <= stride <= max_seq_len:
        raise UsageError(f"stride must be between 1 and the context length {max_seq_len}, got {stride}")
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise UsageError(
            f"the text is too short to evaluate ({len(ids)} token(s)); it needs at least 2",
            hint="give a longer text; perplexity is measured on every token after the first",
        )
    windows = strided_windows(ids, max_seq_len, stride)
    total_nats, tokens = _sum_nats(model, _batched(windows, batch_size), torch.device(device))
    return EvalResult.from_totals(total_nats, tokens, len(text.encode("utf-8")))


def evaluate_split(
    model: torch.nn.Module,
    packed_dir: str | Path,
    split: str = "val",
    *,
    batch_size: int = 8,
    max_batches: int | None = None,
    tokenizer_fingerprint: str | None = None,
    device: torch.device | str,
) -> EvalResult:
    """Loss on a packed split in non-overlapping context-length windows.

    Bits per byte use the manifest's source bytes, in proportion to the tokens scored (exact when the whole
    split is read). Pass the model's `tokenizer_fingerprint` to refuse shards made with another tokenizer.
    """
    from alm.data.loader import PackedDataset, check_compatible, iter_eval_batches

    dataset = PackedDataset.open(Path(packed_dir), split=split)
    check_compatible(dataset, model.config.vocab_size, tokenizer_fingerprint)
    batches = iter_eval_batches(
        dataset, batch_size=batch_size, seq_len=model.config.max_seq_len, max_batches=max_batches
    )
    total_nats, tokens = _sum_nats(model, batches, torch.device(device))
    if tokens == 0:
        raise DataError(f"the {split} split in {packed_dir} is too small to evaluate (no full window)")
    n_bytes = round(dataset.source_bytes * tokens / dataset.num_tokens)
    return EvalResult.from_totals(total_nats, tokens, max(1, n_bytes))


__all__ = ["EvalResult", "evaluate_split", "evaluate_text", "strided_windows"]
