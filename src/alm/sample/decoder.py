"""The model side of generation: sequence slots over one static KV cache, and a compiled one-token step.

A `Decoder` holds a KV cache for `slots` sequences, allocated once, and each slot's length on the host. A slot is
filled by `prefill` (an ordinary forward into that row of the cache) and then advanced one token at a time by
`step`, which runs `Transformer.decode_step` for the running slots in one forward: each row attends to its own
keys, at its own position, so sequences of different lengths share the batch and can start or stop independently.

`step` is what gets compiled (`alm.sample.compiled`): ahead of time by AOTInductor on the CPU, as a CUDA graph on
CUDA. Its shapes are static (the batch is always `slots` rows) except, on the CPU, the number of cached positions
attention reads, which is rounded up to a multiple of `KEY_BUCKET` so it takes few values. Inductor fuses the
RMSNorm, the QKV split, RoPE and the cache write around the matmuls, and removes the per-op dispatch that
dominates a small model's eager step. A CUDA graph needs every shape static, so there attention reads the whole
cache. Where compiling is impossible (no C++ compiler for Inductor's CPU backend, no Triton on CUDA, MPS) or fails,
the same step runs eagerly and `compile_note` says why.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from alm.device import compile_support
from alm.errors import UsageError
from alm.model.cache import KVCache
from alm.sample.compiled import CompiledStep, compile_cpu_step, compile_cuda_step

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

# "on": compile wherever Inductor can (else run eagerly, saying why); "auto": only on CUDA, where compiling takes
# seconds and CUDA graphs remove most of a small model's step time; "off": eager.
CompileMode = Literal["auto", "on", "off"]
# Cached positions read per step are rounded up to this: one compiled graph serves every length (dynamic
# shapes), and attention reads at most KEY_BUCKET - 1 stale positions, each masked.
KEY_BUCKET = 64
# Padded positions a shared prefill may compute per forward it saves. Measured on pico, bursts of 8 prompts
# (scripts/bench_prefill.py): 1.8-2.1x for 10-21 tokens, 1.05-1.6x for 27-122; at 64, the longest bursts lost.
PAD_ALLOWANCE = 16


class Decoder:
    """`slots` sequences over one preallocated KV cache; `prefill` one slot, `step` all of them together."""

    def __init__(
        self,
        model: Transformer,
        slots: int,
        *,
        device: torch.device | str,
        compile: CompileMode = "off",
    ):
        if slots < 1:
            raise UsageError(f"a decoder needs at least one sequence slot, got {slots}")
        self.model = model
        self.device = torch.device(device)
        self.slots = slots
        self.max_len: int = model.config.max_seq_len
        # One spare position: a read of the whole context then never spans a whole cache row, whose contiguity
        # would otherwise make the compiled step specialise (and recompile) at full length.
        cfg, weight = model.config, next(model.parameters())
        self.cache = KVCache(
            cfg.n_layers,
            slots,
            cfg.kv_heads,
            cfg.head_dim,
            self.max_len + 1,
            device=self.device,
            dtype=weight.dtype,
        )
        self.lengths = [0] * slots  # host copy of each slot's filled positions
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        # Positions live on the host and are copied to the device once per step (pinned: asynchronously).
        pin = self.device.type == "cuda"
        self._positions_host = torch.zeros(slots, dtype=torch.long, pin_memory=pin)
        self.positions = torch.zeros(slots, dtype=torch.long, device=self.device)
        self._key_positions = torch.arange(self.max_len, device=self.device)
        # CUDA graphs need one shape: attention reads the whole cache (compile_cuda_step). Elsewhere the key count
        # is bucketed (compile_cpu_step); a test sets this on the CPU to run the CUDA path's graph without capture.
        self.static_shapes = self.device.type == "cuda"
        self.compiled, self.compile_note = False, ""  # the note says why a requested compile is not used
        self._compiled_step: CompiledStep | None = None  # built by the first step: compiling traces a call
        self.compile_seconds = 0.0  # the first compiled step, build (or load) included: not decoding time
        if compile == "on" or (compile == "auto" and self.device.type == "cuda"):
            supported, self.compile_note = compile_support(self.device)
            self.compiled = supported

    # -- slots ---------------------------------------------------------------------------------------------------
    def prefill(self, slot: int, ids: Sequence[int]) -> torch.Tensor:
        """Start slot `slot` afresh from `ids` (at most max_len of them); returns the next-token logits [1, V]."""
        return self.prefill_many([slot], [ids])

    def prefill_many(self, slots: Sequence[int], prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Start each of `slots` afresh from its prompt; the next-token logits [len(slots), V], in that order.

        Prompts in neighbouring slots share one forward, right-padded to the longest (causal attention keeps the
        padding out of every real position, and each row's later steps mask its keys past its own length) while
        the padding costs less than the forwards it saves (`shared_prefills`): a burst of requests costs about
        one prefill, not one each. A prompt given twice (`--num-samples`) is computed once and its cached keys
        copied (the copies' keys and logits are bitwise the first's)."""
        if len(slots) != len(prompts) or len(set(slots)) != len(slots):
            raise UsageError("prefill_many takes one prompt per slot, each slot once")
        for ids in prompts:
            if not 0 < len(ids) <= self.max_len:
                raise UsageError(f"prefill takes 1..{self.max_len} tokens, got {len(ids)}")
        first: dict[tuple[int, ...], int] = {}  # a prompt -> the slot that computes it, in slot order
        for slot, ids in sorted(zip(slots, prompts, strict=True)):
            first.setdefault(tuple(ids), slot)
        logits: dict[tuple[int, ...], torch.Tensor] = {}
        for group in shared_prefills([(slot, ids) for ids, slot in first.items()]):
            lengths = [len(ids) for _, ids in group]
            longest = max(lengths)
            padded = [[*ids, *[0] * (longest - len(ids))] for _, ids in group]  # any id: never attended to
            idx = torch.tensor(padded, dtype=torch.long, device=self.device)
            rows = self.cache.rows(group[0][0], group[-1][0] + 1)
            last = torch.tensor([n - 1 for n in lengths], device=self.device)  # each row's last real position
            out = self.model(idx, cache=rows, logits_at=last).logits[:, -1]
            logits.update((ids, row) for (_, ids), row in zip(group, out, strict=True))
        for slot, ids in zip(slots, prompts, strict=True):
            source = first[tuple(ids)]
            if source != slot:
                self.cache.copy_row(source, slot, len(ids))
            self.lengths[slot] = len(ids)
        return torch.stack([logits[tuple(ids)] for ids in prompts])

    def release(self, slot: int) -> None:
        """Forget a slot's sequence (its memory is reused by the next prefill)."""
        self.lengths[slot] = 0

    def is_full(self, slot: int) -> bool:
        return self.lengths[slot] >= self.max_len

    # -- the step ------------------------------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor, advancing: Sequence[int]) -> torch.Tensor:
        """Feed tokens[b] to every slot b in `advancing` at its length; logits [slots, V], of which the rows of
        `advancing` are meaningful. Those slots keep the token (their length grows by one). The compiled step
        computes every row (its shapes are static); eagerly, only the rows from the first advancing slot to the
        last are computed (a lone sequence in a wide engine pays for one row, not all). A row computed for a
        slot that is not advancing is ignored, its write landing on a position nothing reads before it is
        written again."""
        if not advancing:
            raise UsageError("a decode step needs at least one advancing slot")
        for slot in advancing:
            if self.is_full(slot):
                raise UsageError(f"slot {slot} is full ({self.max_len} tokens); prefill it again to slide")
        self.tokens.copy_(tokens, non_blocking=True)
        for slot, length in enumerate(self.lengths):
            self._positions_host[slot] = length
        self.positions.copy_(self._positions_host, non_blocking=True)
        n_keys = (
            self.max_len if self.static_shapes else self._bucket(max(self.lengths[s] for s in advancing) + 1)
        )
        logits = self._run(n_keys, min(advancing), max(advancing) + 1)
        for slot in advancing:
            self.lengths[slot] += 1
        return logits

    def _bucket(self, n: int) -> int:
        return min(self.max_len, KEY_BUCKET * math.ceil(n / KEY_BUCKET))

    def _run(self, n_keys: int, first: int, stop: int) -> torch.Tensor:
        if self.compiled:
            try:
                return self._run_compiled(n_keys)
            except Exception as exc:  # a missing toolchain piece, an Inductor bug: run eagerly
                self._compiled_step, self.compiled = None, False
                why = f"{type(exc).__name__}: {str(exc)[:200]}"
                self.compile_note = f"compilation failed ({why}); running eagerly"
        if (first, stop) == (0, self.slots):
            return self.model.decode_step(self.tokens, self.positions, self.cache, n_keys)
        rows = slice(first, stop)
        logits = self.model.decode_step(
            self.tokens[rows], self.positions[rows], self.cache.rows(first, stop), n_keys
        )
        out = logits.new_zeros(self.slots, logits.shape[-1])
        out[rows] = logits
        return out

    def _run_compiled(self, n_keys: int) -> torch.Tensor:
        inputs = (self.tokens, self.positions, self._key_positions[:n_keys])
        if self._compiled_step is not None:
            return self._compiled_step(*inputs, self.cache.keys, self.cache.values)
        started = time.perf_counter()
        if self.static_shapes:  # torch.compile: the first call compiles
            self._compiled_step = compile_cuda_step(self.model, self.cache)
        else:  # one library for every key bucket, unless the context holds only one
            dynamic = self.max_len > KEY_BUCKET
            self._compiled_step = compile_cpu_step(self.model, (*inputs, self.cache), dynamic_keys=dynamic)
        logits = self._compiled_step(*inputs, self.cache.keys, self.cache.values)
        self.compile_seconds += time.perf_counter() - started
        return logits


def shared_prefills(
    prompts: Sequence[tuple[int, tuple[int, ...]]],
) -> list[list[tuple[int, tuple[int, ...]]]]:
    """(slot, prompt) pairs, in slot order, grouped into the forwards that prefill them: neighbouring slots (one
    cache view), while the group's padding stays within PAD_ALLOWANCE positions per forward it saves."""
    groups: list[list[tuple[int, tuple[int, ...]]]] = []
    for slot, ids in prompts:
        group = groups[-1] if groups else None
        if group is not None and group[-1][0] == slot - 1:
            lengths = [len(other) for _, other in group] + [len(ids)]
            padding = len(lengths) * max(lengths) - sum(lengths)
            if padding <= PAD_ALLOWANCE * (len(lengths) - 1):
                group.append((slot, ids))
                continue
        groups.append([(slot, ids)])
    return groups
