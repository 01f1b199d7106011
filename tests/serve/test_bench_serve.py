"""`alm bench serve` runs end to end with tiny settings (real server processes, real streaming clients); the
figures are for `make bench`, never timed here."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alm.bench.serve import percentile
from alm.cli.app import app


@pytest.mark.slow
def test_bench_serve_loads_each_server_setting(runs_root, monkeypatch):
    monkeypatch.chdir(runs_root.parent)
    args = [
        "bench",
        "serve",
        "base",
        "--clients",
        "1,2",
        "--requests",
        "2",
        "--max-tokens",
        "4",
        "--threads",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["loads"]) == {"batched", "one-at-a-time", "batched-int8"}
    for loads in report["loads"].values():
        assert [load["clients"] for load in loads] == [1, 2]
        for load in loads:
            assert load["errors"] == 0 and load["requests"] == 2 * load["clients"]
            assert load["output_tokens_per_s"] > 0 and load["ttft_p50_ms"] <= load["ttft_p99_ms"]
    assert set(report["ratios"]) == {"batching_speedup", "int8_speedup"} and report["errors"] == 0


def test_bench_serve_refuses_bad_client_counts():
    result = CliRunner().invoke(app, ["bench", "serve", "base", "--clients", "4,x"])
    assert result.exit_code == 2 and "--clients takes positive counts" in result.stderr


def test_bench_serve_of_a_missing_run_is_a_usage_error(tmp_path, monkeypatch):
    """Refused before any server starts (it used to surface as a server that failed to start: exit 1)."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "serve", "nope"])
    assert result.exit_code == 2 and "no run 'nope'" in result.stderr


def test_percentile_is_nearest_rank():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0
    assert percentile([5.0], 50) == 5.0
