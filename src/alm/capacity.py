"""Running out of disk or memory: checking for room before a big write, and recognising the failure when it
happens anyway, so it reads as one clear line instead of a traceback (torch-free).

torch reports a full disk during `torch.save` as a RuntimeError ("unexpected pos N vs M", "file write failed")
rather than an OSError, and running out of memory as `torch.OutOfMemoryError` (CUDA/MPS), a RuntimeError naming
the allocator (CPU) or a plain MemoryError; the predicates below know those shapes.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from alm.errors import AlmError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("no space left on device", "unexpected pos", "file write failed", "disk quota exceeded")
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
MB = 1 << 20
SLACK = MB  # metadata beside a checkpoint's tensors, events and logs written meanwhile


def megabytes(n: int) -> str:
    return f"{n / MB:.1f} MB" if n < 10 * MB else f"{round(n / MB):,} MB"


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, or torch's wording of a short write (which is what a full disk causes during a save)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _DISK_FULL_TEXT)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def free_bytes(path: str | Path) -> int | None:
    """Free space on the file system holding `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def disk_full_error(path: str | Path | None, needed: int | None = None, hint: str | None = None) -> AlmError:
    """The message "no space left on device: PATH, needed ~N MB (M MB free)", as much of it as is known."""
    free = free_bytes(path) if path is not None else None
    need = f", needed ~{megabytes(needed)}" if needed else ""
    have = f" ({megabytes(free)} free)" if free is not None else ""
    return AlmError(
        f"no space left on device: {path or 'a write failed'}{need}{have}",
        hint=hint
        or "free some space (or move the runs or data directory to a larger disk), then run it again",
    )


def check_free_space(path: str | Path, needed: int, hint: str | None = None) -> None:
    """Refuse a write of ~`needed` bytes under `path` that cannot fit (with `SLACK` for what the estimate leaves
    out): cheaper than failing halfway through, and it leaves room for the run's other files."""
    free = free_bytes(path)
    if free is not None and free < needed + SLACK:
        raise disk_full_error(path, needed, hint)


def available_host_memory() -> int | None:
    """Memory a new allocation can get on this machine: MemAvailable + SwapFree on Linux, physical memory
    elsewhere (macOS has no cheap "available" figure without psutil); None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:]}
        return fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def out_of_memory_error(exc: BaseException, where: str, hint: str) -> AlmError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return AlmError(f"out of memory{' ' + where if where else ''}: {first[:200]}", hint=hint)


def expected_failure(exc: BaseException) -> AlmError | None:
    """The clear error for a failure of the machine rather than of alm (a full disk, no memory, no
    permission); None for anything else, which stays a bug worth a traceback."""
    if is_disk_full(exc):
        return disk_full_error(getattr(exc, "filename", None))
    if is_out_of_memory(exc):
        return out_of_memory_error(
            exc, "", "use smaller settings (batch size, sequence length) or a device with more memory"
        )
    if isinstance(exc, PermissionError):
        return AlmError(f"permission denied: {exc.filename or exc}", hint="check the path's owner and mode")
    return None


__all__ = [
    "available_host_memory",
    "check_free_space",
    "disk_full_error",
    "expected_failure",
    "free_bytes",
    "is_disk_full",
    "is_out_of_memory",
    "megabytes",
    "out_of_memory_error",
]
