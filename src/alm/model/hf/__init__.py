"""Conversion between alm's `Transformer` and transformers' causal LMs (weights and config.json), both ways.

Targets (`alm.model.hf.targets`): `LlamaForCausalLM` and `GPT2LMHeadModel`, each only where it computes the same
function; every other setting is refused by name. Exporting and importing files needs only the plain dicts and
tensors here; transformers itself is imported by `to_hf`/`from_hf`/`hf_llama_config` alone (a dev extra).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from alm.errors import UsageError
from alm.model.config import ModelConfig
from alm.model.hf.common import config_as_dict
from alm.model.hf.gpt2 import (
    canonical_gpt2_checkpoint,
    from_hf_gpt2_state_dict,
    gpt2_config_dict,
    model_config_from_gpt2,
    to_hf_gpt2_state_dict,
)
from alm.model.hf.llama import (
    check_llama_compatible,
    from_hf_llama_state_dict,
    hf_llama_config,
    llama_config_dict,
    model_config_from_llama,
    to_hf_llama_state_dict,
)
from alm.model.hf.targets import TARGETS, HFTarget, hf_target, supported_targets

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from alm.model.transformer import Transformer

StateDict = dict[str, torch.Tensor]

_CONFIG: dict[str, Callable[[ModelConfig], dict[str, Any]]] = {
    "llama": llama_config_dict,
    "gpt2": gpt2_config_dict,
}
_TO_HF: dict[str, Callable[[Transformer], StateDict]] = {
    "llama": to_hf_llama_state_dict,
    "gpt2": to_hf_gpt2_state_dict,
}
_FROM_HF: dict[str, Callable[[Mapping[str, torch.Tensor], ModelConfig], StateDict]] = {
    "llama": from_hf_llama_state_dict,
    "gpt2": from_hf_gpt2_state_dict,
}
_FROM_CONFIG: dict[str, Callable[[Any], ModelConfig]] = {
    "llama": model_config_from_llama,
    "gpt2": model_config_from_gpt2,
}


def hf_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """config.json (architecture only; the caller adds token ids and dtype) for the target `cfg` maps to."""
    return _CONFIG[hf_target(cfg).name](cfg)


def to_hf_state_dict(model: Transformer) -> StateDict:
    """`model`'s weights under its HF target's names (views where possible; `lm_head.weight` always present)."""
    return _TO_HF[hf_target(model.config).name](model)


def hf_checkpoint(model: Transformer) -> StateDict:
    """What model.safetensors holds: the HF names with a tied head left out (transformers ties it again from
    the embedding on load); a tied GPT-2 in GPT-2's canonical checkpoint layout, which mlx-lm also reads."""
    state = to_hf_state_dict(model)
    if not model.config.tie_embeddings:
        return state
    del state["lm_head.weight"]
    return canonical_gpt2_checkpoint(state) if hf_target(model.config).name == "gpt2" else state


def from_hf_state_dict(state_dict: Mapping[str, torch.Tensor], cfg: ModelConfig) -> StateDict:
    """An HF state dict renamed for `Transformer(cfg).load_state_dict(...)` (`cfg` from `model_config_from_hf`)."""
    return _FROM_HF[hf_target(cfg).name](state_dict, cfg)


def model_config_from_hf(config: Any) -> ModelConfig:
    """Our `ModelConfig` for a config.json (dict or `PretrainedConfig`) of a supported `model_type`."""
    hf = config_as_dict(config)
    model_type = hf.get("model_type")
    if model_type not in _FROM_CONFIG:
        raise UsageError(
            f"config.json model_type={model_type!r} is not an architecture alm can express",
            hint=f"alm imports {', '.join(sorted(_FROM_CONFIG))} ({supported_targets()})",
        )
    return _FROM_CONFIG[model_type](hf)


def to_hf(model: Transformer) -> PreTrainedModel:
    """A transformers causal LM carrying our weights (same device and dtype, same train/eval mode)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    values = hf_config_dict(model.config)
    config = AutoConfig.for_model(values.pop("model_type"), **values)
    weight = model.tok_emb.weight
    with torch.device(weight.device):
        hf_model = AutoModelForCausalLM.from_config(config).to(weight.dtype)
    hf_model.load_state_dict(to_hf_state_dict(model))
    return hf_model.train(model.training)


def from_hf(hf_model: PreTrainedModel) -> Transformer:
    """Our Transformer with the weights of a transformers causal LM (same device and dtype)."""
    from alm.model.transformer import Transformer

    cfg = model_config_from_hf(hf_model.config)
    with torch.device(hf_model.device):
        model = Transformer(cfg).to(hf_model.dtype)
    model.load_state_dict(from_hf_state_dict(hf_model.state_dict(), cfg))
    return model


__all__ = [
    "TARGETS",
    "HFTarget",
    "check_llama_compatible",
    "from_hf",
    "from_hf_llama_state_dict",
    "from_hf_state_dict",
    "hf_checkpoint",
    "hf_config_dict",
    "hf_llama_config",
    "hf_target",
    "model_config_from_hf",
    "supported_targets",
    "to_hf",
    "to_hf_llama_state_dict",
    "to_hf_state_dict",
]
