"""The precision policy is a pure function of reported capabilities: test the MPS and CUDA rules on a CPU."""

from __future__ import annotations

import pytest
import torch

from alm.device import (
    DeviceCapabilities,
    autocast_context,
    choose_precision,
    make_grad_scaler,
    memory_stats,
    parse_version,
    resolve_device,
)
from alm.errors import UsageError


def mps(torch_v=(2, 13), macos=(15, 0), chip=3) -> DeviceCapabilities:
    return DeviceCapabilities("mps", torch_version=torch_v, macos_version=macos, apple_chip_generation=chip)


def cuda(bf16: bool, capability=(9, 0)) -> DeviceCapabilities:
    return DeviceCapabilities("cuda", torch_version=(2, 13), cuda_capability=capability, cuda_bf16=bf16)


CPU = DeviceCapabilities("cpu", torch_version=(2, 13))


def test_cpu_defaults_to_fp32_and_refuses_fp16() -> None:
    plan = choose_precision(CPU)
    assert (plan.precision, plan.autocast_dtype, plan.use_grad_scaler) == ("fp32", None, False)
    assert choose_precision(CPU, "bf16").warnings  # allowed, but the user is told it is slow
    with pytest.raises(UsageError, match="fp16"):
        choose_precision(CPU, "fp16")


def test_cuda_prefers_bf16_and_falls_back_to_fp16_with_scaler() -> None:
    plan = choose_precision(cuda(bf16=True))
    assert (plan.precision, plan.use_grad_scaler, plan.matmul_precision) == ("bf16", False, "high")
    old = choose_precision(cuda(bf16=False, capability=(7, 5)))
    assert (old.precision, old.use_grad_scaler) == ("fp16", True)
    with pytest.raises(UsageError, match=r"compute capability 7\.5"):
        choose_precision(cuda(bf16=False, capability=(7, 5)), "bf16")
    assert choose_precision(cuda(bf16=True), "fp32").precision == "fp32"


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (mps(), "bf16"),  # M3+, new torch, Sonoma+: native bf16
        (mps(chip=1), "fp16"),  # M1 emulates bf16; fp16 + GradScaler (torch >= 2.8)
        (mps(chip=None), "fp16"),  # unknown chip: do not assume native bf16
        (mps(macos=(13, 6)), "fp16"),  # no bf16 before macOS 14
        (mps(torch_v=(2, 7), macos=(13, 6)), "fp32"),  # no MPS GradScaler before torch 2.8
        (mps(torch_v=(2, 6), chip=3), "bf16"),
    ],
)
def test_mps_policy_by_torch_macos_and_chip(caps: DeviceCapabilities, expected: str) -> None:
    plan = choose_precision(caps)
    assert plan.precision == expected
    assert plan.use_grad_scaler == (expected == "fp16")
    assert plan.matmul_precision == "highest"


def test_mps_explicit_requests_are_checked() -> None:
    with pytest.raises(UsageError, match=r"macOS >= 14"):
        choose_precision(mps(macos=(13, 0)), "bf16")
    with pytest.raises(UsageError, match=r"torch >= 2\.8"):
        choose_precision(mps(torch_v=(2, 6)), "fp16")
    assert choose_precision(mps(chip=2), "bf16").warnings  # emulated: allowed with a warning
    with pytest.raises(UsageError, match="unknown precision"):
        choose_precision(CPU, "fp8")  # type: ignore[arg-type]


def test_parse_version() -> None:
    assert parse_version("2.13.0+cpu") == (2, 13)
    assert parse_version("14") == (14, 0)
    assert parse_version("") == (0, 0)


def test_resolve_device_on_this_machine() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu:7?")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(UsageError, match="MPS"):
            resolve_device("mps")


def test_fp32_plan_runs_without_autocast_or_scaler() -> None:
    plan = choose_precision(CPU)
    with autocast_context(plan):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32
    assert make_grad_scaler(plan) is None
    assert memory_stats(torch.device("cpu"))["rss"] > 0
