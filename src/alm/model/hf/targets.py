"""Which transformers architecture expresses an alm `ModelConfig` exactly, and a refusal naming why not.

A mapping is offered only where the HF model computes the same function (to float rounding): same norm, same
position scheme, same FFN activation. Everything else is refused up front, before any file is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alm.errors import UsageError
from alm.model.config import ModelConfig

TargetName = Literal["llama", "gpt2"]


@dataclass(frozen=True)
class HFTarget:
    name: TargetName
    label: str  # for messages
    architecture: str  # the transformers class, as written into config.json
    settings: dict[str, str]  # ModelConfig fields that must have these values
    mha_only: bool  # no grouped-query attention
    summary: str  # what it supports, for refusals

    def mismatches(self, cfg: ModelConfig) -> list[str]:
        """`key=value` of each setting of `cfg` this target cannot express, in a stable order."""
        found = [f"{key}={getattr(cfg, key)!r}" for key, v in self.settings.items() if getattr(cfg, key) != v]
        if self.mha_only and cfg.kv_heads != cfg.n_heads:
            found.append(f"n_kv_heads={cfg.n_kv_heads!r}")
        return found

    def require(self, cfg: ModelConfig) -> None:
        """Raise UsageError naming the first setting of `cfg` this target cannot express."""
        found = self.mismatches(cfg)
        if found:
            raise UsageError(f"model.{found[0]} has no {self.label} equivalent", hint=self.summary)


LLAMA = HFTarget(
    "llama",
    "Llama",
    "LlamaForCausalLM",
    {"norm": "rmsnorm", "norm_position": "pre", "position": "rope", "ffn": "swiglu"},
    mha_only=False,
    summary="LlamaForCausalLM: rmsnorm, pre-norm, rope, swiglu; MHA/GQA/MQA; tied or untied; bias on or off",
)
GPT2 = HFTarget(
    "gpt2",
    "GPT-2",
    "GPT2LMHeadModel",
    {"norm": "layernorm", "norm_position": "pre", "position": "learned", "ffn": "gelu"},
    mha_only=True,
    summary="GPT2LMHeadModel: layernorm, pre-norm, learned positions, gelu (tanh); MHA only; tied or untied",
)
TARGETS: tuple[HFTarget, ...] = (LLAMA, GPT2)

# Settings that look mappable but are not, and why (shown with the refusal).
_WHY_NOT = {
    "position='alibi'": "transformers' ALiBi model MptForCausalLM computes exact (erf) GELU in a bias-free "
    "4·d_model MLP, while alm's gelu FFN is GPT-2's tanh approximation, so no alm ALiBi model maps exactly",
    "position='nope'": "no transformers causal LM runs without position information",
    "norm_position='post'": "transformers' decoder-only models are pre-norm",
    "norm='none'": "every transformers decoder normalises its residual stream",
    "ffn='dual'": "the routed dual FFN has no transformers equivalent",
}


def supported_targets() -> str:
    return "; ".join(t.summary for t in TARGETS)


def hf_target(cfg: ModelConfig) -> HFTarget:
    """The transformers architecture that computes exactly what `cfg` does, or a UsageError naming the
    setting that has none (judged against the closest target) and listing what each target supports."""
    ranked = sorted(TARGETS, key=lambda t: len(t.mismatches(cfg)))
    best = ranked[0]
    found = best.mismatches(cfg)
    if not found:
        return best
    first = found[0]
    why = f" ({_WHY_NOT[first]})" if first in _WHY_NOT else ""
    raise UsageError(
        f"model.{first} has no Hugging Face equivalent{why}",
        hint=f"exportable architectures: {supported_targets()}",
    )


__all__ = ["GPT2", "LLAMA", "TARGETS", "HFTarget", "TargetName", "hf_target", "supported_targets"]
