"""Peak matmul throughput of a device, the denominator of MFU (model FLOPs utilisation).

CPU: no table can know the clock, core count and SIMD width of the machine we run on, so the peak is measured in
the same run with a large square sgemm (the best of a few repetitions, with the thread count the benchmark uses).
CUDA and Apple GPUs: a table of vendor peaks (dense, no sparsity), looked up by the device name torch reports.
Apple GPUs run fp16/bf16 at the fp32 rate, so one figure serves all dtypes; core counts vary within a chip
variant, so the table holds the largest configuration and the lookup says so.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TFLOPS = 1e12


@dataclass(frozen=True)
class GpuPeak:
    """Dense peaks in TFLOP/s: tensor-core bf16/fp16, TF32 (fp32 matmuls at matmul precision 'high'), plain fp32."""

    bf16: float
    tf32: float
    fp32: float


# Ordered: the first pattern that matches the lower-cased device name wins (so "h100 pcie" precedes "h100").
NVIDIA_PEAKS: tuple[tuple[str, str, GpuPeak], ...] = (
    ("h200", "NVIDIA H200 (SXM)", GpuPeak(989.4, 494.7, 66.9)),
    ("h100 pcie", "NVIDIA H100 PCIe", GpuPeak(756.5, 378.0, 51.2)),
    ("h100 nvl", "NVIDIA H100 NVL", GpuPeak(835.0, 417.5, 60.0)),
    ("h100", "NVIDIA H100 SXM", GpuPeak(989.4, 494.7, 66.9)),
    ("a100", "NVIDIA A100", GpuPeak(312.0, 156.0, 19.5)),
    ("l4", "NVIDIA L4", GpuPeak(121.0, 60.0, 30.3)),
    ("rtx 4090", "NVIDIA GeForce RTX 4090", GpuPeak(165.2, 82.6, 82.6)),
    ("rtx 3090", "NVIDIA GeForce RTX 3090", GpuPeak(71.0, 35.6, 35.6)),
)

# Apple GPU fp32 TFLOP/s for the largest GPU configuration of each chip variant (fp16/bf16 run at the same rate).
APPLE_PEAKS: dict[str, float] = {
    "M1": 2.6, "M1 Pro": 5.3, "M1 Max": 10.6, "M1 Ultra": 21.2,
    "M2": 3.6, "M2 Pro": 6.8, "M2 Max": 13.6, "M2 Ultra": 27.2,
    "M3": 4.1, "M3 Pro": 7.4, "M3 Max": 16.4, "M3 Ultra": 32.8,
    "M4": 4.3, "M4 Pro": 9.2, "M4 Max": 18.4,
}  # fmt: skip


@dataclass(frozen=True)
class Peak:
    """The peak FLOP/s used for MFU, or None with a reason when it is unknown."""

    flops: float | None
    source: str  # what the figure is: "measured sgemm 2048x2048 ...", "table: NVIDIA H100 SXM bf16", "unknown peak"

    @property
    def known(self) -> bool:
        return self.flops is not None and self.flops > 0


def mfu(tokens_per_second: float, flops_per_token: float, peak: Peak) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak; None when the peak is unknown."""
    if not peak.known or tokens_per_second <= 0 or flops_per_token <= 0:
        return None
    return tokens_per_second * flops_per_token / peak.flops  # type: ignore[operator]


def nvidia_peak(device_name: str, precision: str, matmul_precision: str = "high") -> Peak:
    """Table peak for a CUDA device; `precision` is the plan's fp32/bf16/fp16."""
    name = device_name.lower()
    for pattern, label, peak in NVIDIA_PEAKS:
        if re.search(rf"\b{re.escape(pattern)}\b", name):
            if precision in ("bf16", "fp16"):
                return Peak(peak.bf16 * TFLOPS, f"table: {label} {precision} tensor-core peak (dense)")
            if matmul_precision in ("high", "medium"):
                return Peak(peak.tf32 * TFLOPS, f"table: {label} TF32 peak (dense)")
            return Peak(peak.fp32 * TFLOPS, f"table: {label} fp32 peak")
    return Peak(None, f"unknown peak for {device_name!r}: add it to alm.bench.peaks.NVIDIA_PEAKS")


def apple_peak(chip_name: str) -> Peak:
    """Table peak for an Apple GPU, from a chip name such as 'Apple M2 Max'."""
    match = re.search(r"\bM(\d)(?:\s+(Pro|Max|Ultra))?\b", chip_name)
    if match:
        variant = f"M{match.group(1)}" + (f" {match.group(2)}" if match.group(2) else "")
        if variant in APPLE_PEAKS:
            return Peak(
                APPLE_PEAKS[variant] * TFLOPS,
                f"table: Apple {variant} GPU fp32 peak (largest GPU configuration; yours may have fewer cores)",
            )
    return Peak(
        None, f"unknown peak for {chip_name or 'this Apple GPU'!r}: add it to alm.bench.peaks.APPLE_PEAKS"
    )


def apple_chip_name() -> str:
    """'Apple M2 Max' on macOS (from sysctl); '' elsewhere or when it cannot be read."""
    if sys.platform != "darwin":
        return ""
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
        )
        return out.stdout.strip()
    return ""


def measure_cpu_matmul_peak(dtype: torch.dtype | None = None, size: int = 1024, repeats: int = 10) -> Peak:
    """Best FLOP/s of a `size`² matmul in `dtype` (fp32 by default) with the current torch thread count."""
    import torch

    dtype = dtype or torch.float32
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: first-call allocation and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    flops = 2 * size**3 / best
    label = str(dtype).removeprefix("torch.")
    return Peak(
        flops, f"measured: best of {repeats} {size}x{size} {label} matmuls, {torch.get_num_threads()} threads"
    )


def device_peak(device: torch.device, device_name: str, precision: str, matmul_precision: str) -> Peak:
    """The MFU denominator for `device` at the plan's precision (measured on CPU, looked up elsewhere)."""
    import torch

    if device.type == "cuda":
        return nvidia_peak(device_name, precision, matmul_precision)
    if device.type == "mps":
        return apple_peak(apple_chip_name())
    return measure_cpu_matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32)
