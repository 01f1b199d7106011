"""`alm bench train` end to end on a tiny model, and the proof that the peer comparison is apples to apples.

Nothing here is timed: only that the harness runs, reports coherent figures, and that transformers'
LlamaForCausalLM, given our weights through the HF mapping, computes the same loss as our model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from alm.cli.app import app

pytest.importorskip("transformers")

runner = CliRunner()

TINY = """\
vocab_size: 96
d_model: 32
n_layers: 2
n_heads: 4
n_kv_heads: 2
max_seq_len: 32
tie_embeddings: {tied}
"""


def tiny_model(tmp_path: Path, *, tied: bool = True) -> Path:
    path = tmp_path / f"tiny-{'tied' if tied else 'untied'}.yaml"
    path.write_text(TINY.format(tied=str(tied).lower()), encoding="utf-8")
    return path


def test_cli_prints_figures_and_a_ratio_line(tmp_path: Path) -> None:
    args = ["bench", "train", "--model", str(tiny_model(tmp_path)), "--device", "cpu", "--threads", "1"]
    result = runner.invoke(app, [*args, "--batch", "2", "--seq", "16", "--steps", "2", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ratio alm/transformers:" in out and "interleaved step pairs" in out
    assert "loss at step 0" in out
    assert "alm" in out and "transformers" in out
    assert "MFU" in out and "measured" in out  # the CPU peak is measured in the same run


@pytest.mark.parametrize("tied", [True, False])
def test_json_result_is_coherent_and_the_peer_computes_our_loss(tmp_path: Path, tied: bool) -> None:
    args = ["bench", "train", "--model", str(tiny_model(tmp_path, tied=tied)), "--device", "cpu", "--json"]
    args += ["--threads", "1"]  # tiny matmuls on a loaded 2-core machine: one thread waits on no other
    threads_before = torch.get_num_threads()
    result = runner.invoke(app, [*args, "--batch", "2", "--seq", "8", "--steps", "3", "--warmup", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tokens_per_step"] == 16
    for side in ("ours", "peer"):
        figures = data[side]
        assert len(figures["step_times_ms"]) == 3
        assert figures["tokens_per_second"] == pytest.approx(16 / (figures["median_step_ms"] / 1e3))
        assert figures["mfu"] == pytest.approx(
            figures["tokens_per_second"] * data["flops_per_token"] / data["peak_flops"]
        )
    pairs = [p / o for o, p in zip(data["ours"]["step_times_ms"], data["peer"]["step_times_ms"], strict=True)]
    assert data["ratio"] == pytest.approx(sorted(pairs)[1])  # the median of 3 interleaved pairs
    low, high = data["ratio_iqr"]
    assert low <= data["ratio"] <= high
    assert data["versions"]["torch"] and data["versions"]["transformers"]
    assert data["device"]["threads"] == 1
    assert torch.get_num_threads() == threads_before  # the process-global setting is restored

    # Apples to apples: transformers' LlamaForCausalLM, given our weights through alm.model.hf, computes our
    # loss at step 0 (random init on random tokens: about ln V) ...
    assert data["ours"]["step0_loss"] == pytest.approx(math.log(96), rel=0.1)
    assert data["step0_loss_diff"] <= 1e-5
    # ... and after 4 updates with the same batches and the same optimizer recipe the losses still agree.
    assert data["ours"]["final_loss"] == pytest.approx(data["peer"]["final_loss"], abs=1e-3)
    assert not [w for w in data["warnings"] if "step-0" in w or "loss became" in w]


def test_no_peer_and_bad_input(tmp_path: Path) -> None:
    model = str(tiny_model(tmp_path))
    base = [
        "bench",
        "train",
        "--model",
        model,
        "--device",
        "cpu",
        "--batch",
        "1",
        "--seq",
        "8",
        "--threads",
        "1",
    ]
    result = runner.invoke(app, [*base, "--steps", "1", "--warmup", "0", "--no-peer"])
    assert result.exit_code == 0, result.output
    assert "no peer" in result.output
    result = runner.invoke(app, [*base, "--seq", "64", "--no-peer"])  # longer than max_seq_len 32
    assert result.exit_code == 2
    assert "max_seq_len" in result.output
    result = runner.invoke(app, [*base, "--steps", "0"])
    assert result.exit_code == 2
    assert "--steps" in result.output


def test_the_benchmark_times_the_trainers_own_step() -> None:
    """`alm bench train` runs `alm.train.step.train_step`, so it pays for the same non-finite check: a NaN loss
    skips the update instead of writing NaNs into the weights (the benchmark's old copy of the step did)."""
    from alm.bench.train import Contender, make_step
    from alm.device import choose_precision, probe_capabilities
    from alm.model import ModelConfig, Transformer
    from alm.train.config import TrainConfig
    from alm.train.optim import build_optimizer
    from alm.train.step import LossOutput, lm_loss

    model = Transformer(ModelConfig(vocab_size=96, d_model=32, n_layers=1, n_heads=4, max_seq_len=16))

    def nan_loss(module, batch) -> LossOutput:
        out = lm_loss(module, batch)
        return LossOutput(out.loss * float("nan"), out.reported * float("nan"), out.metrics)

    contender = Contender("alm", model, nan_loss, optimizer=build_optimizer(model, TrainConfig()))
    plan = choose_precision(probe_capabilities(torch.device("cpu")))
    before = {name: t.clone() for name, t in model.state_dict().items()}
    x = torch.randint(0, 96, (2, 8))
    loss = make_step(contender, plan, 1.0, None)(x, x)
    assert torch.isnan(loss)
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


@pytest.mark.slow  # compiling takes tens of seconds on 2 cores
def test_compile_flag_runs(tmp_path: Path) -> None:
    """`--compile` times the compiled module (it once failed: a compiled module has no truth value)."""
    args = ["bench", "train", "--model", str(tiny_model(tmp_path)), "--device", "cpu", "--threads", "1"]
    result = runner.invoke(
        app, [*args, "--compile", "--no-peer", "--batch", "2", "--seq", "16", "--steps", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "compiled" in result.output and "no peer (--no-peer)" in result.output
