"""MFU arithmetic and the device-peak table: the denominators the training benchmark divides by."""

from __future__ import annotations

import pytest
import torch

from alm.bench.peaks import TFLOPS, Peak, apple_peak, device_peak, measure_cpu_matmul_peak, mfu, nvidia_peak


def test_mfu_is_achieved_model_flops_over_peak() -> None:
    # 1,000 tok/s at 6e6 FLOPs/token is 6 GFLOP/s; on a 60 GFLOP/s peak that is 10%.
    assert mfu(1_000.0, 6e6, Peak(60e9, "test")) == pytest.approx(0.10)
    assert mfu(1_000.0, 6e6, Peak(None, "unknown peak")) is None
    assert mfu(0.0, 6e6, Peak(60e9, "test")) is None


@pytest.mark.parametrize(
    ("name", "precision", "matmul", "tflops", "label"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", "high", 989.4, "H100 SXM"),
        ("NVIDIA H100 PCIe", "bf16", "high", 756.5, "H100 PCIe"),
        ("NVIDIA H100 PCIe", "fp32", "high", 378.0, "TF32"),
        ("NVIDIA H100 PCIe", "fp32", "highest", 51.2, "fp32"),
        ("NVIDIA H200", "bf16", "high", 989.4, "H200"),
        ("NVIDIA A100-SXM4-80GB", "fp16", "high", 312.0, "A100"),
        ("NVIDIA L4", "bf16", "high", 121.0, "L4"),
        ("NVIDIA GeForce RTX 4090", "bf16", "high", 165.2, "4090"),
        ("NVIDIA GeForce RTX 3090", "fp32", "highest", 35.6, "3090"),
    ],
)
def test_nvidia_table_lookup(name: str, precision: str, matmul: str, tflops: float, label: str) -> None:
    peak = nvidia_peak(name, precision, matmul)
    assert peak.flops == pytest.approx(tflops * TFLOPS)
    assert label in peak.source


def test_unknown_gpu_says_unknown_peak() -> None:
    peak = nvidia_peak("NVIDIA GeForce GTX 1080", "fp32")
    assert not peak.known
    assert "unknown peak" in peak.source
    assert mfu(1e6, 1e6, peak) is None


@pytest.mark.parametrize(
    ("chip", "tflops"),
    [
        ("Apple M1", 2.6),
        ("Apple M1 Max", 10.6),
        ("Apple M2 Pro", 6.8),
        ("Apple M3 Max", 16.4),
        ("Apple M4", 4.3),
    ],
)
def test_apple_table_lookup(chip: str, tflops: float) -> None:
    peak = apple_peak(chip)
    assert peak.flops == pytest.approx(tflops * TFLOPS)
    assert chip.removeprefix("Apple ") in peak.source


def test_unknown_apple_chip_says_unknown_peak() -> None:
    assert not apple_peak("").known
    assert "unknown peak" in apple_peak("Apple M9 Hyper").source


def test_cpu_peak_is_measured_and_plausible() -> None:
    peak = measure_cpu_matmul_peak(size=256, repeats=2)
    # Any CPU that runs this suite does between ~0.1 GFLOP/s (on a loaded machine) and ~100 TFLOP/s of fp32 matmul.
    assert 1e8 < peak.flops < 1e14
    assert "measured" in peak.source and "256x256" in peak.source
    assert device_peak(torch.device("cpu"), "cpu", "fp32", "highest").known
