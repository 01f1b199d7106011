"""The batched decode step's GEMM tuning (alm.sample.gemm_tuning) reaches into Inductor's internals: these tests
say when an installed torch no longer has what it patches (the tuning then does nothing: slower, not wrong)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch._inductor.compile_fx  # first: the imports of cpp_micro_gemm are circular
from torch._inductor.codegen.cpp_micro_gemm import CppMicroGemmFP32Vec, create_micro_gemm
from torch._inductor.cpu_vec_isa import VecAVX2, pick_vec_isa
from torch._inductor.sizevars import SizeVarAllocator
from torch._inductor.virtualized import V

from alm.sample.gemm_tuning import PREFETCHED_LOAD, WEIGHT_LOAD, batched_gemm_tuning

avx2 = pytest.mark.skipif(type(pick_vec_isa()) is not VecAVX2, reason="the tuning is for AVX2 CPUs")


def blocking(m: int) -> tuple[int, int]:
    """The register blocks Inductor's template picks for an [m, 384] @ [384, 1152] float32 GEMM."""
    with V.set_graph_handler(SimpleNamespace(sizevars=SizeVarAllocator())):  # type: ignore[arg-type]
        gemm = create_micro_gemm("probe", m, 1152, 384, torch.float32, torch.float32, num_threads=1)
    assert gemm is not None
    return tuple(gemm.register_blocking)[:2]


def test_the_template_still_has_the_weight_load_it_prefetches_after():
    assert CppMicroGemmFP32Vec.TEMPLATE_KERNEL.count(WEIGHT_LOAD) == 1


@avx2
def test_eight_rows_get_8x8_blocks_and_the_prefetch_and_everything_is_restored_after():
    before_8, before_1, template = blocking(8), blocking(1), CppMicroGemmFP32Vec.TEMPLATE_KERNEL
    assert before_8 != (8, 8)  # what Inductor picks by itself: 4-row blocks
    with batched_gemm_tuning():
        assert blocking(8) == (8, 8) and blocking(16) == (8, 8)
        assert blocking(1) == before_1 and blocking(4) != (8, 8)  # other row counts as Inductor picks them
        assert PREFETCHED_LOAD in CppMicroGemmFP32Vec.TEMPLATE_KERNEL
    assert (blocking(8), blocking(1)) == (before_8, before_1)
    assert template == CppMicroGemmFP32Vec.TEMPLATE_KERNEL
