"""`alm data …`, `alm tokenizer …`, `alm pack` as a user meets them: output, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from alm.cli.app import app

runner = CliRunner()


def alm(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def small(tmp_path):
    """--set options for a tiny dataset under tmp_path."""
    root = tmp_path / "data"
    sets = ["--set", f"root={root}", "--set", "data.sources=[{type: builtin, max_bytes: 40000}]"]
    sets += ["--set", "tokenizer.vocab_size=300", "--set", "packing.shard_tokens=4096"]
    return root, sets


def test_prepare_train_pack_info_encode_decode(small) -> None:
    root, sets = small
    result = alm("data", "prepare", *sets)
    assert result.exit_code == 0, result.output
    assert "prepared" in result.output and "train" in result.output
    assert "up to date" in alm("data", "prepare", *sets).output

    result = alm("tokenizer", "train", *sets, "--type", "unigram")
    assert result.exit_code == 0, result.output
    assert "unigram tokenizer, vocab 300" in result.output

    result = alm("pack", *sets, "--set", "tokenizer.type=unigram")
    assert result.exit_code == 0, result.output
    assert "tokens in" in result.output and (root / "packed" / "manifest.json").is_file()

    for target, expected in (
        (root, "clean text"),
        (root / "packed", "bytes/token"),
        (root / "packed" / "train-00000.bin", "alm token shard v1"),
        (root / "clean" / "stats.json", "documents"),
        (root / "tokenizer" / "tokenizer.json", "special ids"),
    ):
        result = alm("data", "info", str(target))
        assert result.exit_code == 0 and expected in result.output, result.output

    tok = str(root / "tokenizer")
    result = alm("tokenizer", "encode", "ROMEO: café 😀", "--tokenizer", tok)
    assert result.exit_code == 0, result.output
    ids = result.stdout.strip().split()
    result = alm("tokenizer", "decode", *ids, "--tokenizer", tok)
    assert result.exit_code == 0 and result.stdout == "ROMEO: café 😀\n"
    result = alm("tokenizer", "encode", "é", "--tokens", "--tokenizer", tok)
    assert result.exit_code == 0 and result.stdout.strip() in ("<c3> <a9>", "<c3a9>", '"é"')
    assert "special ids  bos=0 eos=1 pad=2" in alm("tokenizer", "info", tok).output


def test_force_is_required_to_replace_different_data(small) -> None:
    _, sets = small
    assert alm("tokenizer", "train", *sets).exit_code == 0
    result = alm("tokenizer", "train", *sets, "--vocab-size", "310")
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    result = alm("tokenizer", "train", *sets, "--vocab-size", "310", "--force")
    assert result.exit_code == 0 and "vocab 310" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "prepare", "--set", "colour=blue"], 2, "config key 'colour'"),
        (["data", "prepare", "--set", "data.tokenizer.vocab_size=12"], 2, "tokenizer.vocab_size"),
        (["data", "prepare", "--config", "missing.yaml"], 2, "config file not found"),
        (
            ["data", "prepare", "--set", "sources=[{type: local, paths: [nowhere/*.txt]}]"],
            2,
            "matches no files",
        ),
        (["data", "info", "does/not/exist"], 2, "does not exist"),
        (["tokenizer", "encode", "hi", "--tokenizer", "nowhere/tokenizer.json"], 1, "tokenizer not found"),
        (["tokenizer", "decode", "1", "x"], 2, "not a token id"),
    ],
)
def test_bad_input_exit_codes(tmp_path, monkeypatch, args, code, message) -> None:
    monkeypatch.chdir(tmp_path)
    if args[0] == "tokenizer" and args[1] == "decode":
        args = [*args, "--tokenizer", str(_tokenizer(tmp_path))]
    result = alm(*args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def _tokenizer(tmp_path):
    from alm.data.config import TokenizerConfig
    from alm.tokenizer import train_tokenizer

    return train_tokenizer(
        ["some text to learn from"] * 3, tmp_path / "tok", TokenizerConfig(vocab_size=300), corpus_sha256="x"
    ).path


def test_corrupt_shard_info_is_a_runtime_error(small) -> None:
    root, sets = small
    assert alm("pack", *sets).exit_code == 0
    shard = root / "packed" / "val-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    result = alm("data", "info", str(shard))
    assert result.exit_code == 1 and "truncated" in result.output


def test_empty_and_binary_corpora(tmp_path) -> None:
    (tmp_path / "blob.dat").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "empty.txt").write_text("\n\n")
    result = alm(
        "data",
        "prepare",
        "--set",
        f"root={tmp_path / 'data'}",
        "--set",
        f"sources=[{{type: local, paths: ['{tmp_path}/*']}}]",
    )
    assert result.exit_code == 1, result.output
    assert "skipped" in result.output and "no documents left" in result.output


@pytest.mark.slow
def test_alm_pack_end_to_end_in_a_subprocess(tmp_path) -> None:
    """A fresh directory, no config: `alm pack` builds everything from the built-in corpus by itself."""
    proc = subprocess.run(
        [sys.executable, "-m", "alm", "pack", "--set", "tokenizer.vocab_size=300"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "data" / "packed" / "manifest.json").is_file()
    assert "prepared" in proc.stdout and "packed" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "alm", "data", "info"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "bytes/token" in proc.stdout
