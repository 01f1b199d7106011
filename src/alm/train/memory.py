"""Will a run fit in memory? A floor estimate made before anything is allocated, and a clear message when an
allocation fails anyway.

The estimate (`TrainingMemory`), for P parameters (`param_floor`), micro-batch B, sequence length T, L layers, model width d,
key/value width k (GQA), FFN width f, head dim h and context C:

    weights + gradients + AdamW's two moments   16·P bytes (fp32 master weights, whatever the autocast)
    activations kept for the backward            L·B·T·(8·d + 2·k + 3·f) elements, 2 bytes under bf16/fp16
                                                 autocast, else 4 (norm in/out, q/k/v, attention out, residuals,
                                                 the FFN's gate/up, activation and down)
    position tables (RoPE)                       2·C·h·4 bytes

It is a floor: it leaves out attention scratch, the chunked LM-head loss (a few MB), the allocator's slack and
the framework itself, so a run refused by it could never have fit; one that passes can still run out, which
`training_failure` turns into a message with the same hint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alm.capacity import available_host_memory, expected_failure, is_out_of_memory, out_of_memory_error
from alm.errors import AlmError, UsageError
from alm.format import count

if TYPE_CHECKING:
    import torch

    from alm.model.config import ModelConfig
    from alm.train.run_config import RunConfig

TRAIN_HINT = (
    "lower --set train.batch_size=N (raise train.grad_accum to keep the tokens per step), train.seq_len or "
    "model.max_seq_len, or train a smaller model"
)
RESUME_HINT = "a resumed run keeps its batch and model: resume it on a device with more memory (--device)"


def gigabytes(n: float) -> str:
    if n >= 1e12:
        return f"{n / 1e12:,.0f} TB"
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


@dataclass(frozen=True)
class TrainingMemory:
    params: int
    states: int  # weights, gradients and AdamW moments
    activations: int
    buffers: int
    batch_size: int
    seq_len: int

    @property
    def total(self) -> int:
        return self.states + self.activations + self.buffers

    def describe(self) -> str:
        return (
            f"~{gigabytes(self.total)}: {gigabytes(self.states)} for {count(self.params)} parameters with their "
            f"gradients and AdamW state, {gigabytes(self.activations)} of activations for batch_size × seq_len "
            f"= {self.batch_size:,} × {self.seq_len:,}"
            + (f", {gigabytes(self.buffers)} of position tables" if self.buffers >= 1e8 else "")
        )


def param_floor(model: ModelConfig) -> int:
    """Parameters the model has at least (exact for the default dense SwiGLU model without biases), counted by
    arithmetic rather than by building it, so an absurd config (a billion layers) is judged at once."""
    d, kv = model.d_model, model.kv_heads * model.head_dim
    attention = d * (d + 2 * kv) + d * d  # q, k, v and the output projection
    ffn = (2 if model.ffn == "gelu" else 3) * d * model.ffn_dim
    embeddings = model.require_vocab() * d * (1 if model.tie_embeddings else 2)
    return model.n_layers * (attention + ffn) + embeddings


def estimate_training_memory(
    model: ModelConfig, batch_size: int, seq_len: int, *, activation_bytes: int = 4
) -> TrainingMemory:
    """The floor in the module docstring."""
    params = param_floor(model)
    kv_width = model.kv_heads * model.head_dim
    per_token = 8 * model.d_model + 2 * kv_width + 3 * model.ffn_dim
    activations = model.n_layers * batch_size * seq_len * per_token * activation_bytes
    buffers = 2 * model.max_seq_len * model.head_dim * 4 if model.position == "rope" else 0
    return TrainingMemory(params, 16 * params, activations, buffers, batch_size, seq_len)


def available_memory(device: torch.device) -> int | None:
    """What a new allocation on `device` can get: free memory on CUDA, the recommended working set less what
    is allocated on MPS, available RAM (with swap) on the CPU; None when unknown."""
    import torch

    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    except (RuntimeError, AttributeError):
        return None
    return available_host_memory()


def check_fits(cfg: RunConfig, *, resuming: bool = False) -> TrainingMemory:
    """Refuse a run whose floor estimate exceeds the memory its device has free (exit 2, with the figures)."""
    from alm.device import choose_precision, probe_capabilities, resolve_device

    device = resolve_device(cfg.train.device)
    autocast = choose_precision(probe_capabilities(device), cfg.train.precision).autocast_dtype  # type: ignore[arg-type]
    seq_len = cfg.train.seq_len or cfg.model.max_seq_len
    need = estimate_training_memory(
        cfg.model, cfg.train.batch_size, seq_len, activation_bytes=2 if autocast else 4
    )
    have = available_memory(device)
    if have is not None and need.total > have:
        raise UsageError(
            f"this run needs at least {need.describe()}; {device} has {gigabytes(have)} available",
            hint=RESUME_HINT if resuming else TRAIN_HINT,
        )
    return need


def training_failure(exc: BaseException, step: int) -> AlmError | None:
    """The clear error for a training run that ran out of memory or disk; None for anything else."""
    if is_out_of_memory(exc):
        return out_of_memory_error(exc, f"at step {step}" if step else "while starting", TRAIN_HINT)
    return expected_failure(exc)


__all__ = [
    "RESUME_HINT",
    "TRAIN_HINT",
    "TrainingMemory",
    "available_memory",
    "check_fits",
    "estimate_training_memory",
    "param_floor",
    "training_failure",
]
