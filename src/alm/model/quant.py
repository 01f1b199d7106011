"""Weight-only int8 quantisation for inference: `quantize(model, "int8")` swaps the model's linear layers for
`Int8Linear`, which stores each weight as int8 with one fp scale per output row (symmetric, absmax / 127).

Why our own ~100 lines rather than a library: `torch.ao` dynamic quantisation (and its qint8 tensors) is
deprecated; torchao's int8 weight-only layout works on the CPU but, outside torch.compile, casts the int8 weight
back to float on every call, and ties us to a narrow torch range. The matmul, by where it runs:
- `int8pack`: ATen's `_weight_int8pack_mm` (the kernel torchao and gpt-fast use: it reads the int8 weight
  directly), where it is vectorised: AVX-512 and Arm CPUs, MPS.
- `alm`: alm's own kernel (`torch.ops.alm.int8_linear`, `alm.model.kernels`) on other x86 CPUs (AVX2), where
  ATen's is a scalar loop measured 10-30x slower than fp32: each int8 weight read once and widened in registers,
  ~3x faster than fp32 at one row (pico's linears, one thread). For at most `ALM_KERNEL_ROWS` rows (decoding);
  a longer prompt's prefill takes the `dequant` route, where one dequantised weight serves every row.
- `dequant`: `x @ w.T * scale` on the dequantised weight (CUDA; any CPU where alm's kernels cannot be built).
All give the same numbers up to float rounding, and the weights take a quarter of the memory.

Kept in float: embeddings (a lookup, not a matmul) and linears with fewer than `MIN_OUT_FEATURES` outputs (the
dual FFN's router: a 2-way choice worth keeping exact). A head tied to the embedding gets an int8 copy of that
weight (a quarter of its size more memory): decoding reads the head every token, ~a fifth of pico's bytes.
"""

from __future__ import annotations

import platform
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from alm.errors import UsageError
from alm.model.kernels import ensure_kernels

QuantizeMode = Literal["int8"]
QUANTIZE_MODES: tuple[QuantizeMode, ...] = ("int8",)
MIN_OUT_FEATURES = 16
ALM_KERNEL_ROWS = 16  # beyond this many rows a dequantised weight (one pass, then BLAS) is faster (measured)
Kernel = Literal["int8pack", "alm", "dequant"]


def default_kernel(device: torch.device) -> Kernel:
    """`int8pack` where ATen's int8 kernel is vectorised, else on the CPU `alm` where alm's kernels build, else
    `dequant` (see the module doc)."""
    if device.type == "mps":
        return "int8pack"
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        arm = platform.machine().lower() in ("arm64", "aarch64")
        if arm or capability.startswith("AVX512"):
            return "int8pack"
        return "alm" if ensure_kernels() else "dequant"
    return "dequant"


class Int8Linear(nn.Module):
    """A frozen linear layer with an int8 weight [out, in] and a per-row scale [out] (inference only)."""

    weight_int8: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear, kernel: Kernel | None = None):
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        absmax = weight.abs().amax(dim=1).float().clamp(min=1e-12)
        scale = absmax / 127.0
        quantized = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_int8", quantized)
        self.register_buffer("scale", scale.to(weight.dtype))
        bias = linear.bias.detach().clone() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.kernel: Kernel = kernel or default_kernel(weight.device)
        if self.kernel == "alm" and not ensure_kernels():
            self.kernel = "dequant"  # asked for but not buildable here: the same numbers by another route

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = self.scale.to(x.dtype)
        if self.kernel == "int8pack":
            out = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), self.weight_int8, scale)
        elif self.kernel == "alm" and rows.shape[0] <= ALM_KERNEL_ROWS and _alm_kernel_takes(rows):
            out = torch.ops.alm.int8_linear(rows, self.weight_int8, scale)
        else:
            out = F.linear(rows, self.weight_int8.to(x.dtype)) * scale
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The weight this layer multiplies by, in float: [out, in]."""
        return self.weight_int8.float() * self.scale.float()[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


def _alm_kernel_takes(rows: torch.Tensor) -> bool:
    return rows.dtype == torch.float32 and rows.device.type == "cpu"


def check_mode(mode: str) -> QuantizeMode:
    if mode not in QUANTIZE_MODES:
        raise UsageError(
            f"--quantize {mode!r} is not supported", hint=f"choose one of: {', '.join(QUANTIZE_MODES)}"
        )
    return mode  # type: ignore[return-value]


def quantize(model: nn.Module, mode: str, *, kernel: Kernel | None = None) -> int:
    """Replace `model`'s linear layers in place (see the module doc for the ones kept in float); returns how many
    were replaced. Call it on the model in eval mode, on its device: the result is for inference only."""
    check_mode(mode)
    kernels: dict[torch.device, Kernel] = {}  # chosen once per device (the choice may build alm's kernels)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or child.out_features < MIN_OUT_FEATURES:
                continue
            device = child.weight.device
            chosen = kernel or kernels.setdefault(device, default_kernel(device))
            setattr(parent, name, Int8Linear(child, chosen))
            replaced += 1
    return replaced


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (a tied weight once): what quantising shrinks."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.nelement() * tensor.element_size()
    return total


__all__ = [
    "QUANTIZE_MODES",
    "Int8Linear",
    "QuantizeMode",
    "check_mode",
    "default_kernel",
    "quantize",
    "weight_bytes",
]
