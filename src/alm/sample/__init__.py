"""Sampling: the options, logit processors, streaming text, and the batched generation engine.

    options     SamplingConfig and the one spec of its options (no torch)
    processors  logit processors and the token draw
    text        UTF-8-safe streaming decoder, stop strings, prompt check (no torch)
    decoder     sequence slots over a static KV cache; the compiled one-token step
    engine      continuous batching: sequences join and leave between steps
    stream      generate / generate_tokens / generate_many iterators over the engine

Names are imported on first use, so `alm.sample.options` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alm.sample.decoder import CompileMode, Decoder
    from alm.sample.engine import (
        CancelHook,
        Engine,
        Event,
        GenerationInfo,
        GenSequence,
        StopReason,
        fit_prompt,
        slide_keep,
    )
    from alm.sample.options import SamplingConfig
    from alm.sample.processors import (
        apply_min_p,
        apply_repetition_penalty,
        apply_temperature,
        apply_top_k,
        apply_top_p,
        make_generator,
        presence_mask,
        process_logits,
        sample_token,
    )
    from alm.sample.stream import BatchStream, TextStream, generate, generate_many, generate_tokens
    from alm.sample.text import StopMatcher, StreamDecoder, check_text

_HOME = {
    "alm.sample.decoder": ("CompileMode", "Decoder"),
    "alm.sample.engine": (
        "CancelHook",
        "Engine",
        "Event",
        "GenerationInfo",
        "GenSequence",
        "StopReason",
        "fit_prompt",
        "slide_keep",
    ),
    "alm.sample.options": ("SamplingConfig",),
    "alm.sample.processors": (
        "apply_min_p",
        "apply_repetition_penalty",
        "apply_temperature",
        "apply_top_k",
        "apply_top_p",
        "make_generator",
        "presence_mask",
        "process_logits",
        "sample_token",
    ),
    "alm.sample.stream": ("BatchStream", "TextStream", "generate", "generate_many", "generate_tokens"),
    "alm.sample.text": ("StopMatcher", "StreamDecoder", "check_text"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'alm.sample' has no attribute {name!r}")


__all__ = [
    "BatchStream",
    "CancelHook",
    "CompileMode",
    "Decoder",
    "Engine",
    "Event",
    "GenSequence",
    "GenerationInfo",
    "SamplingConfig",
    "StopMatcher",
    "StopReason",
    "StreamDecoder",
    "TextStream",
    "apply_min_p",
    "apply_repetition_penalty",
    "apply_temperature",
    "apply_top_k",
    "apply_top_p",
    "check_text",
    "fit_prompt",
    "generate",
    "generate_many",
    "generate_tokens",
    "make_generator",
    "presence_mask",
    "process_logits",
    "sample_token",
    "slide_keep",
]
