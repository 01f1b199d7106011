"""Decode-speed benchmark: our KV-cached generator vs full recompute and vs transformers' `generate()`.

All three decode greedily from the same random-weight model (weights copied into `LlamaForCausalLM` through
`alm.model.hf` for the HF side), measured in the same process, best of `repeats` after a warm-up. The greedy
token sequences are compared as a sanity check that the three really compute the same model.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from alm.sample import SamplingConfig, generate_tokens

TARGET_VS_RECOMPUTE = 5.0
TARGET_VS_HF = 1.5


@dataclass
class Timing:
    """Best wall-clock and best process-CPU time of one decoder over the rounds.

    CPU time leaves out the time the OS gave our core to other processes, so on a shared machine with one
    torch thread it is the steadier estimate of the uncontended speed (with more threads it also counts the
    threads' spinning, so prefer wall time then, and on GPUs always)."""

    name: str
    seconds: float
    cpu_seconds: float
    tokens: list[int]

    @property
    def tok_per_s(self) -> float:
        return len(self.tokens) / self.seconds

    @property
    def tok_per_cpu_s(self) -> float:
        return len(self.tokens) / self.cpu_seconds


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
    cached: Timing
    recompute: Timing
    hf: Timing | None

    @property
    def vs_recompute(self) -> float:
        return self.cached.tok_per_s / self.recompute.tok_per_s

    @property
    def vs_hf(self) -> float | None:
        return None if self.hf is None else self.cached.tok_per_s / self.hf.tok_per_s

    @property
    def vs_recompute_cpu(self) -> float:
        return self.cached.tok_per_cpu_s / self.recompute.tok_per_cpu_s

    @property
    def vs_hf_cpu(self) -> float | None:
        return None if self.hf is None else self.cached.tok_per_cpu_s / self.hf.tok_per_cpu_s

    def agreement(self, other: Timing) -> int:
        """Leading tokens on which `other`'s greedy output equals ours."""
        n = 0
        for a, b in zip(self.cached.tokens, other.tokens, strict=False):
            if a != b:
                break
            n += 1
        return n

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("cached", "recompute", "hf")}
        for timing in (self.cached, self.recompute, self.hf):
            if timing is not None:
                out[f"{timing.name}_tok_per_s"] = timing.tok_per_s
                out[f"{timing.name}_tok_per_cpu_s"] = timing.tok_per_cpu_s
                out[f"{timing.name}_agree_tokens"] = self.agreement(timing)
        out["vs_recompute"] = self.vs_recompute
        out["vs_hf"] = self.vs_hf
        out["vs_recompute_cpu"] = self.vs_recompute_cpu
        out["vs_hf_cpu"] = self.vs_hf_cpu
        return out


WARMUP_TOKENS = 8


def _interleaved_best(
    contenders: dict[str, Callable[[int], list[int]]], new_tokens: int, repeats: int, device: torch.device
) -> dict[str, Timing]:
    """Best time of each contender decoding `new_tokens` over `repeats` rounds, taking turns within each round
    (so other processes' load spreads over all of them), after a short warm-up each (allocator, kernels)."""
    from alm.device import synchronize

    for run in contenders.values():
        run(min(WARMUP_TOKENS, new_tokens))
    best = {name: Timing(name, float("inf"), float("inf"), []) for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            tokens = run(new_tokens)
            synchronize(device)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            timing = best[name]
            best[name] = Timing(
                name, min(seconds, timing.seconds), min(cpu_seconds, timing.cpu_seconds), tokens
            )
    return best


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
    return hf_model.to(device).eval()


def run_sample_bench(
    model_cfg,
    *,
    preset: str,
    device: torch.device,
    new_tokens: int = 256,
    prompt_tokens: int = 16,
    repeats: int = 3,
    with_hf: bool = True,
    seed: int = 0,
) -> SampleBenchResult:
    """Time greedy decoding of `new_tokens` after a random `prompt_tokens` prompt, three ways."""
    from alm.model import Transformer

    # The whole sequence must fit the context so that all three decode the same thing (no window sliding).
    max_seq_len = max(model_cfg.max_seq_len, prompt_tokens + new_tokens)
    model_cfg = dataclasses.replace(model_cfg, max_seq_len=max_seq_len)
    torch.manual_seed(seed)
    model = Transformer(model_cfg).to(device).eval()
    prompt = torch.randint(0, model_cfg.vocab_size, (1, prompt_tokens), device=device)
    prompt_ids = prompt[0].tolist()

    def cached(n: int) -> list[int]:
        greedy = SamplingConfig(greedy=True, max_new_tokens=n)
        return list(generate_tokens(model, prompt_ids, greedy, device=device))

    contenders: dict[str, Callable[[int], list[int]]] = {
        "cached": cached,
        "recompute": lambda n: _recompute_greedy(model, prompt, n),
    }
    transformers_version = None
    if with_hf:
        import transformers

        transformers_version = transformers.__version__
        hf_model = build_hf_model(model, device)
        contenders["hf"] = lambda n: _hf_greedy(hf_model, prompt, n)
    timings = _interleaved_best(contenders, new_tokens, repeats, device)

    return SampleBenchResult(
        device=_describe_device(device),
        torch_version=torch.__version__,
        transformers_version=transformers_version,
        threads=torch.get_num_threads(),
        preset=preset,
        params=model.num_params(),
        max_seq_len=max_seq_len,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        cached=timings["cached"],
        recompute=timings["recompute"],
        hf=timings.get("hf"),
    )


def profile_cached_decode(
    model_cfg, *, device: torch.device, new_tokens: int = 64, row_limit: int = 15
) -> str:
    """Where the time of cached decoding goes: torch.profiler's table of the most expensive ops."""
    from torch.profiler import ProfilerActivity, profile

    from alm.model import Transformer

    model_cfg = dataclasses.replace(model_cfg, max_seq_len=max(model_cfg.max_seq_len, 16 + new_tokens))
    torch.manual_seed(0)
    model = Transformer(model_cfg).to(device).eval()
    prompt_ids = torch.randint(0, model_cfg.vocab_size, (16,)).tolist()
    greedy = SamplingConfig(greedy=True, max_new_tokens=new_tokens)
    list(generate_tokens(model, prompt_ids, greedy, device=device))  # warm-up
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        list(generate_tokens(model, prompt_ids, greedy, device=device))
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


def _describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return f"mps ({platform.machine()} {platform.mac_ver()[0]})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


__all__ = [
    "TARGET_VS_HF",
    "TARGET_VS_RECOMPUTE",
    "SampleBenchResult",
    "Timing",
    "build_hf_model",
    "profile_cached_decode",
    "run_sample_bench",
]
