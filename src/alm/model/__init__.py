"""The model layer: a pure `nn.Module` decoder and its configuration.

`alm.model.config` imports no torch, so configs load fast (and `alm --help` stays fast); the torch classes are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alm.model.config import ModelConfig, RouterConfig

if TYPE_CHECKING:
    from alm.model.cache import KVCache
    from alm.model.transformer import ModelOutput, Transformer

_LAZY = {
    "Transformer": "alm.model.transformer",
    "ModelOutput": "alm.model.transformer",
    "KVCache": "alm.model.cache",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alm.model' has no attribute {name!r}")


__all__ = ["KVCache", "ModelConfig", "ModelOutput", "RouterConfig", "Transformer"]
