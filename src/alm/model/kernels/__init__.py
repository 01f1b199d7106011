"""Native kernels for what Inductor's generated code does poorly, built on first use by Inductor's own C++
toolchain and registered as torch ops (so an exported, AOT-compiled graph can call them).

`torch.ops.alm.decode_attention(q, k, v, mask)`: attention of one query per row over its cached keys (a decode
step), the same result as `single_query_attention` with a boolean mask. Only the compiled CPU decode step asks
for it (`alm.sample.compiled`): building takes ~10 s once, and needs the C++ compiler that step needs anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import torch

from alm.fileio import atomic_link, keep_most_recent

SOURCE = Path(__file__).with_name("decode_attention.cpp")
LIBRARY = "alm_kernels"
KEEP_LIBRARIES = 2  # builds kept in a store (two torch versions sharing one cache directory)


def decode_attention_loaded() -> bool:
    return hasattr(torch.ops.alm, "decode_attention")


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


def load_decode_attention(store: Path | None) -> None:
    """Register torch.ops.alm.decode_attention in this process: the library kept in `store` (a directory) for
    this source, torch version and vector ISA, or a fresh build (kept there for the next process). Raises
    whatever the build raises (no compiler, an incompatible torch), so the caller can do without it."""
    if decode_attention_loaded():
        return
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    isa = pick_vec_isa()
    digest = hashlib.blake2b(digest_size=12)
    digest.update("\n".join([torch.__version__, str(isa), SOURCE.read_text()]).encode())
    kept = store / f"{LIBRARY}-{digest.hexdigest()}.so" if store is not None else None
    if kept is not None and kept.is_file():
        with contextlib.suppress(OSError):
            torch.ops.load_library(str(kept))
            os.utime(kept)  # the most recently used is pruned last
    if not decode_attention_loaded():
        with tempfile.TemporaryDirectory(prefix="alm-kernels-") as tmp:
            built = _build(tmp, isa)
            # Loaded before it is kept: a library that will not load is never kept.
            torch.ops.load_library(built)
            if kept is not None:
                with contextlib.suppress(OSError):  # a full or read-only disk costs the next process a build
                    kept.parent.mkdir(parents=True, exist_ok=True)
                    atomic_link(built, kept)
                    keep_most_recent(kept.parent, f"{LIBRARY}-*.so", KEEP_LIBRARIES)
    _register_fake()


def _build(directory: str, isa) -> str:
    """Compile SOURCE into a shared library with the flags Inductor uses for its own kernels (torch's headers
    and libraries, the CPU's vector ISA); FMA contraction on, which Inductor turns off for bitwise parity."""
    from torch._inductor.cpp_builder import CppBuilder, CppTorchOptions

    options = CppTorchOptions(
        vec_isa=isa, include_pytorch=True, shared=True, extra_flags=("-ffp-contract=fast",)
    )
    builder = CppBuilder(name=LIBRARY, sources=[str(SOURCE)], BuildOption=options, output_dir=directory)
    builder.build()
    return builder.get_target_file_path()


def _register_fake() -> None:
    """Shapes for tracing (torch.export runs the step on fake tensors); once, right after the library loads."""
    torch.library.register_fake("alm::decode_attention")(_fake_decode_attention)


def _fake_decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
    return q.new_empty(q.shape)
