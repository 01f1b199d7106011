"""alm's native decode-attention kernel (alm.model.kernels) against the torch formulation it replaces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import alm.model.kernels as kernels
from alm.device import compile_support
from alm.model.attention import single_query_attention
from alm.model.kernels import decode_attention_supports, kernels_loaded, load_kernels

pytestmark = pytest.mark.skipif(
    not compile_support(torch.device("cpu"))[0], reason="building the kernel needs Inductor's C++ toolchain"
)


@pytest.fixture(scope="module")
def store() -> Path:
    """The session's kernel store (conftest points ALM_CACHE_DIR at a temp dir): built once per session."""
    path = Path(os.environ["ALM_CACHE_DIR"]) / "kernels"
    load_kernels(path)
    assert kernels_loaded()
    return path


def attention_inputs(B: int, H: int, KV: int, hd: int, L: int, *, seed: int = 0, spare: int = 5):
    """q as the model makes it (a transposed view), k/v as cache slices: rows `L + spare` apart."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, 1, H, hd, generator=gen).transpose(1, 2)
    k = torch.randn(B, KV, L + spare, hd, generator=gen)[:, :, :L]
    v = torch.randn(B, KV, L + spare, hd, generator=gen)[:, :, :L]
    return q, k, v


def reference(q, k, v, mask) -> torch.Tensor:
    return single_query_attention(q.double(), k.double(), v.double(), mask).float()


@pytest.mark.parametrize(
    ("B", "H", "KV", "hd", "L"),
    [
        (1, 6, 6, 64, 64),
        (8, 6, 6, 64, 130),
        (3, 8, 2, 32, 50),
        (2, 4, 1, 16, 7),
        (2, 4, 4, 256, 33),
        (1, 2, 2, 8, 1),
    ],
)
def test_the_kernel_computes_single_query_attention(store, B, H, KV, hd, L):
    """MHA, GQA and MQA; head sizes 8 to 256; no mask, a causal mask per row, and a mask with holes per head."""
    q, k, v = attention_inputs(B, H, KV, hd, L)
    positions = torch.randint(0, L, (B,), generator=torch.Generator().manual_seed(1))
    causal = (torch.arange(L)[None] <= positions[:, None]).view(B, 1, 1, L)
    holes = torch.rand(B, H, 1, L, generator=torch.Generator().manual_seed(2)) > 0.3
    holes[..., 0] = True
    for mask in (None, causal, holes):
        out = torch.ops.alm.decode_attention(q, k, v, mask)
        assert out.shape == (B, H, 1, hd) and out.is_contiguous()
        torch.testing.assert_close(out, reference(q, k, v, mask), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, single_query_attention(q, k, v, mask), rtol=1e-5, atol=1e-5)


def test_a_peaked_softmax_keeps_float32_accuracy(store):
    """Scores in the hundreds: the kernel's own exp (a polynomial) is as exact as the float32 sums before it."""
    q, k, v = attention_inputs(4, 4, 4, 64, 100)
    for scale in (1.0, 10.0, 40.0):
        out = torch.ops.alm.decode_attention(q * scale, k, v, None)
        torch.testing.assert_close(out, reference(q * scale, k, v, None), rtol=0, atol=1e-4 * scale)


def test_keys_after_the_last_visible_one_are_never_read(store):
    """A decode step's cache holds stale rows past each row's position (another sequence's leftovers): NaN there
    must not reach the output, which a kernel that read and masked them would let through 0 * NaN."""
    q, k, v = attention_inputs(2, 4, 2, 32, 40)
    positions = torch.tensor([9, 30])
    mask = (torch.arange(40)[None] <= positions[:, None]).view(2, 1, 1, 40)
    clean = torch.ops.alm.decode_attention(q, k, v, mask)
    for b, pos in enumerate(positions.tolist()):
        k[b, :, pos + 1 :] = float("nan")
        v[b, :, pos + 1 :] = float("nan")
    assert torch.equal(torch.ops.alm.decode_attention(q, k, v, mask), clean)


def test_a_nan_in_a_visible_key_reaches_the_output_as_in_torch(store):
    q, k, v = attention_inputs(2, 2, 2, 16, 6)
    k[0, 1, 3] = float("nan")
    out, expected = torch.ops.alm.decode_attention(q, k, v, None), single_query_attention(q, k, v, None)
    assert out[0, 1].isnan().all() and expected[0, 1].isnan().all()
    torch.testing.assert_close(out[1], expected[1], rtol=1e-5, atol=1e-5)  # other rows untouched


def test_inputs_outside_what_it_computes_are_refused(store):
    q, k, v = attention_inputs(1, 2, 2, 16, 5)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.alm.decode_attention(q.double(), k.double(), v.double(), None)
    q12, k12, v12 = attention_inputs(1, 2, 2, 12, 5)
    with pytest.raises(RuntimeError, match="multiple of 8"):
        torch.ops.alm.decode_attention(q12, k12, v12, None)
    with pytest.raises(RuntimeError, match="boolean"):
        torch.ops.alm.decode_attention(q, k, v, torch.zeros(1, 1, 1, 5))


def test_the_model_asks_for_the_kernel_only_where_it_applies():
    cpu, fp32 = torch.device("cpu"), torch.float32
    assert decode_attention_supports(64, fp32, cpu, alibi=False)
    assert not decode_attention_supports(64, torch.bfloat16, cpu, alibi=False)
    assert not decode_attention_supports(64, fp32, torch.device("cuda"), alibi=False)
    assert not decode_attention_supports(64, fp32, cpu, alibi=True)  # an additive bias, not a boolean mask
    assert not decode_attention_supports(12, fp32, cpu, alibi=False)
    assert not decode_attention_supports(512, fp32, cpu, alibi=False)


def test_a_decode_step_with_the_kernel_gives_the_torch_steps_logits(store):
    from model_testing import tiny_model

    model = tiny_model(n_heads=4, n_kv_heads=2, max_seq_len=32)
    cache = model.new_cache(3)
    for row, prompt in enumerate([[1, 2, 3], [4, 5, 6, 7, 8], [9]]):
        model(torch.tensor([prompt]), cache=cache.row(row))
    tokens, positions = torch.tensor([10, 11, 12]), torch.tensor([3, 5, 1])
    with torch.inference_mode():
        plain = model.decode_step(tokens, positions, cache, 8)
        fused = model.decode_step(tokens, positions, cache, 8, decode_kernel=True)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_the_next_process_loads_the_kept_library_without_building(store):
    script = (
        "import sys; from pathlib import Path; import alm.model.kernels as k\n"
        "from alm.cli.common import show_notices; show_notices()\n"
        "k._build = lambda *a: sys.exit('built again')\n"
        "k.load_kernels(Path(sys.argv[1])); assert k.kernels_loaded()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(store)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "building" not in done.stderr, done.stderr


def test_a_new_build_prunes_the_store_to_the_most_recently_used_libraries(store, tmp_path):
    [kept] = store.glob(f"{kernels.LIBRARY}-*.so")
    for age, name in enumerate(["other-torch", "older-torch", "oldest-torch"]):
        stale = tmp_path / f"{kernels.LIBRARY}-{name}.so"
        stale.write_bytes(b"a library of another torch")
        os.utime(stale, (1e9 - age, 1e9 - age))
    (tmp_path / "notes.txt").write_text("not a library")
    script = (  # a fresh process (this one has the op loaded), "building" by copying the kept library
        "import shutil, sys; from pathlib import Path; import alm.model.kernels as k\n"
        "from alm.cli.common import show_notices; show_notices()  # as the CLI does\n"
        "k._build = lambda directory, isa: shutil.copy(sys.argv[2], directory)\n"
        "k.load_kernels(Path(sys.argv[1])); assert k.kernels_loaded()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(kept)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "building alm's CPU kernels (once per machine" in done.stderr  # ~15 s that would look like a hang
    left = sorted(path.name for path in tmp_path.iterdir())
    assert len(left) == kernels.KEEP_LIBRARIES + 1 and "notes.txt" in left
    assert (
        f"{kernels.LIBRARY}-other-torch.so" in left and kept.name in left
    )  # same source and torch: same name
