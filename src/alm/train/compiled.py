"""`train.compile`: the module `train_step` calls — the model under `torch.compile`, or the model itself with
the reason when compiling is not possible.

Inductor compiles the whole training forward (the fused chunked cross-entropy of `alm.model.loss` included: its
chunk loop is unrolled into the graph) and, at the first backward, the backward graph. Weights are shared with
the plain model, so evaluation, sampling and checkpoints keep using it (`state_dict` has no `_orig_mod.` prefix).
Where compiling is impossible — no C++ compiler for Inductor's CPU backend, MPS, no Triton on CUDA — the run
trains eagerly and says so in a warning; so does a run whose first compiled step fails to compile
(`is_compile_failure`), which the trainer then repeats eagerly.

Numerics: Inductor fuses and reorders floating-point reductions, so a compiled run's losses match an eager run's
to about 1e-5 relative on the CPU, not bit for bit. A compiled run is deterministic, so a compiled run that is
interrupted and resumed with compile matches the uninterrupted compiled run exactly.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from alm.device import compile_support


def compile_for_training(model: nn.Module, device: torch.device) -> tuple[nn.Module, str | None]:
    """(the compiled model, None), or (the model, why it runs eagerly)."""
    supported, why = compile_support(device)
    if not supported:
        return model, f"train.compile: {why}"
    return cast(nn.Module, torch.compile(model)), None


def is_compile_failure(exc: BaseException) -> bool:
    """Whether `exc` came from compiling (Dynamo or Inductor, the C++ build included), not from the model."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import CppCompileError

    return isinstance(exc, BackendCompilerFailed | CppCompileError)


__all__ = ["compile_for_training", "is_compile_failure"]
