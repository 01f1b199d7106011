"""Helpers shared by the per-architecture mappings: reading config.json values and HF weights by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from alm.errors import UsageError

# Buffers some transformers versions keep in state dicts; they are derived, not weights.
_DERIVED_SUFFIXES = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")


def config_as_dict(config: Any) -> dict[str, Any]:
    """A config.json as a dict, from the parsed JSON or a transformers `PretrainedConfig`."""
    return dict(config) if isinstance(config, Mapping) else config.to_dict()


def required(config: Mapping[str, Any], key: str) -> Any:
    if config.get(key) is None:
        raise UsageError(f"config.json has no {key!r}", hint="is it a complete transformers config.json?")
    return config[key]


def refuse(key: str, value: Any, why: str) -> UsageError:
    """The error for a config.json field alm cannot express."""
    return UsageError(f"config.json {key}={value!r}: {why}", hint="alm imports only what it computes exactly")


class WeightReader:
    """Takes HF tensors by name, remembering which were used, so weights alm would silently drop are caught."""

    def __init__(self, state_dict: Mapping[str, torch.Tensor], architecture: str):
        self.state_dict = state_dict
        self.architecture = architecture
        self.used: set[str] = set()

    def __call__(self, name: str) -> torch.Tensor:
        if name not in self.state_dict:
            raise UsageError(
                f"the {self.architecture} state dict has no '{name}'",
                hint=f"is it a {self.architecture} checkpoint with the config.json beside it?",
            )
        self.used.add(name)
        return self.state_dict[name]

    def mark_used(self, name: str) -> None:
        self.used.add(name)

    def check_all_used(self) -> None:
        left = sorted(k for k in self.state_dict if k not in self.used and not k.endswith(_DERIVED_SUFFIXES))
        if left:
            shown = ", ".join(left[:4]) + (f" and {len(left) - 4} more" if len(left) > 4 else "")
            raise UsageError(
                f"the {self.architecture} checkpoint has weights alm's model has no place for: {shown}",
                hint="alm imports only architectures it computes exactly",
            )


__all__ = ["WeightReader", "config_as_dict", "refuse", "required"]
