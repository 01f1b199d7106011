"""Decode-speed benchmark: alm's engine (eager and compiled) against the memory-bandwidth roofline, full
recompute, transformers' `generate()` and, when `llama_cpp` is importable, llama.cpp on a GGUF of the same weights;
plus batched decoding's aggregate speed at B=8 against B=1.

Everyone decodes greedily from the same model (random weights from a preset, or a trained run's), in the same
process, best of `repeats` rounds taken in turns after a warm-up. The greedy token sequences are compared as a
check that they all compute the same model. The machine's memory bandwidth is measured in the same run: a decode
step reads every weight once, so `bandwidth ÷ bytes per token` bounds tok/s.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from alm.bench.bandwidth import Bandwidth, decode_bytes_per_token, measure_bandwidth
from alm.sample import Engine, SamplingConfig

if TYPE_CHECKING:
    from alm.model import ModelConfig
    from alm.model.transformer import Transformer

TARGET_VS_RECOMPUTE = 5.0
TARGET_VS_HF = 1.5
TARGET_VS_LLAMA_CPP = 1.0
TARGET_ROOFLINE = 0.8
TARGET_BATCH_SPEEDUP = 4.0  # aggregate tok/s at B=8 over B=1
BATCH = 8
WARMUP_TOKENS = 8

Progress = Callable[[str], None]


@dataclass
class Timing:
    """Best wall-clock and best process-CPU time of one decoder over the rounds.

    CPU time leaves out the time the OS gave our core to other processes, so on a shared machine with one
    torch thread it is the steadier estimate of the uncontended speed (with more threads it also counts the
    threads' spinning, so prefer wall time then, and on GPUs always)."""

    name: str
    seconds: float
    cpu_seconds: float
    tokens: list[int]  # the first sequence's tokens (for batches: of row 0)
    sequences: int = 1

    @property
    def tok_per_s(self) -> float:
        return self.sequences * len(self.tokens) / self.seconds

    @property
    def tok_per_cpu_s(self) -> float:
        return self.sequences * len(self.tokens) / self.cpu_seconds


@dataclass
class SampleBenchResult:
    device: str
    torch_version: str
    transformers_version: str | None
    threads: int
    preset: str
    params: int
    max_seq_len: int
    prompt_tokens: int
    new_tokens: int
    bandwidth: Bandwidth
    bytes_per_token: int  # at the average context of the run
    cached: Timing  # alm, eager
    recompute: Timing
    compiled: Timing | None = None  # alm, torch.compile
    hf: Timing | None = None
    llama_cpp: Timing | None = None
    batched: Timing | None = None  # alm (its fastest mode) at B=BATCH
    int8: Timing | None = None  # alm with int8 weights (`--quantize int8`), compiled when `compiled` ran
    int8_kernel: str | None = None  # which int8 matmul ran (alm.model.quant's Kernel)
    int8_compiled: bool = False  # whether the int8 model's step was compiled (else it decoded eagerly)
    llama_cpp_q8_0: Timing | None = None  # llama.cpp on a q8_0 GGUF of the same weights: int8's peer
    compile_seconds: float | None = None
    compile_note: str = ""
    skipped: dict[str, str] = field(default_factory=dict)  # peer -> why it was not measured

    @property
    def best(self) -> Timing:
        """alm's fastest single-sequence decoder (compiled when it ran)."""
        return self.compiled or self.cached

    @property
    def roofline_tok_s(self) -> float:
        return self.bandwidth.roofline_tok_s(self.bytes_per_token)

    @property
    def roofline_fraction(self) -> float:
        return self.best.tok_per_s / self.roofline_tok_s

    def ratio(self, other: Timing | None, cpu: bool = False) -> float | None:
        """alm's best over `other`, in tok/s (or tok per CPU-second)."""
        if other is None:
            return None
        if cpu:
            return self.best.tok_per_cpu_s / other.tok_per_cpu_s
        return self.best.tok_per_s / other.tok_per_s

    @property
    def vs_recompute(self) -> float:
        return self.cached.tok_per_s / self.recompute.tok_per_s

    @property
    def vs_recompute_cpu(self) -> float:
        return self.cached.tok_per_cpu_s / self.recompute.tok_per_cpu_s

    @property
    def vs_hf(self) -> float | None:
        return self.ratio(self.hf)

    @property
    def vs_hf_cpu(self) -> float | None:
        return self.ratio(self.hf, cpu=True)

    @property
    def batch_speedup(self) -> float | None:
        return None if self.batched is None else self.batched.tok_per_s / self.best.tok_per_s

    @property
    def int8_baseline(self) -> Timing:
        """The fp32 decoder int8 is compared with: the one decoding the same way (compiled or eager)."""
        return self.compiled if self.int8_compiled and self.compiled is not None else self.cached

    @property
    def int8_speedup(self) -> float | None:
        return None if self.int8 is None else self.int8.tok_per_s / self.int8_baseline.tok_per_s

    @property
    def int8_speedup_cpu(self) -> float | None:
        return None if self.int8 is None else self.int8.tok_per_cpu_s / self.int8_baseline.tok_per_cpu_s

    @property
    def int8_vs_llama_cpp_q8_0(self) -> float | None:
        if self.int8 is None or self.llama_cpp_q8_0 is None:
            return None
        return self.int8.tok_per_s / self.llama_cpp_q8_0.tok_per_s

    def agreement(self, other: Timing) -> int:
        """Leading tokens on which `other`'s greedy output equals alm's eager one."""
        n = 0
        for a, b in zip(self.cached.tokens, other.tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def timings(self) -> list[Timing]:
        found = (self.cached, self.compiled, self.recompute, self.hf, self.llama_cpp, self.batched)
        return [t for t in (*found, self.int8, self.llama_cpp_q8_0) if t is not None]

    def to_dict(self) -> dict[str, Any]:
        timings = ("cached", "recompute", "compiled", "hf", "llama_cpp", "batched", "int8", "llama_cpp_q8_0")
        skip = {*timings, "bandwidth"}  # written below as figures
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        out["bandwidth_read_gb_s"] = self.bandwidth.read_gb_s
        out["bandwidth_copy_gb_s"] = self.bandwidth.copy_gb_s
        for timing in self.timings():
            out[f"{timing.name}_tok_per_s"] = timing.tok_per_s
            out[f"{timing.name}_tok_per_cpu_s"] = timing.tok_per_cpu_s
            out[f"{timing.name}_agree_tokens"] = self.agreement(timing)
        out["roofline_tok_s"] = self.roofline_tok_s
        out["roofline_fraction"] = self.roofline_fraction
        out["vs_recompute"] = self.vs_recompute
        out["vs_recompute_cpu"] = self.vs_recompute_cpu
        out["vs_hf"] = self.vs_hf
        out["vs_hf_cpu"] = self.vs_hf_cpu
        out["vs_llama_cpp"] = self.ratio(self.llama_cpp)
        out["vs_llama_cpp_cpu"] = self.ratio(self.llama_cpp, cpu=True)
        out["batch_speedup"] = self.batch_speedup
        out["int8_speedup"] = self.int8_speedup
        out["int8_speedup_cpu"] = self.int8_speedup_cpu
        out["int8_vs_llama_cpp_q8_0"] = self.int8_vs_llama_cpp_q8_0
        return out


# -- the contenders --------------------------------------------------------------------------------------------


class EngineDecoder:
    """alm's engine decoding `rows` greedy sequences (from `prompts`) to completion; returns row 0's tokens."""

    def __init__(self, model: Transformer, prompts: list[list[int]], device: torch.device, compile: bool):
        self.engine = Engine(model, device=device, slots=len(prompts), compile="on" if compile else "off")
        self.prompts = prompts

    def __call__(self, n: int) -> list[int]:
        greedy = SamplingConfig(greedy=True, max_new_tokens=n)
        sequences = [self.engine.submit(p, greedy) for p in self.prompts]
        while self.engine.busy:
            self.engine.step()
        return sequences[0].tokens


@torch.inference_mode()
def _recompute_greedy(model, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    """The cache-free baseline: a full forward over the whole sequence for every new token."""
    idx = prompt
    out = []
    for _ in range(new_tokens):
        next_id = model(idx, logits_to_keep=1).logits[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_id], dim=1)
        out.append(next_id)
    return [int(t) for t in torch.cat(out, dim=1)[0].tolist()]


@torch.inference_mode()
def _hf_greedy(hf_model, prompt: torch.Tensor, new_tokens: int) -> list[int]:
    out = hf_model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, prompt.shape[1] :].tolist()


def build_hf_model(model, device: torch.device):
    """`LlamaForCausalLM` holding exactly `model`'s weights (through alm.model.hf)."""
    from transformers import LlamaForCausalLM

    from alm.model.hf import hf_llama_config, to_hf_llama_state_dict

    hf_model = LlamaForCausalLM(hf_llama_config(model.config))
    hf_model.load_state_dict(to_hf_llama_state_dict(model), strict=False)  # rotary buffers are not weights
    return cast(torch.nn.Module, hf_model).to(device).eval()


def llama_cpp_decoder(gguf: Path, prompt_ids: list[int], n_ctx: int) -> Callable[[int], list[int]]:
    """llama.cpp (llama-cpp-python) decoding greedily from `gguf`, with torch's thread count. ImportError when
    `llama_cpp` is not installed."""
    import llama_cpp  # pyright: ignore[reportMissingImports]  (optional: `make test-interop` installs it)

    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=n_ctx, n_threads=torch.get_num_threads(), n_batch=512, verbose=False
    )

    def run(n: int) -> list[int]:
        llm.reset()
        out = []
        for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if len(out) == n:
                break
        return out

    return run


def export_gguf(checkpoint: Path, directory: Path, quantize: str | None = None) -> Path:
    """An fp32 (or `quantize`: q8_0) GGUF of a run's checkpoint, written by `alm export`'s exporter (the hook
    llama.cpp is fed by)."""
    from alm.interop.gguf_export import write_gguf_file
    from alm.interop.source import load_export_source

    path = directory / f"bench-{quantize or 'fp32'}.gguf"
    write_gguf_file(load_export_source(checkpoint), path, dtype="fp32", quantize=quantize, license="other")
    return path


# -- the run -----------------------------------------------------------------------------------------------------


def _interleaved_best(
    contenders: dict[str, Callable[[int], list[int]]],
    new_tokens: int,
    repeats: int,
    device: torch.device,
    progress: Progress,
    sequences: dict[str, int],
) -> dict[str, Timing]:
    """Best time of each contender decoding `new_tokens` over `repeats` rounds, taking turns within each round
    (so other processes' load spreads over all of them), after a short warm-up each (allocator, kernels)."""
    from alm.device import synchronize

    best = {name: Timing(name, float("inf"), float("inf"), [], sequences.get(name, 1)) for name in contenders}
    for r in range(repeats):
        for name, run in contenders.items():
            progress(f"round {r + 1}/{repeats}: {name}")
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            tokens = run(new_tokens)
            synchronize(device)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            was = best[name]
            best[name] = Timing(
                name, min(seconds, was.seconds), min(cpu_seconds, was.cpu_seconds), tokens, was.sequences
            )
    return best


def run_sample_bench(
    model_cfg: ModelConfig | None = None,
    *,
    preset: str,
    device: torch.device,
    new_tokens: int = 256,
    prompt_tokens: int = 16,
    repeats: int = 3,
    with_hf: bool = True,
    compile: bool = False,
    batch: bool = True,
    int8: bool = False,
    model: Transformer | None = None,
    gguf: Path | None = None,
    checkpoint: Path | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> SampleBenchResult:
    """Time greedy decoding of `new_tokens` after a random `prompt_tokens` prompt. The model is `model` (a
    trained one, from `checkpoint`) or a random one built from `model_cfg`, whose context is widened to fit.
    `int8`: also a copy with int8 weights (`alm.model.quant`), decoding as the fp32 model's fastest single
    sequence does (compiled when `compile` built a step, else eagerly)."""
    from alm.model import Transformer

    say = progress or (lambda _: None)
    skipped: dict[str, str] = {}
    if model is None:
        assert model_cfg is not None, "a model or a model config"
        max_seq_len = max(model_cfg.max_seq_len, prompt_tokens + new_tokens)
        model_cfg = dataclasses.replace(model_cfg, max_seq_len=max_seq_len)
        torch.manual_seed(seed)
        model = Transformer(model_cfg).to(device).eval()
    cfg = model.config
    if prompt_tokens + new_tokens > cfg.max_seq_len:
        from alm.errors import UsageError

        raise UsageError(
            f"{prompt_tokens} + {new_tokens} tokens exceed the model's context ({cfg.max_seq_len})",
            hint="lower --new-tokens / --prompt-tokens",
        )
    generator = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, cfg.require_vocab(), (BATCH, prompt_tokens), generator=generator).tolist()
    prompt = torch.tensor(prompts[:1], device=device)

    say("measuring memory bandwidth")
    bandwidth = measure_bandwidth(device)
    contenders: dict[str, Callable[[int], list[int]]] = {
        "cached": EngineDecoder(model, prompts[:1], device, compile=False),
        "recompute": lambda n: _recompute_greedy(model, prompt, n),
    }
    compile_seconds, compile_note = None, ""
    if compile:
        say("compiling the decode step (a minute or more on a CPU, unless an earlier run kept it)")
        compiled = EngineDecoder(model, prompts[:1], device, compile=True)
        start = time.perf_counter()
        compiled(WARMUP_TOKENS)
        compile_seconds = time.perf_counter() - start
        if compiled.engine.decoder.compiled:
            contenders["compiled"] = compiled
        else:
            compile_note = compiled.engine.decoder.compile_note
            skipped["compiled"] = compile_note
    transformers_version = None
    if with_hf:
        import transformers

        transformers_version = transformers.__version__
        hf_model = build_hf_model(model, device)
        contenders["hf"] = lambda n: _hf_greedy(hf_model, prompt, n)
    if gguf is None and checkpoint is not None and _has_llama_cpp():
        import tempfile

        gguf = export_gguf(checkpoint, Path(tempfile.mkdtemp(prefix="alm-bench-")))
    if not _has_llama_cpp():
        skipped["llama_cpp"] = "llama_cpp is not importable (pip install llama-cpp-python)"
    elif gguf is None:
        skipped["llama_cpp"] = "needs the GGUF of the same weights: --run RUN, or --gguf FILE"
    else:
        contenders["llama_cpp"] = llama_cpp_decoder(gguf, prompts[0], cfg.max_seq_len)
    sequences = {}
    if batch:
        best_mode = "compiled" in contenders
        contenders["batched"] = EngineDecoder(model, prompts, device, compile=best_mode)
        sequences["batched"] = BATCH
    int8_kernel = None
    if int8:
        from alm.model.quant import Int8Linear, quantize

        say("quantising a copy of the weights to int8")
        quantized = copy.deepcopy(model)
        quantize(quantized, "int8")
        int8_kernel = next((m.kernel for m in quantized.modules() if isinstance(m, Int8Linear)), None)
        contenders["int8"] = EngineDecoder(quantized, prompts[:1], device, compile="compiled" in contenders)
        if not _has_llama_cpp():
            skipped["llama_cpp_q8_0"] = skipped["llama_cpp"]
        elif checkpoint is None:
            skipped["llama_cpp_q8_0"] = "needs a q8_0 GGUF of the same weights: --run RUN"
        else:
            import tempfile

            q8_0 = export_gguf(checkpoint, Path(tempfile.mkdtemp(prefix="alm-bench-")), quantize="q8_0")
            contenders["llama_cpp_q8_0"] = llama_cpp_decoder(q8_0, prompts[0], cfg.max_seq_len)
    for name, run in contenders.items():
        if name != "compiled":  # the compiled step is warm already
            say(f"warming up {name}")
            run(min(WARMUP_TOKENS, new_tokens))
    timings = _interleaved_best(contenders, new_tokens, repeats, device, say, sequences)

    return SampleBenchResult(
        device=describe_device(device),
        torch_version=torch.__version__,
        transformers_version=transformers_version,
        threads=torch.get_num_threads(),
        preset=preset,
        params=model.num_params(),
        max_seq_len=cfg.max_seq_len,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        bandwidth=bandwidth,
        bytes_per_token=decode_bytes_per_token(model, prompt_tokens + new_tokens // 2),
        cached=timings["cached"],
        recompute=timings["recompute"],
        compiled=timings.get("compiled"),
        hf=timings.get("hf"),
        llama_cpp=timings.get("llama_cpp"),
        batched=timings.get("batched"),
        int8=timings.get("int8"),
        int8_kernel=int8_kernel,
        int8_compiled=int8 and cast(EngineDecoder, contenders["int8"]).engine.decoder.compiled,
        llama_cpp_q8_0=timings.get("llama_cpp_q8_0"),
        compile_seconds=compile_seconds,
        compile_note=compile_note,
        skipped=skipped,
    )


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def profile_decode(
    model_cfg: ModelConfig,
    *,
    device: torch.device,
    new_tokens: int = 64,
    compile: bool = False,
    rows: int = 1,
    row_limit: int = 15,
) -> str:
    """Where the time of decoding `rows` sequences at once goes: torch.profiler's table of the most expensive ops
    (with compile, the compiled graph's own kernels are listed too)."""
    from torch.profiler import ProfilerActivity, profile

    from alm.model import Transformer

    model_cfg = dataclasses.replace(model_cfg, max_seq_len=max(model_cfg.max_seq_len, 16 + new_tokens))
    torch.manual_seed(0)
    model = Transformer(model_cfg).to(device).eval()
    prompts = torch.randint(0, model_cfg.require_vocab(), (rows, 16)).tolist()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    from torch._inductor import config as inductor_config

    with inductor_config.patch({"cpp.enable_kernel_profile": True}):  # compiled kernels appear by name
        decode = EngineDecoder(model, prompts, device, compile=compile)
        decode(new_tokens)  # warm-up (and compilation)
        with profile(activities=activities) as prof:
            decode(new_tokens)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"mps ({platform.machine()} {platform.mac_ver()[0]})"
    # The vector ISA torch's kernels use (AVX2, AVX512, ...): decode figures differ by it at one bandwidth.
    isa = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({platform.processor() or platform.machine()} {isa}, {torch.get_num_threads()} threads)"


__all__ = [
    "BATCH",
    "TARGET_BATCH_SPEEDUP",
    "TARGET_ROOFLINE",
    "TARGET_VS_HF",
    "TARGET_VS_LLAMA_CPP",
    "TARGET_VS_RECOMPUTE",
    "EngineDecoder",
    "SampleBenchResult",
    "Timing",
    "build_hf_model",
    "export_gguf",
    "llama_cpp_decoder",
    "profile_decode",
    "run_sample_bench",
]
