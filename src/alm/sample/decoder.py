"""The model side of generation: sequence slots over one static KV cache, and a compiled one-token step.

A `Decoder` holds a KV cache for `slots` sequences, allocated once, and each slot's length on the host. A slot is
filled by `prefill` (an ordinary forward into that row of the cache) and then advanced one token at a time by
`step`, which runs `Transformer.decode_step` for every slot in one forward: each row attends to its own keys, at
its own position, so sequences of different lengths share the batch and can start or stop independently.

`step` is what `torch.compile` compiles. Its shapes are static (the batch is always `slots` rows) except the number
of cached positions attention reads, which is rounded up to a multiple of `KEY_BUCKET` so it takes few values.
Inductor fuses the RMSNorm, the QKV split, RoPE and the cache write around the matmuls, and removes the per-op
dispatch that dominates a small model's eager step. On CUDA the step is captured as a CUDA graph (mode
"reduce-overhead"): there every shape must be static, so attention reads the whole cache and the cache tensors
are marked as static addresses. Where compiling is impossible (no C++ compiler for Inductor's CPU backend, no
Triton on CUDA, MPS) or fails, the same step runs eagerly and `compile_note` says why.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch

from alm.device import compile_support
from alm.errors import UsageError
from alm.model.cache import KVCache

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

# "on": compile wherever Inductor can (else run eagerly, saying why); "auto": only on CUDA, where compiling takes
# seconds and CUDA graphs remove most of a small model's step time; "off": eager.
CompileMode = Literal["auto", "on", "off"]
# Cached positions read per step are rounded up to this: one compiled graph serves every length (dynamic
# shapes), and attention reads at most KEY_BUCKET - 1 stale positions, each masked.
KEY_BUCKET = 64
CPU_COMPILE_OPTIONS = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}


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
        self._static = self.device.type == "cuda"  # CUDA graphs: one shape, the whole cache
        self.compiled, self.compile_note = False, ""  # the note says why a requested compile is not used
        self._compiled_step = None
        self._warm: set[int] = set()  # key counts a compiled call has run with: their guards are settled
        if compile == "on" or (compile == "auto" and self.device.type == "cuda"):
            supported, self.compile_note = compile_support(self.device)
            if supported:
                self._compiled_step = self._compile()
                self.compiled = True

    def _compile(self):
        step = _Step(self.model)
        if self._static:
            for tensor in (*self.cache.keys, *self.cache.values):
                torch._dynamo.mark_static_address(tensor)
            return torch.compile(step, mode="reduce-overhead", dynamic=False)
        # Only the key count (marked dynamic per call) varies. Left to Dynamo's automatic dynamic shapes, a second
        # decoder in the process with another slot count would compile with a symbolic batch and slower GEMMs.
        return torch.compile(step, dynamic=False)

    # -- slots ---------------------------------------------------------------------------------------------------
    def prefill(self, slot: int, ids: Sequence[int]) -> torch.Tensor:
        """Start slot `slot` afresh from `ids` (at most max_len of them); returns the next-token logits [1, V]."""
        if not 0 < len(ids) <= self.max_len:
            raise UsageError(f"prefill takes 1..{self.max_len} tokens, got {len(ids)}")
        idx = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        logits = self.model(idx, cache=self.cache.row(slot), logits_to_keep=1).logits[:, -1]
        self.lengths[slot] = len(ids)
        return logits

    def release(self, slot: int) -> None:
        """Forget a slot's sequence (its memory is reused by the next prefill)."""
        self.lengths[slot] = 0

    def is_full(self, slot: int) -> bool:
        return self.lengths[slot] >= self.max_len

    # -- the step ------------------------------------------------------------------------------------------------
    def step(self, tokens: torch.Tensor, advancing: Sequence[int]) -> torch.Tensor:
        """Feed tokens[b] to every slot b at its length; logits [slots, V]. Only the slots in `advancing` keep
        the token (their length grows by one); any other slot's row is computed and ignored, its write landing on
        a position nothing reads before it is written again."""
        if not advancing:
            raise UsageError("a decode step needs at least one advancing slot")
        for slot in advancing:
            if self.is_full(slot):
                raise UsageError(f"slot {slot} is full ({self.max_len} tokens); prefill it again to slide")
        self.tokens.copy_(tokens, non_blocking=True)
        for slot, length in enumerate(self.lengths):
            self._positions_host[slot] = length
        self.positions.copy_(self._positions_host, non_blocking=True)
        n_keys = self.max_len if self._static else self._bucket(max(self.lengths[s] for s in advancing) + 1)
        logits = self._run(n_keys)
        for slot in advancing:
            self.lengths[slot] += 1
        return logits

    def _bucket(self, n: int) -> int:
        return min(self.max_len, KEY_BUCKET * math.ceil(n / KEY_BUCKET))

    def _run(self, n_keys: int) -> torch.Tensor:
        if self._compiled_step is not None:
            key_positions = self._key_positions[:n_keys]
            if not self._static and self.max_len > KEY_BUCKET:  # else there is one bucket: keep it static
                torch._dynamo.mark_dynamic(key_positions, 0)  # one graph for every bucket
            try:
                return self._run_compiled(key_positions)
            except (
                Exception
            ) as exc:  # compilation failed (a missing toolchain piece, an Inductor bug): run eagerly
                self._compiled_step, self.compiled = None, False
                self.compile_note = (
                    f"compilation failed ({type(exc).__name__}: {str(exc)[:200]}); running eagerly"
                )
        return self.model.decode_step(self.tokens, self.positions, self.cache, n_keys)

    def _run_compiled(self, key_positions: torch.Tensor) -> torch.Tensor:
        assert self._compiled_step is not None
        if self._static:
            torch.compiler.cudagraph_mark_step_begin()
        # Every call passes the same tensors, and only the key count varies: once a count has run, its guards
        # have nothing left to decide, so dynamo's per-call guard checks (~0.4 ms a step on pico) are skipped.
        n_keys = key_positions.shape[0]
        skip_guards = torch.compiler.set_stance(skip_guard_eval_unsafe=n_keys in self._warm)  # reset on exit
        with _inductor_options(self.device), skip_guards:  # the options are read when a call (re)compiles
            logits = self._compiled_step(self.tokens, self.positions, self.cache, key_positions)
        self._warm.add(n_keys)
        return logits


def _inductor_options(device: torch.device):
    """On CPU, freezing folds the weights into the graph so Inductor can pack them for its own GEMM kernels
    (which beat BLAS on the skinny matmuls of decoding: measured 1.7x at 8 rows), and max-autotune picks those
    kernels per shape. Freezing is only honoured as global config, so it is set around the call, not passed as
    torch.compile options; it applies to inference graphs only."""
    if device.type != "cpu":
        return contextlib.nullcontext()
    from torch._inductor import config

    return config.patch(CPU_COMPILE_OPTIONS)


class _Step(torch.nn.Module):
    """The module torch.compile sees: the number of keys read arrives as a tensor's length, so it can be marked as
    a dynamic size (a Python int would be specialised, one graph per value)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, tokens, positions, cache, key_positions: torch.Tensor) -> torch.Tensor:
        return self.model.decode_step(tokens, positions, cache, key_positions.shape[0])
