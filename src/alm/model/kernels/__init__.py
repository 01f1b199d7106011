"""Native kernels for what torch does poorly on the CPU, built on first use by Inductor's own C++ toolchain and
registered as torch ops (so an exported, AOT-compiled graph can call them). One library, built once per machine
and torch version (~10-15 s; it needs the C++ compiler torch.compile needs anyway) and kept in
`$ALM_CACHE_DIR/kernels`:

- `torch.ops.alm.decode_attention(q, k, v, mask)`: attention of one query per row over its cached keys (a decode
  step), the same result as `single_query_attention` with a boolean mask; called by the compiled CPU decode step
  (`alm.sample.compiled`).
- `torch.ops.alm.int8_linear(x, w, scale)`: a few float rows times an int8 weight with per-row scales, reading
  each int8 weight directly; called by `alm.model.quant` on CPUs where ATen's int8 kernel is a scalar loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch

from alm.fileio import atomic_link, cache_root, keep_most_recent

SOURCES = [Path(__file__).with_name(name) for name in ("decode_attention.cpp", "int8_linear.cpp")]
HEADERS = [Path(__file__).with_name("vec8.h")]  # included by the sources: part of what a build depends on
LIBRARY = "alm_kernels"
OPS = ("decode_attention", "int8_linear")
KEEP_LIBRARIES = 2  # builds kept in a store (two torch versions sharing one cache directory)
# Notices of slow one-time work: the CLI shows the `alm` logger's; a library user's logging decides.
log = logging.getLogger(__name__)


def kernels_loaded() -> bool:
    return all(hasattr(torch.ops.alm, op) for op in OPS)


def ensure_kernels() -> bool:
    """Whether alm's kernels are loaded in this process, loading (or building) them from the default store
    (`kernel_store`) on the first call; False where they cannot be built (no C++ toolchain), so callers fall back
    to torch's own code."""
    try:
        load_kernels(kernel_store())
    except Exception:  # no usable toolchain for a torch extension: do without
        return False
    return True


def kernel_store() -> Path | None:
    """cache_root()/kernels; None with ALM_CACHE_DIR=off (then each process builds its own)."""
    root = cache_root()
    return root / "kernels" if root is not None else None


def decode_attention_supports(head_dim: int, dtype: torch.dtype, device: torch.device, alibi: bool) -> bool:
    """What the kernel computes: float32 on the CPU, head_dim a multiple of 8 up to 256, a boolean mask (ALiBi's
    additive bias takes the torch path)."""
    return (
        device.type == "cpu"
        and dtype == torch.float32
        and head_dim % 8 == 0
        and head_dim <= 256
        and not alibi
    )


def load_kernels(store: Path | None) -> None:
    """Register alm's ops in this process: the library kept in `store` (a directory) for these sources, this
    torch version and vector ISA, or a fresh build (kept there for the next process). Raises whatever the build
    raises (no compiler, an incompatible torch), so the caller can do without it."""
    if kernels_loaded():
        return
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    digest = hashlib.blake2b(digest_size=12)
    digest.update(
        "\n".join(
            [torch.__version__, str(isa), *(source.read_text() for source in [*SOURCES, *HEADERS])]
        ).encode()
    )
    kept = store / f"{LIBRARY}-{digest.hexdigest()}.so" if store is not None else None
    if kept is not None and kept.is_file():
        with contextlib.suppress(OSError):
            torch.ops.load_library(str(kept))
            os.utime(kept)  # the most recently used is pruned last
    if not kernels_loaded():
        with tempfile.TemporaryDirectory(prefix="alm-kernels-") as tmp:
            log.info("building alm's CPU kernels (once per machine and torch version, ~15 s)")
            built = _build(tmp, isa)
            # Loaded before it is kept: a library that will not load is never kept.
            torch.ops.load_library(built)
            if kept is not None:
                with contextlib.suppress(OSError):  # a full or read-only disk costs the next process a build
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    atomic_link(built, kept)
                    keep_most_recent(kept.parent, f"{LIBRARY}-*.so", KEEP_LIBRARIES)
    _register_fakes()


def _build(directory: str, isa) -> str:
    """Compile SOURCES into one shared library with the flags Inductor uses for its own kernels (torch's headers
    and libraries, the CPU's vector ISA); FMA contraction on, which Inductor turns off for bitwise parity."""
    from torch._inductor.cpp_builder import CppBuilder, CppTorchOptions

    options = CppTorchOptions(
        vec_isa=isa, include_pytorch=True, shared=True, extra_flags=("-ffp-contract=fast",)
    )
    sources = [str(source) for source in SOURCES]
    builder = CppBuilder(name=LIBRARY, sources=sources, BuildOption=options, output_dir=directory)
    builder.build()
    return builder.get_target_file_path()


def _register_fakes() -> None:
    """Shapes for tracing (torch.export runs the step on fake tensors); once, right after the library loads."""
    torch.library.register_fake("alm::decode_attention")(_fake_decode_attention)
    torch.library.register_fake("alm::int8_linear")(_fake_int8_linear)


def _fake_decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
    return q.new_empty(q.shape)


def _fake_int8_linear(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], w.shape[0])
