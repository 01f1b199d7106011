"""The decode step, compiled: ahead of time by AOTInductor on the CPU, as a CUDA graph by torch.compile on CUDA.

On the CPU a small model's step is bound by reading its weights, and what torch.compile leaves around the kernels
(Dynamo's frame hook, the Python wrapper that calls ~50 kernels and allocates their buffers) cost ~0.75 ms of a
~5 ms pico step. AOTInductor compiles the exported step into one shared library with a C++ wrapper, called with
no guards and no Python between kernels: 10–20% faster per token, the same logits to the bit, at the price of a
longer compilation (the wrapper and every kernel are built as one C++ file). So the built package is kept on disk
(`package_store`), keyed by everything the library depends on, and the next process with the same model loads it
in seconds. On CUDA the launches are what cost, and a CUDA graph replays them all at once; that needs static
shapes and cache tensors at fixed addresses.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from alm.fileio import atomic_link, cache_root, keep_most_recent
from alm.model.cache import KVCache
from alm.model.kernels import decode_attention_supports, ensure_kernels
from alm.sample.gemm_tuning import TUNING_VERSION, batched_gemm_tuning

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from alm.model.transformer import Transformer

# tokens [B], positions [B], key positions [n_keys], the cache's keys and values per layer -> logits [B, V]
CompiledStep = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list, list], torch.Tensor]

# tokens, positions, key positions and the cache of one call, for tracing
StepInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, KVCache]

# Freezing folds the weights into the graph so Inductor can pack them for its own GEMM kernels (which beat BLAS on
# the skinny matmuls of decoding: measured 1.7x at 8 rows), and max-autotune picks those kernels per shape,
# without printing its timing tables to the user's terminal.
CPU_COMPILE_OPTIONS = {
    "fx_graph_cache": False,  # blind to batched_gemm_tuning; built steps are kept by package_store instead
    "freezing": True,
    "max_autotune": True,
    "max_autotune_gemm_backends": "CPP,ATEN",
    "autotune_num_choices_displayed": 0,
    "max_autotune_report_choices_stats": False,
}
KEEP_PACKAGES = 4  # compiled steps kept on disk (a pico one is ~150 MB: the weights, as given and as packed)


class DecodeStep(torch.nn.Module):
    """What is compiled: one token for every row of the cache. The cache arrives as its tensors (inputs the step
    writes in place), and the key count as a tensor's length, so it can be a dynamic size rather than a constant.
    `decode_kernel`: attention by alm's native kernel (loaded by the caller: `alm.model.kernels`)."""

    def __init__(self, model: Transformer, decode_kernel: bool = False):
        super().__init__()
        self.model, self.decode_kernel = model, decode_kernel

    def forward(
        self, tokens, positions, key_positions: torch.Tensor, keys: list, values: list
    ) -> torch.Tensor:
        cache = KVCache.of(list(keys), list(values))
        n_keys = key_positions.shape[0]
        return self.model.decode_step(tokens, positions, cache, n_keys, decode_kernel=self.decode_kernel)


def export_step(
    model: Transformer, example: StepInputs, *, dynamic_keys: bool, decode_kernel: bool = False
) -> torch.export.ExportedProgram:
    """The step as an exported graph: every shape static (the batch is the decoder's slot count) except, with
    `dynamic_keys`, the number of keys read (at most the cache's length less its spare position)."""
    tokens, positions, key_positions, cache = example
    keys = {0: torch.export.Dim("n_keys", min=2, max=cache.max_len - 1)} if dynamic_keys else {}
    per_layer = [{}] * len(cache.keys)
    shapes = ({}, {}, keys, per_layer, per_layer)
    with torch.inference_mode():
        return torch.export.export(
            DecodeStep(model, decode_kernel),
            (tokens, positions, key_positions, cache.keys, cache.values),
            dynamic_shapes=shapes,
            strict=False,
        )


def compile_cpu_step(model: Transformer, example: StepInputs, *, dynamic_keys: bool) -> CompiledStep:
    """AOTInductor: export, then load the package built for the same graph and weights by an earlier process, or
    build it (in a temporary directory: the loader keeps its own copy of the library) and keep it for the next.
    Attention runs in alm's native decode kernel where it applies and builds; otherwise in Inductor's code."""
    decode_kernel = decode_kernel_for(model)
    program = export_step(model, example, dynamic_keys=dynamic_keys, decode_kernel=decode_kernel)
    store = package_store()
    kept = store / f"{package_key(program)}.pt2" if store is not None else None
    if kept is not None and kept.is_file():
        try:
            step = torch._inductor.aoti_load_package(str(kept), run_single_threaded=True)
        except Exception:  # truncated, or built by an incompatible toolchain: build it again
            with contextlib.suppress(OSError):
                kept.unlink()
        else:
            with contextlib.suppress(OSError):
                os.utime(kept)  # the most recently used is pruned last
            return _direct_call(step)
    from torch._inductor import config

    # Freezing is only honoured as global config, so the options are patched around the build.
    with (
        config.patch(CPU_COMPILE_OPTIONS),
        batched_gemm_tuning(),
        tempfile.TemporaryDirectory(prefix="alm-decode-") as tmp,
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", "TypedStorage is deprecated")  # raised inside Inductor's autotuner
        kept_note = "; kept for the next run of this model" if kept is not None else ""
        log.info(f"compiling the decode step (AOTInductor: about a minute{kept_note})")
        path = str(Path(tmp) / "step.pt2")  # a str: a Path fails the packager's own check
        package = torch._inductor.aoti_compile_and_package(program, package_path=path)
        if kept is not None:
            with contextlib.suppress(OSError):  # a full or read-only disk costs the next process a compile
                kept.parent.mkdir(parents=True, exist_ok=True)
                atomic_link(package, kept)
                keep_most_recent(kept.parent, "*.pt2", KEEP_PACKAGES)
        return _direct_call(torch._inductor.aoti_load_package(package, run_single_threaded=True))


def _direct_call(package) -> CompiledStep:
    """The package's runner, given the step's tensors in their flattened order: the package's own __call__
    parses its call spec and flattens the 19 inputs through pytree on every call (~0.1 ms of a 5 ms step)."""
    runner = getattr(getattr(package, "loader", None), "boxed_run", None)
    if runner is None:  # another torch's package class
        return package

    def step(tokens, positions, key_positions, keys: list, values: list) -> torch.Tensor:
        (logits,) = runner([tokens, positions, key_positions, *keys, *values])
        return logits

    return step


def decode_kernel_for(model: Transformer) -> bool:
    """Whether a CPU step of `model` calls alm's decode-attention kernel: where it applies (no build, ~10 s,
    for a model that would not call it) and where alm's kernels build or were kept (`ensure_kernels`; without
    them the step uses Inductor's attention: ~5% slower at B=1, ~10% at B=8)."""
    cfg = model.config
    dtype, alibi = next(model.parameters()).dtype, cfg.position == "alibi"
    return decode_attention_supports(cfg.head_dim, dtype, torch.device("cpu"), alibi) and ensure_kernels()


def package_store() -> Path | None:
    """Where compiled CPU steps are kept: cache_root()/decode-steps; None with ALM_CACHE_DIR=off."""
    root = cache_root()
    return root / "decode-steps" if root is not None else None


def package_key(program: torch.export.ExportedProgram) -> str:
    """A digest of what the built library depends on: the graph (so the model's code and every shape), each
    weight's bytes, Inductor's whole configuration as the build will see it (the options, and any a caller set,
    such as kernel profiling), the torch version, the CPU's vector ISA and the thread count the kernels are for."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    with config.patch(CPU_COMPILE_OPTIONS):
        options = config.save_config_portable()
    # The first build in a process writes its device and ISA here: left in, the key would change after it.
    options.pop("aot_inductor.metadata", None)
    machine = [TUNING_VERSION, torch.__version__, str(pick_vec_isa()), str(torch.get_num_threads())]
    inputs = [str(node.meta.get("val")) for node in program.graph.nodes if node.op == "placeholder"]
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        "\n".join([*machine, repr(sorted(options.items())), program.graph_module.code, *inputs]).encode()
    )
    for name, tensor in sorted({**program.state_dict, **program.constants}.items()):
        if isinstance(tensor, torch.Tensor):
            digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def compile_cuda_step(model: Transformer, cache: KVCache) -> CompiledStep:
    """torch.compile with CUDA graphs ("reduce-overhead"): every shape static (attention reads the whole cache),
    the cache's tensors at static addresses. Graphs are captured on the first calls."""
    for tensor in (*cache.keys, *cache.values):
        torch._dynamo.mark_static_address(tensor)
    graph = torch.compile(DecodeStep(model), mode="reduce-overhead", dynamic=False)
    warm = False
    log.info("compiling the decode step (torch.compile with CUDA graphs: up to a minute)")

    def step(tokens, positions, key_positions, keys, values) -> torch.Tensor:
        nonlocal warm
        torch.compiler.cudagraph_mark_step_begin()
        # Every call passes the same tensors: once one has run, Dynamo's per-call guard checks decide nothing.
        with torch.compiler.set_stance(skip_guard_eval_unsafe=warm):  # reset on exit
            logits = graph(tokens, positions, key_positions, keys, values)
        warm = True
        return logits

    return step
