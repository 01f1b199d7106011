"""`alm bench pack` runs from anywhere (an installed package): the built-in corpus by default, a directory as an
option. Tiny sizes prove it works; the figures themselves are for `make bench`, never timed in tests."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alm.cli.app import app


@pytest.mark.slow
def test_bench_pack_uses_the_built_in_corpus_by_default(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ../shared/data here
    args = ["bench", "pack", "--corpus-mb", "0.2", "--rounds", "1", "--workers", "1", "--vocab-size", "300"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (size,) = report["sizes"]
    assert size["text_bytes"] > 200_000 and size["packs"][0]["tokens"] > 0
    assert report["settings"]["corpus_dir"] is None


def test_bench_pack_names_a_missing_corpus_dir(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["bench", "pack", "--corpus-dir", str(tmp_path / "nope"), "--rounds", "1"]
    )
    assert result.exit_code == 2 and "corpus directory not found" in result.output
