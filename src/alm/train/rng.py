"""One seed drives Python, NumPy and torch (CPU and device); their states round-trip through checkpoints.

States are stored as plain lists/ints/tensors so checkpoints load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import random
from typing import Any, cast

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    version, mt_state, gauss = random.getstate()
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())  # the default, legacy form
    kind, keys, pos, has_gauss, cached = legacy
    device_state = None
    if device.type == "cuda":
        device_state = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        device_state = torch.mps.get_rng_state()
    return {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch_cpu": torch.get_rng_state(),
        "torch_device": device_state,
    }


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch_cpu"])
    device_state = state.get("torch_device")
    if device_state is not None:
        if device.type == "cuda":
            torch.cuda.set_rng_state(device_state, device)
        elif device.type == "mps":
            torch.mps.set_rng_state(device_state)
