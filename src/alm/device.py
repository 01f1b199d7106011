"""Device and precision policy.

`choose_precision` is a pure function of a `DeviceCapabilities` record, so the MPS and CUDA rules are unit-tested
on a CPU-only machine; `probe_capabilities` is the only part that asks torch about the real hardware.

The rules, and why:
- CPU: fp32. bf16 matmul on common x86 CPUs without AMX is ~50x slower than fp32, and fp16 autocast on CPU is
  slower still; an explicit `bf16` is allowed (with a warning) for CPUs that have AMX.
- CUDA: bf16 autocast where the GPU supports it (compute capability >= 8.0), else fp16 autocast + GradScaler.
  TF32 matmuls ("high") either way.
- MPS: bf16 autocast needs macOS >= 14 and is only emulated on M1/M2, so it is chosen only on M3 and later;
  fp16 autocast needs a GradScaler, which MPS supports from torch 2.8. Otherwise fp32. float64 does not exist on
  MPS at all. (torch >= 2.6 is required, so older torch versions need no rules here.)
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from alm.errors import UsageError

if TYPE_CHECKING:
    import torch

DeviceType = Literal["cpu", "cuda", "mps"]
PrecisionName = Literal["fp32", "bf16", "fp16"]
RequestedPrecision = Literal["auto", "fp32", "bf16", "fp16"]

MPS_GRAD_SCALER = (2, 8)
MACOS_BF16 = (14, 0)


@dataclass(frozen=True)
class DeviceCapabilities:
    """What the policy needs to know about a device; filled by `probe_capabilities` or by hand in tests."""

    device_type: DeviceType
    name: str = ""
    torch_version: tuple[int, int] = (0, 0)
    macos_version: tuple[int, int] | None = None
    cuda_capability: tuple[int, int] | None = None
    cuda_bf16: bool = False
    apple_chip_generation: int | None = None  # 1 for M1, 2 for M2, ...; None when unknown
    total_memory: int | None = None


@dataclass(frozen=True)
class PrecisionPlan:
    """The chosen numeric setup for one device."""

    device_type: DeviceType
    precision: PrecisionName
    autocast_dtype: str | None  # "bfloat16"/"float16", or None for plain fp32
    use_grad_scaler: bool
    matmul_precision: Literal["highest", "high"]
    reason: str
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_precision(caps: DeviceCapabilities, requested: RequestedPrecision = "auto") -> PrecisionPlan:
    """Pick parameter/autocast dtypes for `caps`; an impossible explicit request is a UsageError."""
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"unknown precision {requested!r}", hint="use one of: auto, fp32, bf16, fp16")
    chooser = {"cpu": _cpu_plan, "cuda": _cuda_plan, "mps": _mps_plan}[caps.device_type]
    return chooser(caps, requested)


def _plan(caps: DeviceCapabilities, precision: PrecisionName, reason: str, **kw: Any) -> PrecisionPlan:
    autocast = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}[precision]
    matmul = "high" if caps.device_type == "cuda" else "highest"
    return PrecisionPlan(caps.device_type, precision, autocast, precision == "fp16", matmul, reason, **kw)


def _cpu_plan(caps: DeviceCapabilities, requested: RequestedPrecision) -> PrecisionPlan:
    if requested in ("auto", "fp32"):
        return _plan(caps, "fp32", "CPU: fp32 (bf16 matmul is far slower than fp32 on most CPUs)")
    if requested == "bf16":
        warning = "bf16 on CPU is only fast on CPUs with AMX; expect it to be much slower than fp32 elsewhere"
        plan = _plan(caps, "bf16", "CPU: bf16 autocast as requested", warnings=(warning,))
        return PrecisionPlan(**{**plan.as_dict(), "use_grad_scaler": False})
    raise UsageError("fp16 is not supported on the CPU", hint="choose precision fp32 (or bf16)")


def _cuda_plan(caps: DeviceCapabilities, requested: RequestedPrecision) -> PrecisionPlan:
    if requested == "fp32":
        return _plan(caps, "fp32", "CUDA: fp32 as requested (TF32 matmuls)")
    if requested in ("auto", "bf16") and caps.cuda_bf16:
        return _plan(caps, "bf16", "CUDA: bf16 autocast (supported by this GPU)")
    if requested == "bf16":
        cap = ".".join(map(str, caps.cuda_capability or (0, 0)))
        raise UsageError(
            f"this GPU (compute capability {cap}) does not support bf16",
            hint="use --set train.precision=fp16 or fp32",
        )
    return _plan(caps, "fp16", "CUDA: fp16 autocast with GradScaler (no bf16 on this GPU)")


def _mps_plan(caps: DeviceCapabilities, requested: RequestedPrecision) -> PrecisionPlan:
    torch_v, macos = caps.torch_version, caps.macos_version or (0, 0)
    bf16_ok = macos >= MACOS_BF16
    bf16_native = bf16_ok and (caps.apple_chip_generation or 0) >= 3
    fp16_ok = torch_v >= MPS_GRAD_SCALER
    if requested == "fp32":
        return _plan(caps, "fp32", "MPS: fp32 as requested")
    if requested == "bf16":
        if not bf16_ok:
            raise UsageError(
                f"bf16 on MPS needs macOS >= 14 (have macOS {_v(macos)})",
                hint="use --set train.precision=fp32",
            )
        warnings = () if bf16_native else ("this Apple chip emulates bf16: expect no speed-up over fp32",)
        return _plan(caps, "bf16", "MPS: bf16 autocast as requested", warnings=warnings)
    if requested == "fp16":
        if not fp16_ok:
            raise UsageError(
                f"fp16 training on MPS needs torch >= 2.8 for GradScaler (have {_v(torch_v)})",
                hint="use --set train.precision=fp32, or upgrade torch",
            )
        return _plan(caps, "fp16", "MPS: fp16 autocast with GradScaler as requested")
    if bf16_native:
        return _plan(caps, "bf16", "MPS: bf16 autocast (macOS >= 14, M3 or later)")
    if fp16_ok:
        return _plan(caps, "fp16", "MPS: fp16 autocast with GradScaler (bf16 would be emulated on this chip)")
    return _plan(caps, "fp32", f"MPS: fp32 (mixed precision needs a newer torch/macOS: torch {_v(torch_v)})")


def _v(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def parse_version(text: str) -> tuple[int, int]:
    """'2.13.0+cpu' -> (2, 13); '14.5' -> (14, 5); unparsable -> (0, 0)."""
    match = re.match(r"(\d+)(?:\.(\d+))?", text or "")
    return (int(match.group(1)), int(match.group(2) or 0)) if match else (0, 0)


def available_device_types() -> list[DeviceType]:
    import torch

    found: list[DeviceType] = []
    if torch.backends.mps.is_available():
        found.append("mps")
    if torch.cuda.is_available():
        found.append("cuda")
    found.append("cpu")
    return found


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks mps > cuda > cpu; an explicit device that is not available is a UsageError."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_device_types()[0])
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(
            f"unsupported device type {device.type!r}", hint="use auto, cpu, cuda, cuda:N or mps"
        )
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA was requested but torch sees no CUDA device", hint="run `alm doctor`")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("MPS was requested but is not available here", hint="run `alm doctor`")
    return device


def _macos_version() -> tuple[int, int] | None:
    release = platform.mac_ver()[0]
    return parse_version(release) if release else None


def _apple_chip_generation() -> int | None:
    brand = ""
    with contextlib.suppress(Exception):
        import subprocess

        brand = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
        ).stdout
    match = re.search(r"Apple M(\d+)", brand)
    return int(match.group(1)) if match else None


def probe_capabilities(device: torch.device) -> DeviceCapabilities:
    import torch

    torch_v = parse_version(torch.__version__)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return DeviceCapabilities(
            "cuda",
            name=props.name,
            torch_version=torch_v,
            cuda_capability=(props.major, props.minor),
            cuda_bf16=bool(torch.cuda.is_bf16_supported()),
            total_memory=int(props.total_memory),
        )
    if device.type == "mps":
        total = None
        with contextlib.suppress(Exception):
            total = int(torch.mps.recommended_max_memory())
        return DeviceCapabilities(
            "mps",
            name="Apple GPU (MPS)",
            torch_version=torch_v,
            macos_version=_macos_version(),
            apple_chip_generation=_apple_chip_generation(),
            total_memory=total,
        )
    return DeviceCapabilities("cpu", name=platform.processor() or platform.machine(), torch_version=torch_v)


def setup_device(name: str = "auto", precision: str = "auto") -> tuple[torch.device, PrecisionPlan]:
    """The device and precision plan to train on (training and its benchmark), with the plan's float32 matmul
    precision applied: a process-wide torch setting."""
    import torch

    device = resolve_device(name)
    plan = choose_precision(probe_capabilities(device), precision)  # type: ignore[arg-type]
    torch.set_float32_matmul_precision(plan.matmul_precision)
    return device, plan


def autocast_context(plan: PrecisionPlan) -> contextlib.AbstractContextManager[Any]:
    """Autocast for the plan's dtype, or a no-op for fp32."""
    import torch

    if plan.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=plan.device_type, dtype=getattr(torch, plan.autocast_dtype))


def make_grad_scaler(plan: PrecisionPlan) -> Any:
    """A GradScaler for fp16 plans, else None."""
    if not plan.use_grad_scaler:
        return None
    import torch

    return torch.amp.GradScaler(plan.device_type)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings are honest."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def compile_support(device: torch.device) -> tuple[bool, str]:
    """(whether torch.compile can build code for `device`, why not): Inductor needs a C++ compiler on the CPU and
    Triton on CUDA; its MPS backend is not used."""
    if device.type == "mps":
        return False, "Inductor's MPS backend is experimental and not used; running eagerly"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return (True, "") if has_triton() else (False, "Triton is not installed; running eagerly")
    if device.type != "cpu":
        return False, f"torch.compile is not used on {device.type}; running eagerly"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # InvalidCxxCompiler, or an Inductor internals change: either way, run eagerly
        return (
            False,
            "no C++ compiler found for Inductor's CPU backend (install g++ or set CXX); running eagerly",
        )
    return True, ""


def memory_stats(device: torch.device) -> dict[str, int]:
    """Bytes in use on the device (process RSS for the CPU)."""
    import torch

    if device.type == "cuda":
        return {
            "allocated": int(torch.cuda.memory_allocated(device)),
            "reserved": int(torch.cuda.memory_reserved(device)),
            "peak": int(torch.cuda.max_memory_allocated(device)),
        }
    if device.type == "mps":
        return {
            "allocated": int(torch.mps.current_allocated_memory()),
            "driver": int(torch.mps.driver_allocated_memory()),
        }
    return {"rss": _rss_bytes()}


def _rss_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes; Linux: KiB (peak, not current)
    return int(peak if sys.platform == "darwin" else peak * 1024)


def describe(device: torch.device, plan: PrecisionPlan) -> dict[str, Any]:
    """A JSON-safe summary for logs and `alm doctor`."""
    caps = probe_capabilities(device)
    return {
        "device": str(device),
        "type": device.type,
        "name": caps.name,
        "precision": plan.precision,
        "autocast_dtype": plan.autocast_dtype,
        "grad_scaler": plan.use_grad_scaler,
        "matmul_precision": plan.matmul_precision,
        "total_memory": caps.total_memory,
    }
