"""The device suite: the model's proofs and the decoding/training paths, on each device named in
$ALM_TEST_DEVICES (comma-separated; default `cpu`). CI runs it on the CPU; `make test-device` runs it on the
machine's accelerator (`ALM_TEST_DEVICES=cuda` or `mps`), where the compiled paths are CUDA graphs and Triton."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from alm.device import available_device_types
from testkit.threads import one_thread

__all__ = ["one_thread"]  # applied to every module here

DEVICES = [name.strip() for name in os.environ.get("ALM_TEST_DEVICES", "cpu").split(",") if name.strip()]


@pytest.fixture(params=DEVICES)
def device(request) -> Iterator[torch.device]:
    """One device of $ALM_TEST_DEVICES, with fp32 matmuls at full precision (no TF32) for the comparisons."""
    device = torch.device(request.param)
    if device.type not in available_device_types():
        pytest.fail(f"ALM_TEST_DEVICES names {request.param}, which this machine does not have")
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield device
    finally:
        torch.set_float32_matmul_precision(before)
