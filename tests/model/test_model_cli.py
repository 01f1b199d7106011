"""`alm model info` through the real root CLI app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from alm.cli.app import app

runner = CliRunner()


def test_info_shows_the_pico_preset() -> None:
    result = runner.invoke(app, ["model", "info", "pico"])
    assert result.exit_code == 0, result.output
    assert "28.8M" in result.output  # ≈29M at its reference vocab
    assert "6 / 6" in result.output and "FLOPs" in result.output and "bf16" in result.output


def test_info_json_with_overrides_and_vocab() -> None:
    args = [
        "model",
        "info",
        "micro",
        "--set",
        "model.n_kv_heads=2",
        "--set",
        "d_model=256",
        "--vocab-size",
        "1000",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["n_kv_heads"], summary["d_model"], summary["vocab_size"]) == (2, 256, 1000)
    assert summary["kv_cache_bytes_per_token"] == {"fp32": 2 * 4 * 2 * 64 * 4, "bf16": 2 * 4 * 2 * 64 * 2}
    assert summary["params"] > summary["params_non_embedding"] > 0


def test_bad_preset_and_bad_override_exit_2_with_a_message() -> None:
    result = runner.invoke(app, ["model", "info", "gigantic"])
    assert result.exit_code == 2
    assert "unknown model preset 'gigantic'" in result.output and "pico" in result.output
    result = runner.invoke(app, ["model", "info", "pico", "--set", "n_heads=5"])
    assert result.exit_code == 2
    assert "n_heads" in result.output
    assert "Traceback" not in result.output
