"""The decode benchmark's machinery on a tiny model (its figures are recorded in docs/BENCHMARKS.md, not here)."""

from __future__ import annotations

import torch
from sample_helpers import tiny_config

from alm.bench.sample import run_sample_bench
from alm.model.quant import default_kernel


def test_all_three_decoders_produce_the_same_greedy_tokens():
    cfg = tiny_config(96, max_seq_len=16)  # the bench widens the context to fit prompt + new tokens
    result = run_sample_bench(cfg, preset="tiny", device=torch.device("cpu"), new_tokens=24, repeats=1)
    assert result.max_seq_len == 16 + 24
    assert len(result.cached.tokens) == 24
    assert len(set(result.cached.tokens)) > 3
    assert result.recompute.tokens == result.cached.tokens
    assert result.hf is not None and result.hf.tokens == result.cached.tokens  # same weights via alm.model.hf
    record = result.to_dict()
    assert record["hf_agree_tokens"] == 24 and record["vs_recompute"] > 0 and record["vs_hf"] > 0


def test_bench_cli_runs_on_a_model_file(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from alm.cli.app import app

    model_file = tmp_path / "tiny.yaml"
    model_file.write_text(yaml.safe_dump({"d_model": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 16}))
    args = ["bench", "sample", "--model", str(model_file), "--vocab-size", "64", "--new-tokens", "6"]
    result = CliRunner().invoke(
        app, [*args, "--repeats", "1", "--no-peer", "--no-compile", "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["new_tokens"] == 6 and record["recompute_agree_tokens"] == 6 and record["vs_hf"] is None
    assert record["int8_speedup"] is None  # only when --int8 asks for it
    assert torch.backends.cpu.get_cpu_capability() in record["device"]  # AVX2 and AVX-512 figures differ
    int8 = CliRunner().invoke(
        app, [*args, "--repeats", "1", "--no-peer", "--no-compile", "--no-batch", "--int8"]
    )
    assert int8.exit_code == 0, int8.output
    printed = " ".join(int8.stdout.split())  # the table wraps at the test's terminal width
    kernel = default_kernel(torch.device("cpu"))  # alm's own on an AVX2 CPU, ATen's on AVX-512 or Arm
    assert "int8 weights vs fp32 (both eager)" in printed and f"int8 matmul: {kernel}" in printed
    bad = CliRunner().invoke(app, [*args[:4], "--new-tokens", "0"])
    assert bad.exit_code == 2


def test_profile_shows_single_and_batched_decoding(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from alm.cli.app import app

    model_file = tmp_path / "tiny.yaml"
    model_file.write_text(yaml.safe_dump({"d_model": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 16}))
    args = ["bench", "sample", "--model", str(model_file), "--vocab-size", "64", "--max-tokens", "4"]
    common = ["--repeats", "1", "--no-peer", "--no-compile", "--device", "cpu", "--profile"]
    result = CliRunner().invoke(app, [*args, *common])
    assert result.exit_code == 0, result.output
    one, batched = result.stdout.split("decoding 8 sequences at once")
    assert "decoding one sequence" in one and "aten::" in one and "aten::" in batched
    alone = CliRunner().invoke(app, [*args, *common, "--no-batch"])
    assert alone.exit_code == 0 and "sequences at once" not in alone.stdout
