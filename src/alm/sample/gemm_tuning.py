"""Inductor's CPU GEMM template, tuned for a batched decode step (8 rows) on AVX2, for the duration of a build.

At 8 rows each weight is used for 8 FMAs: the GEMMs sit between compute and memory bound, and how the template
streams weights decides the time. Two changes, each measured in same-process A/B runs of the pico step at B=8
(docs/BENCHMARKS.md); row counts that are not a multiple of 8 keep Inductor's choice, and no sum changes:

- Register blocks of 8x8 when M is a multiple of 8. The template prefers 4x24 (or 4x16) blocks, which stream
  each weight panel from memory for rows 0-3 and again, from cache, for rows 4-7, with no memory traffic left
  to hide the second pass behind; 8x8 (8 accumulators, one weight load per 8 FMAs) reads each weight once.
- A software prefetch 2 KB ahead in the 8-row kernel: its loop issues one weight load per 8 FMAs, too few for
  the out-of-order window to keep enough cache misses in flight, and the hardware prefetcher alone leaves it
  at ~60% of the bandwidth a GEMV reaches.

Both reach into Inductor's internals (its micro-kernel configs and template text), so each checks what it
patches and does nothing where the installed torch differs (`tests/sample/test_sample_gemm_tuning.py` says when).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

# Part of the compiled step's package key: a change here must not reuse steps built without it.
TUNING_VERSION = "gemm-8x8-prefetch-1"

# The weight load in the template's FP32 kernel (non-transposed B, no N tail), and what follows it here.
WEIGHT_LOAD = """        {%- else %}
            vb[col] = Vectorized::loadu(B + k * ldb + col * VLEN);
        {%- endif %}
"""
PREFETCHED_LOAD = """        {%- else %}
            vb[col] = Vectorized::loadu(B + k * ldb + col * VLEN);
            if constexpr (ROWS == 8 && COLS == 1) {  // alm: 2 KB ahead, one 64-byte line per 2 rows of k
                if ((k & 1) == 0) {
                    _mm_prefetch(reinterpret_cast<const char*>(B + (k + 64) * ldb), _MM_HINT_T0);
                }
            }
        {%- endif %}
"""


@contextlib.contextmanager
def batched_gemm_tuning() -> Iterator[None]:
    """8x8 blocks at 8 rows and the prefetch, on AVX2, while the context lasts (an Inductor build)."""
    import torch._inductor.compile_fx  # first: importing cpp_micro_gemm first is circular

    try:
        from torch._inductor.codegen.cpp_micro_gemm import CppMicroGemmFP32Vec, micro_gemm_configs
        from torch._inductor.cpu_vec_isa import VecAVX2, pick_vec_isa
    except ImportError:
        yield
        return
    if type(pick_vec_isa()) is not VecAVX2:  # AVX-512's blocks are 8 rows already; ARM differs
        yield
        return
    configs = [
        cfg
        for listed in micro_gemm_configs.values()
        for cfg in listed
        if cfg.vec_isa_cls is VecAVX2
        and cfg.input_dtype == cfg.input2_dtype == cfg.output_dtype == torch.float32
        and cfg.extra_check is None
    ]
    template = CppMicroGemmFP32Vec.TEMPLATE_KERNEL
    if (
        not any(tuple(cfg.register_blocking)[:2] == (8, 8) for cfg in configs)
        or template.count(WEIGHT_LOAD) != 1
    ):
        yield
        return
    for cfg in configs:
        cfg.extra_check = functools.partial(_rows_fit, tuple(cfg.register_blocking)[:2] == (8, 8))
    CppMicroGemmFP32Vec.TEMPLATE_KERNEL = template.replace(WEIGHT_LOAD, PREFETCHED_LOAD)  # pyright: ignore[reportAttributeAccessIssue]
    try:
        yield
    finally:
        CppMicroGemmFP32Vec.TEMPLATE_KERNEL = template  # pyright: ignore[reportAttributeAccessIssue]
        for cfg in configs:
            cfg.extra_check = None


def _rows_fit(eight_rows: bool, config, m, *args, **kwargs) -> bool:
    """The configs' filter: 8x8 blocks exactly when M is a multiple of 8."""
    return (m % 8 == 0) == eight_rows
