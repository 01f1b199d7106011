"""Logit processors (pure functions on [..., V] float logits) and the token draw.

Sampling stays on the model's device in float32 (no float64, which MPS lacks) and draws from a `torch.Generator`
seeded from the sampling config, so a fixed seed reproduces a sample on the same device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from alm.sample.options import SamplingConfig


def presence_mask(token_ids: Sequence[int] | torch.Tensor, vocab_size: int, device=None) -> torch.Tensor:
    """Bool [V] mask of the tokens that occur in `token_ids` (what the repetition penalty looks at)."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=device)
    if ids.numel():
        mask[ids] = True
    return mask


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make seen tokens less likely whatever their sign: positive logits are divided, negative ones multiplied."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature == 1.0 else logits / temperature


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits (ties with the k-th are kept too); k = 0 or k >= V is a no-op."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches p (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
    remove_sorted = mass_before >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times that of the most likely token."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process_logits(
    logits: torch.Tensor, cfg: SamplingConfig, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """All of cfg's processors in order; the result's softmax is the distribution `sample_token` draws from."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
    if cfg.is_greedy:
        return logits
    logits = apply_temperature(logits, cfg.temperature)
    logits = apply_top_k(logits, cfg.top_k)
    logits = apply_top_p(logits, cfg.top_p)
    return apply_min_p(logits, cfg.min_p)


def sample_token(
    logits: torch.Tensor,
    cfg: SamplingConfig,
    *,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of [..., V] logits; returns int64 [...] on the logits' device (no host sync)."""
    logits = process_logits(logits, cfg, seen)
    if cfg.is_greedy:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    # argmax(p / E) with E ~ Exp(1) is an exact draw from p (the "exponential race"); unlike torch.multinomial it
    # needs no host sync and behaves the same on CPU, CUDA and MPS.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    race.clamp_min_(torch.finfo(race.dtype).tiny)  # a 0 draw would turn a masked token's 0/0 into NaN
    return (probs / race).argmax(dim=-1)


def make_generator(seed: int | None, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
